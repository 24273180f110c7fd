"""Keep decoders' per-call scratch memory in the process while a decode task runs.

distributed starts worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``: whenever more than
64 KiB at the top of a heap is free, ``free`` hands it back to the OS.  c-blosc's thread-safe
``blosc_decompress_ctx`` (the one numcodecs calls from any thread but the main one, i.e. in
every Dask task) allocates and frees its context and temporary blocks on every call, so in a
worker each decoded chunk gives those pages back and faults them in (zeroed) again on the next
call.  Measured in one process with the variable set, 64 KiB chunks: 190 µs per chunk, 48 µs
with the trim threshold raised (the decode itself is about 25 µs); 256 KiB: 410 vs 106 µs.

:func:`keep_scratch_memory` raises glibc's trim threshold for the duration of a block,
process-wide, and puts the start-up value back when the last block in the process ends
(the next large ``free`` then trims as before).  It only acts on Linux (glibc) in processes
started with ``MALLOC_TRIM_THRESHOLD_`` below the new threshold and no
``MALLOC_MMAP_THRESHOLD_``, so a user's own malloc settings, processes that never had the
variable at start-up (a client with an embedded cluster) and other platforms are left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from zarr_dask_utils._core.storage.malloc import (
    TRIM_THRESHOLD,
    dynamic_thresholds_off,
    startup_int,
)

__all__ = ["keep_scratch_memory"]


@contextlib.contextmanager
def keep_scratch_memory(limit: int | None) -> Iterator[bool]:
    """Let freed memory up to *limit* bytes stay in the process while the block runs.

    Parameters
    ----------
    limit
        Trim threshold to use inside the block; ``None`` or ``0`` leaves malloc alone.

    Yields
    ------
    bool
        Whether the threshold was raised.
    """
    # what glibc read at start-up, not os.environ (see _core.storage.malloc)
    previous = startup_int("MALLOC_TRIM_THRESHOLD_")
    if not limit or previous is None or previous >= limit or not dynamic_thresholds_off():
        yield False
        return
    with TRIM_THRESHOLD.scope(int(limit), restore=previous):
        yield True
