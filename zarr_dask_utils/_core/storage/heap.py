"""Let a CPU-bound task allocate its scratch buffers from the heap inside Dask workers.

distributed starts worker processes with ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory
goes back to the OS promptly.  Setting any glibc malloc variable also switches off glibc's
*dynamic* mmap threshold, which leaves it at 128 KiB: every larger allocation becomes a fresh
``mmap`` whose pages are faulted in and zeroed, and is unmapped again on ``free``.  Codecs
that allocate a few hundred KiB of scratch space per call (blosc's per-call decompression
context, zstd's window) then spend a quarter of a decode in page faults.

:func:`heap_allocations` raises the mmap threshold for the duration of a block, process-wide,
and puts glibc's 128 KiB back when the last block in the process ends.  It only acts where the
dynamic threshold is already off because of a ``MALLOC_TRIM_THRESHOLD_`` environment variable
and nobody chose ``MALLOC_MMAP_THRESHOLD_`` explicitly; elsewhere (other platforms, other
allocators, a user's own malloc settings) it does nothing.  Memory freed inside the block goes
back to the heap, which the trim threshold still returns to the OS.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = ["heap_allocations", "mmap_threshold_adjustable"]

_M_MMAP_THRESHOLD = -3
_GLIBC_DEFAULT = 128 * 1024

_lock = threading.Lock()
_active = 0


def mmap_threshold_adjustable() -> bool:
    """``True`` when :func:`heap_allocations` will change anything in this process."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False  # glibc's dynamic threshold is on: leave it alone
    return _mallopt() is not None


def _mallopt() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None)
        return libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None


@contextlib.contextmanager
def heap_allocations(threshold: int | None) -> Iterator[bool]:
    """Serve allocations below *threshold* bytes from the heap while the block runs.

    Parameters
    ----------
    threshold
        The mmap threshold to use; ``None`` or ``0`` leaves malloc alone.

    Yields
    ------
    bool
        Whether the threshold was raised (see :func:`mmap_threshold_adjustable`).
    """
    global _active
    if not threshold or not mmap_threshold_adjustable():
        yield False
        return
    mallopt = _mallopt()
    assert mallopt is not None
    with _lock:
        if _active == 0:
            mallopt(_M_MMAP_THRESHOLD, int(threshold))
        _active += 1
    try:
        yield True
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT)
