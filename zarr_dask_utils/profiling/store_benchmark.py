"""``benchmark_store``: the store as the cluster sees it, measured by a Dask graph on the workers.

A recipe of named steps: open the store through the operation door and walk its arrays; list
it on a worker (the listing cost, and the objects to read); plan (pure, ``bench_plan``); run
one graph whose stages follow each other (latency, one stream per object size, the
concurrency curve on one worker and on every worker at once, the access patterns of
``analyze_chunks`` on the real arrays, with ``write`` the writes and the removal of their
scratch prefix); calibrate the cost model and predict each pattern with it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import zarr
from dask.delayed import Delayed
from dask.utils import parse_bytes
from zarr.abc.store import Store

from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.compute.pinning import cluster_workers, pinned_task
from zarr_dask_utils._core.errors import ReadOnlyStoreError
from zarr_dask_utils._core.pure.access_patterns import PATTERNS, resolve_patterns
from zarr_dask_utils._core.pure.array_spec import array_specs
from zarr_dask_utils._core.pure.cost_model import selection_cost
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.locations import Location, StoreLike
from zarr_dask_utils.info import walk_hierarchy
from zarr_dask_utils.optimize import estimate_performance
from zarr_dask_utils.profiling import bench_tasks as tasks
from zarr_dask_utils.profiling.bench_plan import (
    DEFAULT_LEVELS,
    DEFAULT_SIZES,
    ArraySpec,
    BenchPlan,
    calibrated_params,
    plan_benchmark,
    requests_at,
    summarize_curve,
)
from zarr_dask_utils.profiling.bench_report import StoreBenchmark, benchmark_findings

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["StoreBenchmark", "benchmark_store"]


def _writable(location: Location, given: Any) -> Location:
    """The location opened for writing, or a clear refusal before anything is read.

    A zarr Store (Group, Array) the caller opened read-only stays read-only: its path is not
    reopened writable behind the caller's back.
    """
    writable = location.with_read_only(False)
    store = given.store if isinstance(given, zarr.Array | zarr.Group) else given
    try:
        if isinstance(store, Store) and store.read_only:
            raise ReadOnlyStoreError(f"the {type(store).__name__} given was opened read-only")
        writable.open_store()
    except ReadOnlyStoreError as err:
        why = "a zip file, which zarr-dask-utils only reads" if location.kind == "zip" else err
        raise ReadOnlyStoreError(
            f"benchmark_store(write=True) writes scratch objects into {location.display}, but "
            f"that store is read-only ({why}). Run it without write=True (zdu bench without "
            "--write) to measure reads only, or benchmark a writable copy."
        ) from err
    return writable


def _stage_graph(
    location: Location, writable: Location | None, plan: BenchPlan, workers: Sequence[str]
) -> dict[str, list[Delayed]]:
    """Build the benchmark's one graph; each stage waits for the one before it."""
    first = workers[0] if workers else None
    out: dict[str, list[Delayed]] = {"latency": [], "streams": [], "patterns": [], "writes": []}
    prev: Any = pinned_task(
        first,
        tasks.latency_task,
        location,
        plan.latency_keys,
        plan.latency_samples,
        name="bench-latency",
    )
    out["latency"].append(prev)
    steps = sorted({(1, s) for s in plan.sizes} | {(lv, plan.curve_size) for lv in plan.levels})
    for level, size in steps if plan.objects else ():
        reads = plan.reads(size, requests_at(level))
        prev = pinned_task(
            first,
            tasks.stream_task,
            location,
            reads,
            level=level,
            size=size,
            scope="worker",
            after=prev,
            name="bench-read",
        )
        out["streams"].append(prev)
    for level in plan.levels if len(workers) > 1 and plan.objects else ():
        reads = plan.reads(plan.curve_size, requests_at(level))
        step = [
            pinned_task(
                w,
                tasks.stream_task,
                location,
                reads,
                level=level,
                size=plan.curve_size,
                scope="cluster",
                after=prev,
                name="bench-read-all",
            )
            for w in workers
        ]
        out["streams"].extend(step)
        prev = pinned_task(None, tasks.barrier, *step, name="bench-barrier")
    for read in plan.patterns:
        prev = pinned_task(
            first,
            tasks.pattern_task,
            location,
            read.array,
            read.pattern,
            read.selections,
            after=prev,
            name="bench-pattern",
        )
        out["patterns"].append(prev)
    if writable is not None and plan.scratch is not None:
        for size in plan.sizes:
            for level in plan.write_levels:
                keys = plan.writes(size, level)
                prev = pinned_task(
                    first,
                    tasks.write_task,
                    writable,
                    keys,
                    level=level,
                    size=size,
                    after=prev,
                    name="bench-write",
                )
                out["writes"].append(prev)
        out["cleanup"] = [
            pinned_task(
                first, tasks.remove_scratch, writable, plan.scratch, after=prev, name="bench-rm"
            )
        ]
    return out


def _predicted(
    location: Location, specs: Mapping[str, ArraySpec], rows: list[dict[str, Any]], bench: Any
) -> None:
    """Add the calibrated model's ``predicted_*`` to each pattern row (in place)."""
    for row in rows:
        node = dataclasses.replace(location, path=join_key(location.path, row["array"]))
        selections = [tuple(slice(lo, hi) for lo, hi in sel) for sel in row.pop("selections")]
        estimate = estimate_performance(node, None, selections, params=bench, progress=False)
        row["predicted_requests"] = estimate.requests
        row["predicted_bytes_read"] = estimate.bytes_read
        row["predicted_seconds"] = estimate.seconds
    del specs


def benchmark_store(
    store: StoreLike,
    *,
    patterns: Any = PATTERNS,
    chunk_sizes: Sequence[int | str] | None = None,
    concurrency: Sequence[int] | None = None,
    write: bool = False,
    latency_samples: int = 16,
    pattern_budget: int | str = "256MiB",
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> StoreBenchmark:
    """Measure a store as the cluster's workers see it, and calibrate the cost model with it.

    Parameters
    ----------
    store
        Path, URL, zarr Store/Group/Array (format 2 or 3).
    patterns
        Access patterns read on the real arrays, as ``access_pattern`` of
        :func:`~zarr_dask_utils.analyze_chunks` (default: all four named patterns).
    chunk_sizes
        Object sizes read per stream (ranges of stored objects) and, with *write*, written;
        ints or strings such as ``"4MiB"`` (default 256 KiB and 4 MiB).  The smallest is
        read at every level of the curve.
    concurrency
        Requests in flight per worker for the curve (default ``1, 2, 4, … 256``).
    write
        Also measure writes into a scratch prefix ``.zdu-bench-<random>`` that is removed
        afterwards; no user key is touched.  Read-only stores (zip) are refused.
    latency_samples
        One-byte requests timed one at a time (first-byte latency).
    pattern_budget
        Largest decoded size one pattern selection reads; larger ones are cut along time.
    storage_options, client, progress
        Store options, Dask client and progress bar.

    Returns
    -------
    StoreBenchmark
        Latency, listing cost, throughput per step (one worker and all workers), pattern
        reads measured and predicted, and the calibrated cost-model parameters: pass it as
        ``estimate_performance(..., params=bench)``.

    Raises
    ------
    ReadOnlyStoreError
        ``write=True`` on a read-only store.
    InvalidOptionError
        Non-positive sizes or levels, or a store with nothing to read (and no *write*).

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import benchmark_store
    >>> a = zarr.create_array(zarr.storage.MemoryStore(), shape=(64,), chunks=(16,), dtype="i4")
    >>> a[:] = 1
    >>> bench = benchmark_store(a.store, chunk_sizes=[32], concurrency=[1, 4], progress=False)
    >>> bench.steps()[-1]["level"]
    4
    """
    sizes = tuple(parse_bytes(s) for s in (chunk_sizes or DEFAULT_SIZES))
    budget = parse_bytes(pattern_budget)
    concurrency_zarr = int(zarr.config.get("async.concurrency"))
    with operation("bench", client=client, progress=progress) as op:
        location = op.open(store, storage_options=storage_options)
        writable = _writable(location, store) if write else None
        hierarchy = walk_hierarchy(location, client=client, progress=progress)
        specs = {s.path: s for s in array_specs(hierarchy.arrays)}
        token = uuid.uuid4().hex[:12]
        scratch = join_key(location.path, f".zdu-bench-{token}") if write else None
        prefixes = (location.path.strip("/"),)
        listed = op.run(
            [pinned_task(None, tasks.listing_task, location, prefixes, scratch, name="bench-list")]
        )[0]
        pattern_map = {
            path: resolve_patterns(patterns, spec.shape, spec.dims, strict=False)
            for path, spec in specs.items()
        }
        plan = plan_benchmark(
            listed["sample"],
            list(specs.values()),
            pattern_map,
            levels=tuple(concurrency or DEFAULT_LEVELS),
            sizes=sizes,
            latency_samples=latency_samples,
            pattern_budget=budget,
            write=write,
            node_path=location.path,
            token=token,
            scratch_taken=listed["scratch_taken"],
        )
        workers = cluster_workers(op)
        graph = _stage_graph(location, writable, plan, workers)
        names = list(graph)
        flat = [d for name in names for d in graph[name]]
        try:
            values = list(op.run(flat))
        finally:
            if writable is not None and plan.scratch is not None:
                tasks.remove_scratch(writable, plan.scratch)  # also when the graph failed
        engine = op.engine or ""
    results: dict[str, list[Any]] = {}
    for name in names:
        results[name], values = values[: len(graph[name])], values[len(graph[name]) :]
    return _report(location, engine, len(workers), plan, specs, listed, results, concurrency_zarr)


def _report(
    location: Location,
    engine: str,
    workers: int,
    plan: BenchPlan,
    specs: Mapping[str, ArraySpec],
    listed: Mapping[str, Any],
    results: Mapping[str, list[Any]],
    concurrency: int,
) -> StoreBenchmark:
    latency = tuple(results["latency"][0]["latency"]) if results["latency"] else ()
    curve = summarize_curve(results["streams"] + results["writes"])
    pattern_rows = []
    for read, row in zip(plan.patterns, results["patterns"], strict=True):
        spec = specs[read.array]
        decoded = sum(
            selection_cost(sel, spec.chunks, spec.itemsize, shards=spec.shards).bytes_decoded
            for sel in read.selections
        )
        pattern_rows.append(
            {
                **{k: v for k, v in row.items() if k != "worker"},
                "bytes_decoded": decoded,
                "cut": read.fitted,
                "selections": read.selections,
            }
        )
    params = calibrated_params(
        latency,
        curve,
        pattern_rows,
        concurrency=concurrency,
        source=f"benchmark_store on {location.display}",
    )
    bench = StoreBenchmark(location=location.display, engine=engine, params=params.to_dict())
    _predicted(location, specs, pattern_rows, bench)
    requests = (
        len(latency) + sum(r["requests"] for r in curve) + sum(r["requests"] for r in pattern_rows)
    )
    bench = dataclasses.replace(
        bench,
        workers=workers,
        latency=latency,
        listing={k: listed[k] for k in ("seconds", "keys", "objects", "bytes")},
        curve=tuple(curve),
        patterns=tuple(pattern_rows),
        scratch=plan.scratch,
        requests=requests,
    )
    return dataclasses.replace(bench, findings=tuple(benchmark_findings(bench, concurrency)))
