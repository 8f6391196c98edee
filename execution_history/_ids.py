"""Run identifiers: 128 random bits, one pattern that every entry point validates."""

from __future__ import annotations

import os
import re
import threading

#: 32 lowercase hex characters (128 bits from the OS's CSPRNG).
RUN_ID_PATTERN = r"[0-9a-f]{32}"
_RUN_ID = re.compile(RUN_ID_PATTERN)

# Reading the OS's random source costs a system call, which in sandboxes can
# take a quarter of a millisecond. Ids are cut from a pool filled by one read
# of 4 KiB (256 ids), so the cost is paid once per 256 runs. The pool is
# emptied in a forked child so two processes never hand out the same bytes.
_POOL_BYTES = 4096
_pool = b""
_offset = 0
_lock = threading.Lock()


def _reset_pool() -> None:
    global _pool, _offset
    _pool, _offset = b"", 0


os.register_at_fork(after_in_child=_reset_pool)


def new_run_id() -> str:
    """A new unguessable run id: 16 bytes from ``os.urandom``, as 32 hex characters."""
    global _pool, _offset
    with _lock:
        if _offset + 16 > len(_pool):
            _pool, _offset = os.urandom(_POOL_BYTES), 0
        chunk = _pool[_offset : _offset + 16]
        _offset += 16
    return chunk.hex()


def is_run_id(value: object) -> bool:
    """Whether ``value`` is a well-formed run id (and nothing else)."""
    return isinstance(value, str) and _RUN_ID.fullmatch(value) is not None
