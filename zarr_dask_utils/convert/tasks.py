"""The conversion graph: one write task per target region not yet done, and the worker function.

A region is one target chunk, or one shard (:func:`~zarr_dask_utils.convert.plan.block_regions`
over the shard or chunk shape), so no two tasks write parts of one stored object.  The writes
are a ``map_blocks`` over the lazily opened source (a Dask array read from the files, rechunked
to the regions), so Dask fuses each region's read and write into **one task** (as ``da.store``
does): the block never leaves the worker that read it, and a resumed run culls the tasks of
regions already done, their reads included.  Each task writes its block into the target array,
optionally reads it back and compares (``verify``), writes the region's empty done marker and
reports its bytes to :class:`~zarr_dask_utils.convert.progress.ConversionProgress`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.decoding.scratch import keep_scratch_memory
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.heap import heap_allocations
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.markers import MARKER_PREFIX
from zarr_dask_utils._core.storage.storeio import storage_errors, write_keys
from zarr_dask_utils.convert.plan import block_regions
from zarr_dask_utils.convert.progress import report_region_done

__all__ = ["RegionTasks", "done_key", "region_tasks", "write_block", "write_region"]


#: Region buffers (8 MiB blocks, blosc's shuffle and output buffers) served from the heap while
#: a region task writes: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``,
#: which pins glibc's mmap threshold at 128 KiB, so each buffer would be a fresh ``mmap``.
#: Raised only for the duration of the task, and put back after it (the worker's memory
#: settings stay as its owner chose them).
REGION_HEAP = 32 * 2**20


def done_key(group: int, variable: int, block: int) -> str:
    """The completion marker of one region, relative to the target root."""
    return f"{MARKER_PREFIX}/done/convert/g{group}/v{variable}/b{block}"


def write_region(
    block: np.ndarray[Any, Any],
    target: Location,
    array_path: str,
    region: Sequence[tuple[int, int]],
    marker: str,
    topic: str | None,
    verify: bool,
) -> dict[str, int]:
    """Write *block* at *region* of the target array, then its done marker (on a worker).

    Returns ``{"bytes": n, "regions": 1, "mismatches": 0 or 1}``; with *verify* the region
    is read back and compared (NaN equal to NaN).
    """
    import zarr

    store = target.open_store()
    sel = tuple(slice(a, b) for a, b in region)
    with storage_errors(target.display):
        arr = zarr.open_array(store=store, path=join_key(target.path, array_path), mode="r+")
        data = np.asarray(block)
        if data.dtype != arr.dtype:
            data = data.astype(arr.dtype)
        arr[sel] = data
        mismatches = 0
        if verify:
            back = np.asarray(arr[sel])
            nan = data.dtype.kind in "fc"
            mismatches = int(not np.array_equal(back, data, equal_nan=nan))
        write_keys(store, {join_key(target.path, marker): b""})
    report_region_done(topic, int(data.nbytes))
    return {"bytes": int(data.nbytes), "regions": 1, "mismatches": mismatches}


def write_block(
    block: np.ndarray[Any, Any],
    target: Location,
    array_path: str,
    ids: tuple[int, int],
    numblocks: tuple[int, ...],
    topic: str | None,
    verify: bool,
    block_info: Mapping[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """:func:`write_region` as a ``map_blocks`` function: the result in a 1-element array."""
    info = (block_info or {})[0]
    region = [tuple(r) for r in info["array-location"]]
    number = int(np.ravel_multi_index(info["chunk-location"], numblocks))
    marker = done_key(ids[0], ids[1], number)
    out = np.empty((1,) * len(numblocks), dtype=object)
    with heap_allocations(REGION_HEAP), keep_scratch_memory(2 * REGION_HEAP):
        out.flat[0] = write_region(block, target, array_path, region, marker, topic, verify)
    return out


@dataclass(frozen=True)
class RegionTasks:
    """The write tasks of one run, and what a resumed run skipped."""

    tasks: tuple[Any, ...]
    total_bytes: int  # bytes of the regions this run writes
    skipped: int  # regions already done
    regions: int  # regions of the whole target


def region_tasks(
    target: Location,
    variables: Sequence[tuple[int, int, str, Any, tuple[int, ...]]],
    done: set[str],
    *,
    topic: str | None,
    verify: bool,
) -> RegionTasks:
    """Tasks writing every region not in *done*.

    Parameters
    ----------
    target
        The target location.
    variables
        ``(group index, variable index, array path, dask array, block shape)`` per variable
        written by tasks.
    done
        Done markers found (relative keys).
    topic, verify
        Progress topic and read-back check, passed to :func:`write_region`.
    """
    run = uuid.uuid4().hex
    tasks: list[Any] = []
    total = skipped = regions = 0
    for gi, vi, path, data, block in variables:
        x = data.rechunk(block)
        written = x.map_blocks(
            write_block,
            target,
            path,
            (gi, vi),
            x.numblocks,
            topic,
            verify,
            chunks=tuple((1,) * n for n in x.numblocks),
            dtype=object,
            meta=np.empty((0,) * x.ndim, dtype=object),
            name=task_name("convert-write", run, path),
        )
        pieces = written.to_delayed(optimize_graph=True).ravel()  # read + write fused
        grid = block_regions(x.shape, block)
        itemsize = x.dtype.itemsize
        for bi, (region, piece) in enumerate(zip(grid, pieces, strict=True)):
            regions += 1
            if done_key(gi, vi, bi) in done:
                skipped += 1
                continue
            total += int(np.prod([b - a for a, b in region])) * itemsize
            tasks.append(piece)
    return RegionTasks(tuple(tasks), total, skipped, regions)


def region_totals(results: Sequence[Any]) -> dict[str, int]:
    """Sum the task results."""
    out = {"bytes": 0, "regions": 0, "mismatches": 0}
    for result in results:
        r = result.flat[0] if isinstance(result, np.ndarray) else result
        for k in out:
            out[k] += int(r.get(k, 0))
    return out
