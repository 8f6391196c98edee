"""Run identifiers: 128 random bits, one pattern that every entry point validates."""

from __future__ import annotations

import os
import re

#: 32 lowercase hex characters (128 bits from the OS's CSPRNG).
RUN_ID_PATTERN = r"[0-9a-f]{32}"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def new_run_id() -> str:
    """A new unguessable run id: 16 bytes from ``os.urandom``, as 32 hex characters."""
    # One system call per run: a pool of random bytes would save it, at the cost of a
    # fork hook and a lock for a saving nobody can measure against a run's own cost.
    return os.urandom(16).hex()


def is_run_id(value: object) -> bool:
    """Whether ``value`` is a well-formed run id (and nothing else)."""
    return isinstance(value, str) and _RUN_ID.fullmatch(value) is not None
