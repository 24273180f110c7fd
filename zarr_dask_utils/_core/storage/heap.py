"""Let a CPU-bound task allocate its scratch buffers from the heap inside Dask workers.

distributed starts worker processes with ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory
goes back to the OS promptly.  Setting any glibc malloc variable also switches off glibc's
*dynamic* mmap threshold, which leaves it at 128 KiB: every larger allocation becomes a fresh
``mmap`` whose pages are faulted in and zeroed, and is unmapped again on ``free``.  Codecs
that allocate a few hundred KiB of scratch space per call (blosc's per-call decompression
context, zstd's window) then spend a quarter of a decode in page faults.

:func:`heap_allocations` raises the mmap threshold for the duration of a block, process-wide,
and puts glibc's 128 KiB back when the last block in the process ends.  It only acts where the
dynamic threshold is already off because the process was started with a
``MALLOC_TRIM_THRESHOLD_`` environment variable and nobody chose ``MALLOC_MMAP_THRESHOLD_``
explicitly (:func:`~zarr_dask_utils._core.storage.malloc.dynamic_thresholds_off`); elsewhere
(other platforms, other allocators, a user's own malloc settings, a client process whose
``os.environ`` got the variable from distributed after start-up) it does nothing.  Memory
freed inside the block goes back to the heap, which the trim threshold still returns to the OS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from zarr_dask_utils._core.storage.malloc import MMAP_THRESHOLD, dynamic_thresholds_off

__all__ = ["heap_allocations", "mmap_threshold_adjustable"]

_GLIBC_DEFAULT = 128 * 1024


def mmap_threshold_adjustable() -> bool:
    """``True`` when :func:`heap_allocations` will change anything in this process.

    Decided from the environment the process was started with, not ``os.environ``.
    """
    return dynamic_thresholds_off()


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
    if not threshold or not mmap_threshold_adjustable():
        yield False
        return
    with MMAP_THRESHOLD.scope(int(threshold), restore=_GLIBC_DEFAULT):
        yield True
