"""Run identifiers: 128 random bits, one pattern that every entry point validates."""

from __future__ import annotations

import re
import secrets

#: 32 lowercase hex characters (128 bits from the OS's CSPRNG).
RUN_ID_PATTERN = r"[0-9a-f]{32}"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def new_run_id() -> str:
    """A new unguessable run id."""
    return secrets.token_hex(16)


def is_run_id(value: object) -> bool:
    """Whether ``value`` is a well-formed run id (and nothing else)."""
    return isinstance(value, str) and _RUN_ID.fullmatch(value) is not None
