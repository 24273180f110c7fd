"""Graph builders of ``rechunk_array``: block copies, and Dask ``rechunk`` (tasks / P2P) writes.

Every engine marks each finished target block with an empty key
``.zdu-rechunk/done/s<stage>/a<array>/b<block>`` written *after* the block, so a rerun of an
interrupted job knows which blocks landed.  Blocks are numbered in C order over the stage's
block grid (:func:`~zarr_dask_utils.optimize.plan.block_regions`); the Dask engines write
blocks of the plan's ``write_chunks``, the same grid as the single-stage rechunker plan.

The rechunker engine leaves done blocks out of the graph.  The Dask engines cannot: a
rechunk (P2P above all) needs every input block, so a rerun reads and shuffles the whole
source again, and only the writes of done blocks are skipped.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from dask.delayed import delayed

from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.decoding.block_reader import NamedErrorsArray
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.markers import MARKER_PREFIX
from zarr_dask_utils._core.storage.storeio import read_keys, storage_errors, write_keys
from zarr_dask_utils.optimize.array_jobs import ArrayJob, copy_blocks_task, open_from_metadata
from zarr_dask_utils.optimize.plan import block_regions

__all__ = ["block_copy_tasks", "dask_rechunk_tasks", "done_key", "write_block_task"]


def done_key(stage: int, array: int, block: int) -> str:
    """The completion marker of one block, relative to the target root."""
    return f"{MARKER_PREFIX}/done/s{stage}/a{array}/b{block}"


def block_copy_tasks(
    jobs: Sequence[ArrayJob],
    src: Location,
    tgt: Location,
    tmp: Location | None,
    done: set[str],
) -> tuple[list[Any], int]:
    """One task per block not in *done*; a stage's tasks depend on all tasks of the one before.

    Returns
    -------
    tasks, skipped
        The ``Delayed`` copy tasks, and how many blocks *done* already holds.
    """
    places = {"source": src, "target": tgt, "temp": tmp}
    run = uuid.uuid4().hex  # new keys per run: a rerun must not get an earlier run's error
    tasks: list[Any] = []
    skipped = 0
    for index, job in enumerate(jobs):
        previous: list[Any] = []
        for number, stage in enumerate(job.plan.stages):
            meta = {
                "source": job.source_metadata,
                "temp": job.temp_metadata,
                "target": job.target_metadata,
            }
            current = []
            for b, region in enumerate(block_regions(job.plan.shape, stage.block)):
                key = done_key(number, index, b)
                if key in done:
                    skipped += 1
                    continue
                name = task_name("rechunk", run, index, job.path, number, b, region)
                current.append(
                    delayed(copy_blocks_task, pure=False)(
                        places[stage.source],
                        job.path,
                        meta[stage.source],
                        places[stage.target],
                        job.path,
                        meta[stage.target],
                        [region],
                        [key],
                        tgt,
                        *([delayed(len)(previous)] if previous else []),
                        dask_key_name=name,
                    )
                )
            tasks.extend(current)
            previous = current
    return tasks, skipped


def write_block_task(
    block: np.ndarray[Any, Any],
    target: Location,
    path: str,
    metadata: Any,
    index: int,
    resume: bool,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """Write one block of a Dask-rechunked array to its region, then its ``done`` marker.

    Runs on a worker.  On a resumed run (*resume*), a block whose marker exists is not
    written again.  Returns the bytes written, shaped as a one-element block.
    """
    if block_info is None:  # dask passes it to every function that names the argument
        raise TypeError("write_block_task must run under map_blocks (no block_info)")
    info = block_info[0]
    number = int(np.ravel_multi_index(info["chunk-location"], info["num-chunks"]))
    marker = join_key(target.path, done_key(0, index, number))
    store = target.open_store()
    written = 0
    with storage_errors(target.display):
        if not (resume and read_keys(store, [marker])[marker] is not None):
            region = tuple(slice(a, b) for a, b in info["array-location"])
            open_from_metadata(target, path, metadata)[region] = block
            write_keys(store, {marker: b""})
            written = int(block.nbytes)
    return np.full((1,) * block.ndim, written, dtype="i8")


def dask_rechunk_tasks(
    jobs: Sequence[ArrayJob], src: Location, tgt: Location, method: str, done: set[str]
) -> tuple[list[Any], int, int]:
    """A Dask ``rechunk`` (tasks or P2P) of each array to its write blocks, then the writes.

    The writes are a ``map_blocks`` returning one byte count per block (kept as an array
    collection: turning a P2P graph into ``Delayed`` objects breaks its barrier).

    Returns
    -------
    sums, blocks, skipped
        One byte-count sum per array, the number of target blocks, and how many of them
        *done* marks as already written (their writes are skipped; the source is still read).
    """
    import dask.array as da  # imported here: only the tasks/p2p engines need it

    sums = []
    blocks = skipped = 0
    resume = bool(done)
    for index, job in enumerate(jobs):
        plan = job.plan
        n = math.prod(-(-s // c) for s, c in zip(plan.shape, plan.write_chunks, strict=True))
        blocks += n
        skipped += sum(done_key(0, index, b) in done for b in range(n))
        source = NamedErrorsArray(
            open_from_metadata(src, job.path, job.source_metadata), src.display, job.path
        )
        x = da.from_array(  # type: ignore[no-untyped-call]
            source,
            chunks=plan.read_chunks,
            name=task_name("rechunk-read", uuid.uuid4().hex, job.path),
            fancy=False,
            asarray=False,
            meta=np.empty((0,) * source.ndim, dtype=source.dtype),
        )
        y = x.rechunk(plan.write_chunks, method=method)
        counts = y.map_blocks(
            write_block_task,
            tgt,
            job.path,
            job.target_metadata,
            index,
            resume,
            dtype="i8",
            chunks=tuple((1,) * len(c) for c in y.chunks),
            name=task_name("rechunk-write", uuid.uuid4().hex, job.path, method, plan),
        )
        sums.append(counts.sum())
    return sums, blocks, skipped
