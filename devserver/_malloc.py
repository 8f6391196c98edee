"""Keep the C allocator from holding freed memory: glibc's ``mallopt`` and ``malloc_trim``.

Why (measured in docs/performance.md, "Soak"): glibc keeps freed memory in
its arenas for reuse, one arena per thread up to eight per core. By default
it also raises its mmap threshold to the size of any large block that is
freed (up to 32 MiB), and its trim threshold to twice that, so after the
first batch export, buffers of up to 32 MiB come from the arenas and up to
64 MiB free at an arena's top stays resident. A server with a hundred
request threads then keeps tens of MiB per arena after each batch.

- ``fix_mmap_threshold()`` (once, at server start) pins both thresholds at
  glibc's default of 128 KiB: larger blocks are mapped on their own and
  returned to the system when freed, and arenas trim their top eagerly.
- ``release_free_memory()`` (after a batch export) returns the free pages
  inside the arenas to the system.

Elsewhere (musl, macOS) both do nothing and say so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

logger = logging.getLogger("devserver")


#: glibc's ``M_TRIM_THRESHOLD`` and ``M_MMAP_THRESHOLD`` parameters of ``mallopt`` (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's default threshold; setting it (to any value) turns off the dynamic raising.
MMAP_THRESHOLD_BYTES = 128 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]  # glibc only; musl has neither
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    libc.malloc_trim.restype = ctypes.c_int
    libc.mallopt.restype = ctypes.c_int
    return libc


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap and trim thresholds at ``threshold`` (both glibc's defaults: 128 KiB).

    Both: by the time the server starts, imports may already have raised the
    trim threshold (to twice the largest block freed), and pinning the mmap
    threshold alone leaves it there. An explicit ``MALLOC_MMAP_THRESHOLD_`` or
    ``MALLOC_TRIM_THRESHOLD_`` in the environment wins: the operator chose.

    Returns:
        True when both were set; False elsewhere (not glibc) or when the
        environment sets either.
    """
    libc = _libc()
    if libc is None or {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ):
        return False
    pinned = libc.mallopt(M_MMAP_THRESHOLD, threshold)
    return bool(pinned and libc.mallopt(M_TRIM_THRESHOLD, threshold))


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; False where that is not possible."""
    libc = _libc()
    if libc is None:
        return False
    try:
        libc.malloc_trim(0)
    except Exception:  # never let housekeeping fail the thread that calls it
        logger.exception("malloc_trim failed")
        return False
    return True
