"""Fixtures of the exporter tests."""

from __future__ import annotations

import pytest

from execution_history import Pseudonymiser
from tests.exports._support import PSEUDONYM_KEY


@pytest.fixture
def pseudonymiser() -> Pseudonymiser:
    """A pseudonymiser with a fixed test key."""
    return Pseudonymiser(PSEUDONYM_KEY)
