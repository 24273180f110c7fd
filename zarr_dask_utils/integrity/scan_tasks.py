"""The deep scan's graph: one decode task per batch of chunks, results reduced in a tree.

Worker side: :func:`scan_batch_task` decodes every object of a batch, numcodecs directly
(:mod:`~zarr_dask_utils._core.decoding.direct_decoder`) for plain codec chains, zarr's pipeline
for the others, and returns a small :class:`DecodeResult`.  Client side: :func:`scan_graph`
builds the tasks and their tree reduction, :func:`run_scan` runs them on an operation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dask.base import annotate
from dask.delayed import Delayed, delayed

from zarr_dask_utils._core.compute.operation import Operation
from zarr_dask_utils._core.compute.reduce import tree_reduce
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.decoding.direct_decoder import decode_direct, direct_chain
from zarr_dask_utils._core.decoding.pipeline_decoder import (
    DecodeResult,
    blosc_threads,
    decode_objects,
    grid_of,
    open_array,
)
from zarr_dask_utils._core.decoding.scratch import keep_scratch_memory
from zarr_dask_utils._core.storage.heap import heap_allocations
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.objectstream import StreamSettings
from zarr_dask_utils._core.storage.storeio import storage_errors
from zarr_dask_utils.integrity.plan import scan_workload

__all__ = [
    "Work",
    "ask_for_processes",
    "merge_results",
    "run_scan",
    "scan_batch_task",
    "scan_graph",
]

Work = tuple[tuple[str, int, Sequence[int]], ...]  # (array path, zarr format, grid indices)


def scan_batch_task(
    location: Location,
    work: Work,
    stats: bool,
    settings: StreamSettings,
    nthreads: int | None = 1,
    direct: bool = True,
) -> DecodeResult:
    """Worker task: decode every object of *work*; returns bad keys, counts and statistics.

    Arrays whose codec chain :func:`direct_chain` understands are decoded directly with
    numcodecs (objects streamed in reused buffers, ``settings.read_ahead`` stored bytes ahead
    of the decoder); the others by zarr's codec pipeline, ``settings.concurrency`` objects at
    a time.  Blosc runs with *nthreads* threads (``None``: its own setting).  Small
    allocations come from the heap and the codecs' per-call scratch memory stays in the
    process while the task runs (:func:`heap_allocations`, :func:`keep_scratch_memory`).
    """
    result = DecodeResult()
    heap = settings.heap_threshold
    with (
        storage_errors(location.display),
        blosc_threads(nthreads),
        heap_allocations(heap),
        keep_scratch_memory(None if heap is None else 2 * heap),
    ):
        store = location.open_store()
        for path, fmt, indices in work:
            try:
                array = open_array(store, location.path, path, fmt)
                grid = grid_of(array, path)
            except Exception as err:
                result.unreadable[path] = f"{type(err).__name__}: {err}"
                continue
            chain = direct_chain(array) if direct else None
            if chain is not None:
                decode_direct(
                    array,
                    chain,
                    grid,
                    indices,
                    result=result,
                    key_prefix=path,
                    stats=stats,
                    depth=settings.depth(chain.nbytes),
                )
                continue
            decode_objects(
                array,
                grid,
                list(indices),
                result=result,
                key_prefix=path,
                concurrency=settings.concurrency,
                stats=stats,
            )
    return result


def ask_for_processes(op: Operation, chunks: Mapping[str, tuple[int, int]]) -> None:
    """Before *op*'s client starts: ask for worker processes when *chunks* are many.

    Calls :meth:`Operation.want_processes` (``embedded_mode`` then picks worker processes for an
    embedded cluster under ``cluster.processes=auto``; an explicit setting, a user's client or
    a running one is used as given) from ``integrity.processes-from-chunks``, see
    :func:`~zarr_dask_utils.integrity.plan.scan_workload`.  *chunks*: per array path, the
    number of chunks to decode and the uncompressed bytes of one.
    """
    threshold = get_option("integrity.processes-from-chunks")
    op.want_processes(scan_workload(chunks, int(threshold or 0)))


def merge_results(*parts: DecodeResult) -> DecodeResult:
    """Tree-reduction step: fold several task results into one."""
    total = DecodeResult()
    for part in parts:
        total.merge(part)
    return total


def scan_graph(location: Location, work: Sequence[Work], *, op: str, stats: bool) -> list[Delayed]:
    """One task per batch of work, reduced in a tree (:func:`tree_reduce`) to at most 32 results.

    Tasks run in plan order (priorities), so the small batches of the last round
    (:func:`~zarr_dask_utils._core.pure.partition.batch_bounds`) come last.  Compute the returned
    collections and fold their values together with :func:`merge_results`.
    """
    settings = StreamSettings.from_config()
    nthreads = get_option("integrity.blosc-threads")
    direct = bool(get_option("integrity.direct-decode"))
    tasks = []
    for i, w in enumerate(work):
        with annotate(priority=-i):
            tasks.append(
                delayed(scan_batch_task, pure=False)(
                    location,
                    w,
                    stats,
                    settings,
                    nthreads,
                    direct,
                    dask_key_name=task_name(f"{op}-decode", location, i),
                )
            )
    return tree_reduce(tasks, merge_results, op, keep=32)


def run_scan(op: Operation, work: Sequence[Work], *, stats: bool) -> tuple[DecodeResult, str]:
    """Run :func:`scan_graph` for *work* on *op*'s source; the merged result and the engine."""
    result = op.run(scan_graph(op.locations["source"], work, op=op.name, stats=stats))
    return merge_results(*result), result.engine
