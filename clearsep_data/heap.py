"""glibc's malloc told to give large freed blocks back to the system, so a long clip builds in bounded memory."""

from __future__ import annotations

import ctypes
import functools
import os

M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter number (glibc's ``malloc.h``)."""
MMAP_THRESHOLD_BYTES = 4 << 20
"""Blocks from this size up get mappings of their own, unmapped when freed. Not glibc's 128 KiB start value: with it
every mid-sized activation is page-faulted afresh, and a build of 10 s clips ran about twice as slow here."""


@functools.cache
def map_large_blocks() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES`, once per process; whether it was set.

    By default glibc raises the threshold (up to 32 MiB) each time a mapped block is freed; the model's activations
    then come from the heap, which fragments and seldom shrinks, and an hour-long clip's build grew hundreds of MiB
    past its working set (``benchmarks/README.md``). Left alone where ``MALLOC_MMAP_THRESHOLD_`` is set (the user's
    choice) and where the C library has no ``mallopt`` or ignores it (not glibc).
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
