"""``rechunk_array``: bounded-memory rechunking of an array, a group or an xarray store on zarr 3.

The plan comes from :mod:`zarr_dask_utils.optimize.plan` (rechunker's algorithm); the work is
one Dask graph of block copies (``rechunker`` method), or a Dask ``rechunk`` with
``method="tasks"`` / ``"p2p"`` followed by ``store``.  Safety: the source is only read; the
target's metadata documents are written after every chunk, root last, and a marker
(``.zdu-rechunk/partial.json``) plus one ``done`` key per finished block lets a rerun resume.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import dask.base
import numpy as np
from dask.delayed import delayed
from dask.utils import parse_bytes
from distributed import Client

from zarr_dask_utils._core.cluster import client_for
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.graph import run_graph, task_name
from zarr_dask_utils._core.locations import Location, StoreLike, resolve_location
from zarr_dask_utils._core.storeio import (
    join_key,
    read_keys,
    storage_errors,
    write_keys,
)
from zarr_dask_utils._core.walk import open_node
from zarr_dask_utils.optimize.jobs import (
    ArrayJob,
    block_bytes,
    build_target_documents,
    chunks_for,
    copy_blocks_task,
    open_from_metadata,
    source_nodes,
    write_documents,
)
from zarr_dask_utils.optimize.markers import (
    MARKER_PREFIX,
    PARTIAL,
    prepare_target,
    prepare_temp,
    remove_prefix,
)
from zarr_dask_utils.optimize.plan import block_regions, choose_engine, plan_rechunk
from zarr_dask_utils.optimize.reports import RechunkReport

__all__ = ["MARKER_PREFIX", "rechunk_array"]

logger = logging.getLogger(__name__)


def _size(value: int | str | None, key: str) -> int:
    value = get_option(key, value)
    try:
        return int(parse_bytes(value) if isinstance(value, str) else value)
    except (TypeError, ValueError) as err:
        raise InvalidOptionError(
            f"max_mem={value!r} is not a size. Pass bytes (int) or a string like '256MiB'."
        ) from err


def rechunk_array(
    source: StoreLike,
    target_chunks: Sequence[int | None] | Mapping[str, Any],
    target_store: StoreLike,
    *,
    max_mem: int | str | None = None,
    temp_store: StoreLike | None = None,
    target_shards: Sequence[int | None] | Mapping[str, Any] | None = None,
    compressors: Any = None,
    zarr_format: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    target_options: Mapping[str, Any] | None = None,
    temp_options: Mapping[str, Any] | None = None,
    engine: str = "auto",
    overwrite: bool = False,
    client: Client | None = None,
    progress: bool | None = None,
) -> RechunkReport:
    """Copy an array, or every array of a group, to new chunks (and shards) with bounded memory.

    Parameters
    ----------
    source
        Path, URL, zarr Store/Group/Array of the source (format 2 or 3); never modified.
    target_chunks
        New chunks: a tuple (``-1`` = whole axis), a mapping of dimension names to sizes
        (e.g. ``{"time": 365}``, for groups written by xarray), or a mapping of array paths
        to either.  Arrays not covered keep their chunks.
    target_store
        Where to write; must be empty, a partial target of an interrupted run (resumed or
        restarted), or ``overwrite=True``.
    max_mem
        Bytes one task may hold (``"256MiB"``); default ``optimize.max-mem``.
    temp_store
        Location for the intermediate copy of a two-stage plan (deleted at the end).
    target_shards
        Shard shapes (format 3), same forms as *target_chunks*; tasks write whole shards.
    compressors
        Compressors of the target (default: the source's within one format, zarr's default
        across formats).
    zarr_format
        Format of the target (default: the source's).
    storage_options, target_options, temp_options
        fsspec options of the source, target and temp URLs.
    engine
        ``"auto"``, ``"rechunker"`` (block copies following the rechunker plan), ``"tasks"``
        or ``"p2p"`` (Dask ``rechunk`` methods, then ``store``).
    overwrite
        Replace a complete existing target.
    client, progress
        Dask client and progress bar (see :func:`~zarr_dask_utils.get_client`).

    Returns
    -------
    RechunkReport

    Raises
    ------
    InvalidOptionError
        Bad chunks, shards on format 2, a non-empty target, a shard larger than max_mem.

    Examples
    --------
    >>> import zarr, numpy as np
    >>> from zarr_dask_utils import rechunk_array
    >>> a = zarr.create_array(zarr.storage.MemoryStore(), shape=(8, 8), chunks=(1, 8), dtype="i4")
    >>> a[:] = np.arange(64).reshape(8, 8)
    >>> out = zarr.storage.MemoryStore()
    >>> rechunk_array(a, (8, 1), out, max_mem="1MiB", progress=False).method
    'rechunker'
    """
    mem = _size(max_mem, "optimize.max-mem")
    limit = float(get_option("optimize.amplification-limit"))
    src_loc = resolve_location(source, storage_options=storage_options)
    node = open_node(src_loc)
    groups, arrays = source_nodes(node)
    if not arrays:
        raise InvalidOptionError(
            f"{src_loc.display} holds no arrays, so there is nothing to rechunk. Pass an "
            "array or a group that contains arrays."
        )
    fmt = int(zarr_format or node.metadata.zarr_format)
    if fmt not in (2, 3):
        raise InvalidOptionError(f"zarr_format={zarr_format!r}: use 2 or 3.")
    single = len(arrays) == 1 and not groups
    chunks: dict[str, tuple[int, ...]] = {}
    shards: dict[str, tuple[int, ...] | None] = {}
    for path, arr in arrays:
        chunks[path] = chunks_for(target_chunks, path, arr, arr.chunks, single=single)
        shards[path] = None
        if target_shards is not None:
            shard = chunks_for(target_shards, path, arr, chunks[path], single=single)
            if shard != chunks[path] or (arr.shards and shard == chunks[path]):
                if any(s % c for s, c in zip(shard, chunks[path], strict=True)):
                    raise InvalidOptionError(
                        f"Shards {shard} of /{path} are not multiples of its chunks "
                        f"{chunks[path]}. Pick shards that are whole multiples of the chunks."
                    )
                shards[path] = shard
    metadata, docs = build_target_documents(
        groups, arrays, chunks, shards, zarr_format=fmt, compressors=compressors
    )
    tgt_loc = resolve_location(target_store, storage_options=target_options, read_only=False)
    tmp_loc = (
        resolve_location(temp_store, storage_options=temp_options, read_only=False)
        if temp_store is not None
        else None
    )
    jobs: list[ArrayJob] = []
    for path, arr in arrays:
        unit = shards[path] or chunks[path]
        plan = plan_rechunk(
            arr.shape,
            arr.dtype.itemsize,
            arr.chunks,
            unit,
            mem,
            allow_two_stage=tmp_loc is not None and engine in ("auto", "rechunker"),
            amplification_limit=limit,
        )
        temp_meta = None
        if plan.two_stage:
            temp_meta, _ = build_target_documents(
                [], [(path, arr)], {path: plan.intermediate_chunks}, {}, zarr_format=3
            )
            temp_meta = temp_meta[path]
        jobs.append(ArrayJob(path, arr.metadata, metadata[path], temp_meta, plan))
    distributed = src_loc.shareable and tgt_loc.shareable
    threads = int(get_option("optimize.assumed-threads"))
    method, reason = choose_engine(
        engine,
        [j.plan for j in jobs],
        has_temp=tmp_loc is not None,
        distributed=distributed,
        threads=threads,
        amplification_limit=limit,
    )
    token = dask.base.tokenize(
        src_loc.display, src_loc.path, tgt_loc.display, docs, method, [j.plan for j in jobs]
    )
    done, resumed, restarted = prepare_target(tgt_loc, token, overwrite)
    with storage_errors(tgt_loc.display):
        write_keys(
            tgt_loc.open_store(),
            {
                (f"{tgt_loc.path}/{PARTIAL}" if tgt_loc.path else PARTIAL): json.dumps(
                    {"token": token, "source": src_loc.display, "method": method}
                ).encode()
            },
        )
    if tmp_loc is not None and any(j.plan.two_stage for j in jobs):
        prepare_temp(tmp_loc, token)
    with ExitStack() as stack:
        if distributed:  # one embedded cluster for the copy and the consolidation
            client = stack.enter_context(client_for(tgt_loc, client))
        if method == "rechunker":
            tasks, skipped = _block_tasks(jobs, src_loc, tgt_loc, tmp_loc, done)
            try:
                result = run_graph(
                    [tasks], location=tgt_loc, op="rechunk", client=client, progress=progress
                )
            except BaseException:
                if distributed:
                    _cancel([t.key for t in tasks], client)
                raise
            blocks = sum(int(o["blocks"]) for o in result[0])
            nbytes = sum(int(o["bytes"]) for o in result[0])
        else:
            sums, skipped = _dask_tasks(jobs, src_loc, tgt_loc, method), 0
            result = run_graph(
                sums, location=tgt_loc, op="rechunk", client=client, progress=progress
            )
            blocks = sum(
                math.prod(
                    -(-n // c) for n, c in zip(j.plan.shape, j.plan.write_chunks, strict=True)
                )
                for j in jobs
            )
            nbytes = sum(int(v) for v in result)
        write_documents(tgt_loc, docs)
        remove_prefix(tgt_loc, f"{MARKER_PREFIX}/done")
        remove_prefix(tgt_loc, MARKER_PREFIX)  # the partial marker goes last
        if tmp_loc is not None and any(j.plan.two_stage for j in jobs):
            remove_prefix(tmp_loc, "")
        consolidated = bool(groups) and source_is_consolidated(src_loc)
        if consolidated:  # the source was: so is the copy (written after its root document)
            from zarr_dask_utils.metadata.consolidate import consolidate_metadata

            consolidate_metadata(
                target_store, storage_options=target_options, client=client, progress=progress
            )
    overhead = int(get_option("optimize.memory-overhead-factor") * mem)
    return RechunkReport(
        location=src_loc.display,
        engine=result.engine,
        target=tgt_loc.display,
        method=method,
        method_reason=reason,
        arrays=tuple(
            {
                "path": j.path,
                "shape": list(j.plan.shape),
                "dtype": str(dict(arrays)[j.path].dtype),
                "source_chunks": list(j.plan.source_chunks),
                "target_chunks": list(chunks[j.path]),
                "target_shards": list(shards[j.path]) if shards[j.path] else None,
                "block_bytes": block_bytes(j.plan),
                "plan": j.plan.to_dict(),
            }
            for j in jobs
        ),
        max_mem=mem,
        memory_bound=mem + overhead,
        temp_store=tmp_loc.display if tmp_loc is not None else None,
        blocks_written=blocks,
        blocks_skipped=skipped,
        bytes_written=nbytes,
        restarted=restarted,
        resumed=resumed,
        zarr_format=fmt,
        consolidated=consolidated,
    )


def source_is_consolidated(location: Location) -> bool:
    """Whether the group at *location* has consolidated metadata (inline, or `.zmetadata`)."""
    names = ("zarr.json", ".zmetadata")
    with storage_errors(location.display):
        raw = read_keys(location.open_store(), [join_key(location.path, n) for n in names])
    root, zmeta = (raw[join_key(location.path, n)] for n in names)
    if zmeta is not None:
        return True
    if root is None:
        return False
    try:
        return isinstance(json.loads(root).get("consolidated_metadata"), dict)
    except (ValueError, AttributeError):
        return False


def _cancel(keys: Sequence[Any], client: Client | None) -> None:
    """Stop the copy tasks still queued or running after one failed (best effort).

    Otherwise they would go on writing into a target a rerun may be cleaning up.
    """
    from distributed import Future, default_client

    try:
        # no client given: an embedded cluster was closed with its tasks, nothing to stop
        cl = client or default_client()
        cl.cancel([Future(k, cl) for k in keys], force=True)
    except ValueError:  # pragma: no cover - no current client
        return
    except Exception:  # pragma: no cover - the original error matters more
        logger.warning("could not cancel %d rechunk tasks", len(keys), exc_info=True)


def _block_tasks(
    jobs: Sequence[ArrayJob],
    src: Location,
    tgt: Location,
    tmp: Location | None,
    done: set[str],
) -> tuple[list[Any], int]:
    """One task per block; a stage's tasks depend on all tasks of the stage before."""
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
                key = f"{MARKER_PREFIX}/done/s{number}/a{index}/b{b}"
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
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """Write one block of a Dask-rechunked array to its region; return its byte count."""
    assert block_info is not None  # dask always passes it to a function that names it
    region = tuple(slice(a, b) for a, b in block_info[0]["array-location"])
    with storage_errors(target.display):
        open_from_metadata(target, path, metadata)[region] = block
    return np.full((1,) * block.ndim, block.nbytes, dtype="i8")


def _dask_tasks(jobs: Sequence[ArrayJob], src: Location, tgt: Location, method: str) -> list[Any]:
    """A Dask ``rechunk`` (tasks or P2P) of each array to its write blocks, then writes.

    The writes are a ``map_blocks`` returning one byte count per block (kept as an array
    collection: turning a P2P graph into ``Delayed`` objects breaks its barrier).
    """
    import dask.array as da  # imported here: only the tasks/p2p engines need it

    sums = []
    for job in jobs:
        plan = job.plan
        x = da.from_zarr(
            open_from_metadata(src, job.path, job.source_metadata), chunks=plan.read_chunks
        )
        y = x.rechunk(plan.write_chunks, method=method)
        counts = y.map_blocks(
            write_block_task,
            tgt,
            job.path,
            job.target_metadata,
            dtype="i8",
            chunks=tuple((1,) * len(c) for c in y.chunks),
            name=task_name("rechunk-write", uuid.uuid4().hex, job.path, method, plan),
        )
        sums.append(counts.sum())
    return sums
