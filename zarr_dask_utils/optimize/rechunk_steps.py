"""The steps of :func:`~zarr_dask_utils.rechunk_array`, in the order it runs them.

Open the source, lay out the target (chunks, shards, documents: no I/O), open the outputs
(refusing overlaps and unwritable stores before any write), plan every array and choose the
engine, mark the target partial (resume, restart or refuse), copy, then write the documents
root last and drop the markers.  :mod:`~zarr_dask_utils.optimize.rechunk` reads as that recipe.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dask.base
from distributed import Client

from zarr_dask_utils._core.compute.operation import Operation
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.canonical import refuse_overlap
from zarr_dask_utils._core.storage.locations import Location, StoreLike
from zarr_dask_utils._core.storage.markers import (
    MARKER_PREFIX,
    PARTIAL,
    prepare_target,
    prepare_temp,
    remove_prefix,
)
from zarr_dask_utils._core.storage.outputs import probe_store_writable
from zarr_dask_utils._core.storage.storeio import storage_errors, write_keys
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
from zarr_dask_utils.optimize.rechunk_refusals import refuse_misread_codecs

__all__ = [
    "RechunkRun",
    "TargetLayout",
    "array_row",
    "cancel_tasks",
    "copy_blocks",
    "finish_target",
    "mark_partial",
    "open_outputs",
    "open_rechunk_source",
    "plan_run",
    "target_layout",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetLayout:
    """What the target looks like: per array its chunks and shards, and its documents."""

    zarr_format: int
    chunks: Mapping[str, tuple[int, ...]]
    shards: Mapping[str, tuple[int, ...] | None]
    requested: tuple[str, ...]  # arrays the chunk request applies to
    metadata: Mapping[str, Any]  # target metadata object per array
    documents: Mapping[str, bytes]  # every metadata document of the target, written last


@dataclass(frozen=True)
class RechunkRun:
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


def open_rechunk_source(
    op: Operation, source: StoreLike, storage_options: Mapping[str, Any] | None
) -> tuple[Location, Any, list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Open the source through the door; refuse one without arrays, or read wrongly."""
    src_loc = op.open(source, role="source", storage_options=storage_options, probe=False)
    node, groups, arrays = open_source(src_loc)  # opening it is the check
    refuse_misread_codecs(src_loc, groups, arrays)  # values zarr would read wrongly
    if not arrays:
        raise InvalidOptionError(
            f"{src_loc.display} holds no arrays, so there is nothing to rechunk. Pass an "
            "array or a group that contains arrays."
        )
    return src_loc, node, groups, arrays


_FORMATS: dict[int, Literal[2, 3]] = {2: 2, 3: 3}  # the zarr formats a target can be written in


def target_layout(
    node: Any,
    groups: Sequence[tuple[str, Any]],
    arrays: Sequence[tuple[str, Any]],
    target_chunks: Any,
    target_shards: Any,
    zarr_format: int | None,
    compressors: Any,
) -> TargetLayout:
    """Validate the chunk and shard requests and build the target's documents (no I/O)."""
    fmt = _FORMATS.get(int(zarr_format or node.metadata.zarr_format))
    if fmt is None:
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
    return TargetLayout(fmt, chunks, shards, tuple(requested), metadata, docs)


def open_outputs(
    op: Operation,
    target_store: StoreLike,
    target_storage_options: Mapping[str, Any] | None,
    temp_store: StoreLike | None,
    temp_storage_options: Mapping[str, Any] | None,
) -> tuple[Location, Location | None]:
    """Open target and temp store; refuse overlaps and unwritable outputs before any write."""
    src_loc = op.locations["source"]
    tgt_loc = op.open(
        target_store,
        role="target",
        storage_options=target_storage_options,
        read_only=False,
        probe=False,
    )
    tmp_loc = (
        op.open(
            temp_store,
            role="temp",
            storage_options=temp_storage_options,
            read_only=False,
            probe=False,
        )
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


_MANY = 1 << 20  # threads enough to split every block as far as it can be


def plan_run(
    op: Operation,
    layout: TargetLayout,
    arrays: Sequence[tuple[str, Any]],
    mem: int,
    limit: float,
    engine: str,
) -> RechunkRun:
    """Plan every array (rechunker's algorithm), choose the engine, derive the resume token."""
    has_temp = "temp" in op.locations
    ours = engine in ("auto", "rechunker")
    threads = 0  # asked only for a plan whose blocks can split: asking starts the client
    jobs: list[ArrayJob] = []
    for path, arr in arrays:
        planner = functools.partial(
            plan_rechunk,
            arr.shape,
            arr.dtype.itemsize,
            arr.chunks,
            layout.shards[path] or layout.chunks[path],
            mem,
            allow_two_stage=has_temp and ours,
            amplification_limit=limit,
        )
        plan = planner()
        if ours and planner(threads=_MANY) != plan:
            threads = threads or op.threads  # >= 2 blocks per thread in every stage
            plan = planner(threads=threads)
        temp_meta = None
        if plan.two_stage:
            temp_meta, _ = build_target_documents(
                [],
                [(path, arr)],
                {path: plan.intermediate_chunks},
                {},
                zarr_format=3,
                compressors=temp_compressors(arr.dtype),
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
    return RechunkRun(tuple(jobs), method, reason, token, layout.documents)


def temp_compressors(dtype: Any) -> str | None:
    """The compressor of the intermediate copy (``optimize.temp-compressors``), for numbers.

    The temp copy is written once, read once, then deleted, so the source's codec (zstd
    encodes at a third of lz4's speed here) is the wrong trade: ``auto`` writes it with
    blosc-lz4, nearly as fast as no compression (``benchmarks/README.md``, "Fixed cost of a
    call") while the temp copy of compressible data does not take its full uncompressed size
    on disk (``"none"`` chooses that explicitly, where space is plentiful).
    Other dtypes (strings, objects) keep the source's codecs; ``None`` keeps them always.
    """
    name = get_option("optimize.temp-compressors")
    kind = getattr(dtype, "kind", "")
    if name is None or str(kind) not in ("b", "i", "u", "f", "c", "m", "M"):
        return None
    if str(name).strip().lower() == "auto":
        return "blosc-lz4"
    return str(name)


def mark_partial(op: Operation, run: RechunkRun, overwrite: bool) -> tuple[set[str], bool, bool]:
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


def copy_blocks(op: Operation, run: RechunkRun, done: set[str]) -> tuple[int, int, int]:
    """Run the copy graph on the operation's client: ``(blocks, skipped, bytes)`` written."""
    src, tgt = op.locations["source"], op.locations["target"]
    if run.method == "rechunker":
        tasks, skipped = block_copy_tasks(run.jobs, src, tgt, op.locations.get("temp"), done)
        try:
            result = op.run([tasks])
        except BaseException:
            if op.shareable:
                cancel_tasks([t.key for t in tasks], op.client)
            raise
        blocks = sum(int(o["blocks"]) for o in result[0])
        return blocks, skipped, sum(int(o["bytes"]) for o in result[0])
    sums, blocks, skipped = dask_rechunk_tasks(run.jobs, src, tgt, run.method, done)
    result = op.run(sums)
    # blocks already done were read again but not written
    return blocks - skipped, skipped, sum(int(v) for v in result)


def finish_target(op: Operation, run: RechunkRun) -> None:
    """Write the target's documents (root last), then drop the markers and the temp copy."""
    tgt = op.locations["target"]
    write_target_documents(tgt, run.documents)
    remove_prefix(tgt, f"{MARKER_PREFIX}/done")
    remove_prefix(tgt, MARKER_PREFIX)  # the partial marker goes last
    if run.two_stage:
        remove_prefix(op.locations["temp"], "")


def array_row(job: ArrayJob, layout: TargetLayout, dtype: Any) -> dict[str, Any]:
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


def cancel_tasks(keys: Sequence[Any], client: Client | None) -> None:
    """Stop the copy tasks still queued or running after one failed (best effort).

    Otherwise they would go on writing into a target a rerun may be cleaning up.
    """
    from distributed import Future

    if client is None:  # threads in this process: nothing runs on after the error
        return
    try:
        client.cancel(  # type: ignore[no-untyped-call]  # distributed: unannotated
            [Future(k, client) for k in keys], force=True
        )
    except Exception:  # pragma: no cover - the original error matters more
        logger.warning("could not cancel %d rechunk tasks", len(keys), exc_info=True)
