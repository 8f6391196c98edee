"""Hand memory that the C allocator holds free back to the system (glibc's ``malloc_trim``).

Why: glibc keeps freed memory inside its arenas for reuse; after a batch
export that is tens of MiB of free pages per arena that the process never
needs again until the next export. ``malloc_trim(0)`` returns the free
pages of every arena to the system (``madvise``), which costs a few
milliseconds once per export. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
from collections.abc import Callable

logger = logging.getLogger("devserver")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only; musl has none
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    try:
        trim(0)
    except Exception:  # never let housekeeping fail the thread that calls it
        logger.exception("malloc_trim failed")
        return False
    return True
