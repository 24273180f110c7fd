"""``optimize_s3_access``: measure an S3 store from the workers, try settings, keep the fastest.

A recipe of named steps: open the store through the operation door (read only: nothing is
ever written); walk its arrays and fit the user's access pattern to a byte budget on the
largest one; measure latency and the concurrency curve with ``benchmark_store`` (the store
benchmark of the profiling feature, reused, not repeated); plan candidate settings (pure,
``s3_settings``); read the pattern once per candidate in one graph whose stages follow each
other on one worker; choose (pure) and report the winner's settings ready to pass on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import zarr
from dask.utils import parse_bytes

from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.compute.pinning import cluster_workers, pinned_task
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.access_patterns import resolve_patterns
from zarr_dask_utils._core.pure.array_spec import ArraySpec, array_specs, fit_selection
from zarr_dask_utils._core.storage.locations import Location, StoreLike
from zarr_dask_utils._core.storage.obstore_engine import obstore_available, split_engine
from zarr_dask_utils.cloud import tune_tasks
from zarr_dask_utils.cloud.s3_settings import (
    Candidate,
    Choice,
    StoreFacts,
    bandwidth_delay_product,
    choose_candidate,
    distinct_chunk_ratio,
    is_consolidated,
    knee_level,
    plan_candidates,
)
from zarr_dask_utils.cloud.tune_findings import tune_findings
from zarr_dask_utils.cloud.tune_report import S3AccessReport
from zarr_dask_utils.info import walk_hierarchy
from zarr_dask_utils.profiling.store_benchmark import benchmark_store

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["S3AccessReport", "optimize_s3_access"]

_CURVE = (1, 8, 32)


def _require_s3(location: Location) -> None:
    if location.kind == "fsspec" and location.url.startswith("s3://"):
        return
    raise InvalidOptionError(
        f"optimize_s3_access tunes s3:// stores reached by URL, and {location.display} is not "
        "one. Pass the URL (s3://bucket/prefix) with storage_options, not a store object, so "
        "the settings tried can be applied; for other stores run `zdu bench STORE`."
    )


def _pattern_name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and spec and all(isinstance(k, str) for k in spec):
        return ",".join(spec)
    if isinstance(spec, Sequence) and spec and all(isinstance(k, str) for k in spec):
        return ",".join(spec)
    return "selections"


def _selections(spec: ArraySpec, pattern: Any, budget: int) -> list[tuple[tuple[int, int], ...]]:
    patterns = resolve_patterns(pattern, spec.shape, spec.dims, strict=False)
    return [fit_selection(sel, spec, budget)[0] for p in patterns for sel in p.selections]


def _chunk_bytes(spec: ArraySpec) -> int:
    """Decoded bytes of one chunk (one shard when sharded): what one request reads at most."""
    return math.prod(spec.shards or spec.chunks) * spec.itemsize


def _facts(
    bench: Any,
    spec: ArraySpec,
    selections: list[Any],
    *,
    consolidated: bool,
    nodes: int,
    pattern: str,
    engine: str,
) -> StoreFacts:
    reads = [r for r in bench.steps("worker", "read") if r["requests"]]
    smallest = min((r["size"] for r in reads), default=0)
    curve = tuple((int(r["level"]), float(r["throughput"])) for r in reads if r["size"] == smallest)
    single = [r for r in reads if r["level"] == 1]
    rate = max((float(r["throughput"]) for r in single), default=0.0)
    chunk = _chunk_bytes(spec)
    return StoreFacts(
        latency=float(bench.latency_percentiles().get("p50", 0.0)),
        connection_rate=rate,
        curve=curve,
        chunk_bytes=chunk,
        largest_chunk=chunk,
        consolidated=consolidated,
        nodes=nodes,
        pattern=pattern,
        reread_ratio=distinct_chunk_ratio(selections, spec.shards or spec.chunks),
        engine=engine,
        concurrency=int(zarr.config.get("async.concurrency")),
        obstore=obstore_available(),
    )


def _trial_locations(location: Location, candidates: Sequence[Candidate]) -> list[Location]:
    given = dict(location.storage_options)
    return [
        Location(location.url, location.kind, c.storage_options(given), location.path, True)
        for c in candidates
    ]


def _trials(
    op: Any, location: Location, candidates: Sequence[Candidate], spec: ArraySpec, sels: list[Any]
) -> dict[str, dict[str, Any]]:
    """Read the pattern once per candidate, one after the other on the first worker."""
    workers = cluster_workers(op)
    first = workers[0] if workers else None
    prev: Any = None
    graph = []
    for cand, loc in zip(candidates, _trial_locations(location, candidates), strict=True):
        prev = pinned_task(
            first,
            tune_tasks.trial_task,
            loc,
            cand.concurrency,
            spec.path,
            sels,
            after=prev,
            cache=cand.cache,
            name="tune-trial",
        )
        graph.append(prev)
    values = op.run(graph)
    out = {}
    for cand, value in zip(candidates, values, strict=True):
        row = dict(value)
        if not row.get("error"):
            row["throughput"] = row["bytes_needed"] / max(row["seconds"], 1e-9)
        out[cand.name] = row
    return out


def optimize_s3_access(
    store: StoreLike,
    *,
    access_pattern: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
    budget: int | str = "64MiB",
) -> S3AccessReport:
    """Measure an S3 store from the workers, try settings on your access pattern, keep the best.

    Measures round-trip latency, throughput per connection and the concurrency curve (with
    :func:`~zarr_dask_utils.benchmark_store`), whether the metadata is consolidated and how
    chunk sizes compare with the latency x bandwidth product; then reads the access pattern
    on the largest array once with the settings given and once per candidate (zarr's
    ``async.concurrency``, the s3fs connection pool, ``max_concurrency`` (HEAD before GET or
    not), block size and cache type, the obstore engine when installed).  The fastest
    candidate that read the same bytes wins, if it beats the settings given by 10 %.
    Nothing is written: the store is opened read-only.

    Parameters
    ----------
    store
        An ``s3://bucket/prefix`` URL of a Zarr store (format 2 or 3).
    access_pattern
        As :func:`~zarr_dask_utils.analyze_chunks`: ``"sequential"`` (default, a full scan),
        ``"time-series"``, ``"spatial"``, ``"random"``, a list or weights of those, or
        selections.
    storage_options
        s3fs options (credentials, ``endpoint_url``); tuning keys in them are the baseline.
    client, progress
        Dask client and progress bar.
    budget
        Largest decoded size one selection of the pattern reads per trial.

    Returns
    -------
    S3AccessReport
        The winner's ``storage_options`` (credentials left out), ``zarr_config`` and
        ``dask_config``, throughput before vs after, every trial, and ``open_store()``.

    Raises
    ------
    InvalidOptionError
        Not an ``s3://`` URL, or no array with fixed-size elements to read.

    See Also
    --------
    benchmark_store : the measurements this builds on.

    Examples
    --------
    >>> report = optimize_s3_access(  # doctest: +SKIP
    ...     "s3://bucket/era5.zarr", access_pattern="time-series",
    ...     storage_options={"endpoint_url": "http://127.0.0.1:9000"})
    >>> store = report.open_store()  # doctest: +SKIP
    """
    pattern = access_pattern or "sequential"
    nbytes = parse_bytes(budget)
    with operation("tune", client=client, progress=progress) as op:
        location = op.open(store, storage_options=storage_options)
        _require_s3(location)
        engine, _ = split_engine(location.storage_options)
        consolidated = is_consolidated(op.probe().documents)
        hierarchy = walk_hierarchy(location, client=client, progress=progress)
        specs = sorted(array_specs(hierarchy.arrays), key=lambda s: (-s.nbytes, s.path))
        if not specs:
            raise InvalidOptionError(
                f"{location.display} holds no array with fixed-size elements to read, so there "
                "is no access to tune. Point at a store with data (or one of its groups)."
            )
        spec = specs[0]
        sels = _selections(spec, pattern, nbytes)
        bench = benchmark_store(
            location,
            patterns={},
            chunk_sizes=[_chunk_bytes(spec)],
            concurrency=_CURVE,
            latency_samples=8,
            client=client,
            progress=progress,
        )
        nodes = len(hierarchy.arrays) + len(getattr(hierarchy, "groups", ()))
        facts = _facts(
            bench,
            spec,
            sels,
            consolidated=consolidated,
            nodes=nodes,
            pattern=_pattern_name(pattern),
            engine=engine,
        )
        candidates = plan_candidates(facts)
        trials = _trials(op, location, candidates, spec, sels)
        run_engine = op.engine or ""
    choice = choose_candidate(candidates, trials)
    return _report(location, run_engine, spec, facts, candidates, trials, choice)


def _report(
    location: Location,
    run_engine: str,
    spec: ArraySpec,
    facts: StoreFacts,
    candidates: Sequence[Candidate],
    trials: Mapping[str, Mapping[str, Any]],
    choice: Choice,
) -> S3AccessReport:
    by_name = {c.name: c for c in candidates}
    winner = by_name[choice.winner]
    given = dict(location.storage_options)
    options = winner.storage_options(given)
    public = {k: v for k, v in options.items() if k not in ("key", "secret", "token")}
    before = trials.get(choice.baseline, {}).get("throughput")
    after = trials.get(choice.winner, {}).get("throughput")
    why = "obstore installed" if facts.obstore else "obstore not installed: only s3fs was tried"
    report = S3AccessReport(
        location=location.display,
        engine=run_engine,
        pattern=facts.pattern,
        array=spec.path,
        store_engine=f"{winner.engine} ({choice.reason}; {why})",
        facts={
            "latency": facts.latency,
            "connection_rate": facts.connection_rate,
            "curve": [list(p) for p in facts.curve],
            "knee": knee_level(facts.curve),
            "bdp": bandwidth_delay_product(facts.latency, facts.connection_rate),
            "chunk_bytes": facts.chunk_bytes,
            "consolidated": facts.consolidated,
            "reread_ratio": facts.reread_ratio,
            "obstore_installed": facts.obstore,
        },
        candidates=tuple(c.to_dict() for c in candidates),
        trials={k: dict(v) for k, v in trials.items()},
        winner=choice.winner,
        reason=choice.reason,
        storage_options=public,
        zarr_config=winner.zarr_config(),
        dask_config={"zarr-dask-utils.io.concurrency": winner.concurrency},
        consolidate=not facts.consolidated and facts.nodes > 1,
        cache=winner.cache or facts.reread_ratio > 1.0,
        cached=winner.cache,
        throughput_before=before,
        throughput_after=after,
        url=location.url,
        given_options=given,
    )
    return report.with_findings(tune_findings(report, choice))
