"""Shared fixtures: a finished record (and, from the devserver tests, app/client/runner)."""

from __future__ import annotations

from pathlib import Path

import pytest

from execution_history import ExecutionRecord
from tests.records import stille_post_record


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """The media folder of the ``finished_record`` run."""
    return tmp_path / "media"


@pytest.fixture
def finished_record(media_dir: Path) -> ExecutionRecord:
    """A finished Stille Post record (8 iterations, 3 outputs, one blocked) with real images."""
    return stille_post_record(media_dir)
