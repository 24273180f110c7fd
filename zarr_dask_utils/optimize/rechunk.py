"""``rechunk_array``: bounded-memory rechunking of an array, a group or an xarray store on zarr 3.

The plan comes from :mod:`zarr_dask_utils.optimize.plan` (rechunker's algorithm); the work is
one Dask graph of block copies (``rechunker`` method), or a Dask ``rechunk`` with
``method="tasks"`` / ``"p2p"`` followed by ``store``.  Safety: the source is only read; the
target's metadata documents are written after every chunk, root last, and a marker
(``.zdu-rechunk/partial.json``) plus one ``done`` key per finished block (every engine: see
:mod:`~zarr_dask_utils.optimize.graphs`) lets a rerun resume.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.base
from dask.utils import parse_bytes
from distributed import Client

from zarr_dask_utils._core.canonical import refuse_overlap
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.locations import Location, StoreLike
from zarr_dask_utils._core.markers import (
    MARKER_PREFIX,
    PARTIAL,
    prepare_target,
    prepare_temp,
    remove_prefix,
)
from zarr_dask_utils._core.operation import Operation, operation
from zarr_dask_utils._core.outputs import probe_store_writable
from zarr_dask_utils._core.storeio import (
    join_key,
    read_keys,
    storage_errors,
    write_keys,
)
from zarr_dask_utils.optimize.array_jobs import (
    ArrayJob,
    block_bytes,
    build_target_documents,
    check_requests,
    chunks_for,
    open_source,
    write_target_documents,
)
from zarr_dask_utils.optimize.graphs import block_copy_tasks, dask_rechunk_tasks
from zarr_dask_utils.optimize.plan import choose_engine, plan_rechunk
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
        to either.  Arrays not covered keep their chunks (``chunks_requested`` in the
        report); a request that fits no array, or names an array or a dimension the source
        does not have, is an error.
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
    MetadataInvalidError
        A metadata document of the source is not valid JSON (the message names it).
    OverlappingLocationsError
        The target (or temp store) equals, contains or lies inside the source, or the temp
        store overlaps the target; raised before anything is written.
    OutputNotWritableError
        An empty test write to the target or temp store failed (before any work).

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
    with operation("rechunk", client=client, progress=progress) as op:
        src_loc, node, groups, arrays = _open_source(op, source, storage_options)
        layout = _target_layout(
            node, groups, arrays, target_chunks, target_shards, zarr_format, compressors
        )
        tgt_loc, tmp_loc = _open_outputs(op, target_store, target_options, temp_store, temp_options)
        run = _plan_run(op, layout, arrays, mem, limit, engine)
        done, resumed, restarted = _mark_partial(op, run, overwrite)
        blocks, skipped, nbytes = _copy(op, run, done)
        _finish(op, run)
        # the source was consolidated: so is the copy (written after its root document)
        consolidated = bool(groups) and source_is_consolidated(src_loc)
        if consolidated:
            _consolidate_target(tgt_loc)
    overhead = int(get_option("optimize.memory-overhead-factor") * mem)
    return RechunkReport(
        location=src_loc.display,
        engine=op.engine or "",
        target=tgt_loc.display,
        method=run.method,
        method_reason=run.reason,
        arrays=tuple(_array_row(j, layout, dict(arrays)[j.path].dtype) for j in run.jobs),
        max_mem=mem,
        memory_bound=mem + overhead,
        temp_store=tmp_loc.display if tmp_loc is not None else None,
        blocks_written=blocks,
        blocks_skipped=skipped,
        bytes_written=nbytes,
        restarted=restarted,
        resumed=resumed,
        source_reread=resumed and run.method != "rechunker",
        zarr_format=layout.zarr_format,
        consolidated=consolidated,
    )


# --- the steps of rechunk_array, in order --------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """What the target looks like: per array its chunks and shards, and its documents."""

    zarr_format: int
    chunks: Mapping[str, tuple[int, ...]]
    shards: Mapping[str, tuple[int, ...] | None]
    requested: tuple[str, ...]  # arrays the chunk request applies to
    metadata: Mapping[str, Any]  # target metadata object per array
    documents: Mapping[str, bytes]  # every metadata document of the target, written last


@dataclass(frozen=True)
class _Run:
    """The plan of one run: the array jobs, the engine and the resume token."""

    jobs: tuple[ArrayJob, ...]
    method: str
    reason: str
    token: str
    documents: Mapping[str, bytes]

    @property
    def two_stage(self) -> bool:
        """Whether some array goes through the temp store."""
        return any(j.plan.two_stage for j in self.jobs)


def _open_source(
    op: Operation, source: StoreLike, storage_options: Mapping[str, Any] | None
) -> tuple[Location, Any, list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Open the source through the door; refuse one without arrays."""
    src_loc = op.open(source, role="source", storage_options=storage_options, probe=False)
    node, groups, arrays = open_source(src_loc)  # opening it is the check
    if not arrays:
        raise InvalidOptionError(
            f"{src_loc.display} holds no arrays, so there is nothing to rechunk. Pass an "
            "array or a group that contains arrays."
        )
    return src_loc, node, groups, arrays


def _target_layout(
    node: Any,
    groups: Sequence[tuple[str, Any]],
    arrays: Sequence[tuple[str, Any]],
    target_chunks: Any,
    target_shards: Any,
    zarr_format: int | None,
    compressors: Any,
) -> _Layout:
    """Validate the chunk and shard requests and build the target's documents (no I/O)."""
    fmt = int(zarr_format or node.metadata.zarr_format)
    if fmt not in (2, 3):
        raise InvalidOptionError(f"zarr_format={zarr_format!r}: use 2 or 3.")
    single = len(arrays) == 1 and not groups
    requested = check_requests(arrays, target_chunks, target_shards, single=single)
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
    return _Layout(fmt, chunks, shards, tuple(requested), metadata, docs)


def _open_outputs(
    op: Operation,
    target_store: StoreLike,
    target_options: Mapping[str, Any] | None,
    temp_store: StoreLike | None,
    temp_options: Mapping[str, Any] | None,
) -> tuple[Location, Location | None]:
    """Open target and temp store; refuse overlaps and unwritable outputs before any write."""
    src_loc = op.locations["source"]
    tgt_loc = op.open(
        target_store, role="target", storage_options=target_options, read_only=False, probe=False
    )
    tmp_loc = (
        op.open(temp_store, role="temp", storage_options=temp_options, read_only=False, probe=False)
        if temp_store is not None
        else None
    )
    refuse_overlap(src_loc, tgt_loc)  # before anything is written: never into the source
    probe_store_writable(tgt_loc, what="target")
    if tmp_loc is not None:
        refuse_overlap(src_loc, tmp_loc, what="temp store")
        refuse_overlap(tgt_loc, tmp_loc, what="temp store", source_name="target")
        probe_store_writable(tmp_loc, what="temp store")
    return tgt_loc, tmp_loc


def _plan_run(
    op: Operation,
    layout: _Layout,
    arrays: Sequence[tuple[str, Any]],
    mem: int,
    limit: float,
    engine: str,
) -> _Run:
    """Plan every array (rechunker's algorithm), choose the engine, derive the resume token."""
    has_temp = "temp" in op.locations
    jobs: list[ArrayJob] = []
    for path, arr in arrays:
        plan = plan_rechunk(
            arr.shape,
            arr.dtype.itemsize,
            arr.chunks,
            layout.shards[path] or layout.chunks[path],
            mem,
            allow_two_stage=has_temp and engine in ("auto", "rechunker"),
            amplification_limit=limit,
        )
        temp_meta = None
        if plan.two_stage:
            temp_meta, _ = build_target_documents(
                [], [(path, arr)], {path: plan.intermediate_chunks}, {}, zarr_format=3
            )
            temp_meta = temp_meta[path]
        jobs.append(ArrayJob(path, arr.metadata, layout.metadata[path], temp_meta, plan))
    method, reason = choose_engine(
        engine,
        [j.plan for j in jobs],
        has_temp=has_temp,
        distributed=op.shareable,
        threads=int(get_option("optimize.assumed-threads")),
        amplification_limit=limit,
    )
    src, tgt = op.locations["source"], op.locations["target"]
    token = dask.base.tokenize(
        src.display, src.path, tgt.display, layout.documents, method, [j.plan for j in jobs]
    )
    return _Run(tuple(jobs), method, reason, token, layout.documents)


def _mark_partial(op: Operation, run: _Run, overwrite: bool) -> tuple[set[str], bool, bool]:
    """Prepare the target (resume, restart or refuse) and write the partial marker.

    Returns the blocks already done, and whether the run resumes or restarts.
    """
    src, tgt = op.locations["source"], op.locations["target"]
    done, resumed, restarted = prepare_target(tgt, run.token, overwrite)
    marker = {"token": run.token, "source": src.display, "method": run.method}
    with storage_errors(tgt.display):
        write_keys(tgt.open_store(), {join_key(tgt.path, PARTIAL): json.dumps(marker).encode()})
    if run.two_stage:
        prepare_temp(op.locations["temp"], run.token)
    return done, resumed, restarted


def _copy(op: Operation, run: _Run, done: set[str]) -> tuple[int, int, int]:
    """Run the copy graph on the operation's client: ``(blocks, skipped, bytes)`` written."""
    src, tgt = op.locations["source"], op.locations["target"]
    if run.method == "rechunker":
        tasks, skipped = block_copy_tasks(run.jobs, src, tgt, op.locations.get("temp"), done)
        try:
            result = op.run([tasks])
        except BaseException:
            if op.shareable:
                _cancel([t.key for t in tasks], op.client)
            raise
        blocks = sum(int(o["blocks"]) for o in result[0])
        return blocks, skipped, sum(int(o["bytes"]) for o in result[0])
    sums, blocks, skipped = dask_rechunk_tasks(run.jobs, src, tgt, run.method, done)
    result = op.run(sums)
    # blocks already done were read again but not written
    return blocks - skipped, skipped, sum(int(v) for v in result)


def _finish(op: Operation, run: _Run) -> None:
    """Write the target's documents (root last), then drop the markers and the temp copy."""
    tgt = op.locations["target"]
    write_target_documents(tgt, run.documents)
    remove_prefix(tgt, f"{MARKER_PREFIX}/done")
    remove_prefix(tgt, MARKER_PREFIX)  # the partial marker goes last
    if run.two_stage:
        remove_prefix(op.locations["temp"], "")


def _consolidate_target(target: Location) -> None:
    """Consolidate the finished target inside this operation (same client, target resolved)."""
    from zarr_dask_utils.metadata import consolidate_metadata  # the feature's public face

    consolidate_metadata(target, backup=False)  # no backup: the root replaced is our own


def _array_row(job: ArrayJob, layout: _Layout, dtype: Any) -> dict[str, Any]:
    """The report's description of one array."""
    shards = layout.shards[job.path]
    return {
        "path": job.path,
        "shape": list(job.plan.shape),
        "dtype": str(dtype),
        "source_chunks": list(job.plan.source_chunks),
        "target_chunks": list(layout.chunks[job.path]),
        "chunks_requested": job.path in layout.requested,
        "target_shards": list(shards) if shards else None,
        "block_bytes": block_bytes(job.plan),
        "plan": job.plan.to_dict(),
    }


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
    from distributed import Future

    if client is None:  # threads in this process: nothing runs on after the error
        return
    try:
        client.cancel([Future(k, client) for k in keys], force=True)
    except Exception:  # pragma: no cover - the original error matters more
        logger.warning("could not cancel %d rechunk tasks", len(keys), exc_info=True)
