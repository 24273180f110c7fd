"""Benchmark: open and consolidate a wide Zarr hierarchy on S3, plain zarr vs zarr-dask-utils.

One run against a loopback S3 API server (moto ``ThreadedMotoServer`` on 127.0.0.1, random
port, in its own process) builds a hierarchy of ``--n-arrays`` arrays spread over
``--groups`` groups, then times, each ``--repeat`` times (median reported), and counts the
requests each made on the server:

r. reference: one listing + a GET of every metadata document, one process, no zarr, no Dask
a. ``zarr.open_group(store, use_consolidated=False)`` + ``list(group.members(max_depth=None))``
b. the same with consolidated metadata (after consolidation)
c. ``zarr.consolidate_metadata(store)``
d. ``zarr_dask_utils.consolidate_metadata(url, client=client)`` on a running
   ``LocalCluster(n_workers=2, threads_per_worker=2, processes=True)``
e. ``zarr_dask_utils.walk_hierarchy(url, client=client)``

Before each consolidation the store is put back into the unconsolidated state (not timed),
so c and d do the same job: read every document, write one.  Plain-zarr runs use a fresh
s3fs filesystem each time (no cached listings or instances).  The run also checks that after
our consolidation ``zarr.open_group(..., use_consolidated=True)`` sees every array.

Run ``python benchmarks/bench_metadata.py --help``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from s3server import S3Server

BUCKET = "zdu-bench"
CREDENTIALS = {"key": "testing", "secret": "testing"}
GOAL = 5.0


# --- the store --------------------------------------------------------------------------


def _filesystem(storage_options: dict[str, Any]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(**storage_options, skip_instance_cache=True)


@contextmanager
def _fresh_store(url: str, storage_options: dict[str, Any], *, read_only: bool) -> Iterator[Any]:
    """A zarr store on a new s3fs instance (no cached listings), closed after use."""
    from zarr.core.sync import sync
    from zarr.storage import FsspecStore

    options = {**storage_options, "skip_instance_cache": True}
    store = FsspecStore.from_url(url, storage_options=options, read_only=read_only)
    try:
        yield store
    finally:
        session = getattr(store.fs, "_s3", None)  # the aiobotocore client, once connected
        if session is not None:
            sync(session.__aexit__(None, None, None))


def build_hierarchy(
    url: str, storage_options: dict[str, Any], *, n_arrays: int, zarr_format: int, groups: int
) -> list[str]:
    """Write the hierarchy with ``zarr_dask_utils.testing.builders.build_wide_hierarchy``."""
    from zarr_dask_utils.testing.builders import build_wide_hierarchy

    return build_wide_hierarchy(
        url,
        n_arrays=n_arrays,
        zarr_format=zarr_format,
        storage_options=storage_options,
        groups=groups,
    )


def unconsolidate(url: str, storage_options: dict[str, Any], zarr_format: int) -> None:
    """Remove consolidated metadata and our backups (untimed reset between runs)."""
    fs = _filesystem(storage_options)
    root = url.removeprefix("s3://")
    if fs.exists(f"{root}/.zdu"):
        fs.rm(f"{root}/.zdu", recursive=True)
    if zarr_format == 2:
        if fs.exists(f"{root}/.zmetadata"):
            fs.rm(f"{root}/.zmetadata")
        return
    doc = json.loads(fs.cat(f"{root}/zarr.json"))
    if doc.pop("consolidated_metadata", None) is not None:
        fs.pipe(f"{root}/zarr.json", json.dumps(doc, indent=2).encode())


# --- the timed operations -----------------------------------------------------------------


def open_and_walk(url: str, storage_options: dict[str, Any], *, consolidated: bool) -> int:
    """Open the root group with plain zarr, walk every member; return the number of arrays."""
    import zarr

    with _fresh_store(url, storage_options, read_only=True) as store:
        group = zarr.open_group(store, mode="r", use_consolidated=consolidated)
        return sum(isinstance(node, zarr.Array) for _, node in group.members(max_depth=None))


def zarr_consolidate(url: str, storage_options: dict[str, Any]) -> None:
    """``zarr.consolidate_metadata`` on a fresh writable store."""
    import zarr

    with _fresh_store(url, storage_options, read_only=False) as store:
        zarr.consolidate_metadata(store)


def read_all_documents(url: str, storage_options: dict[str, Any]) -> int:
    """Reference: one listing, then GET every metadata document, 64 in flight, one process.

    No zarr objects, no Dask: roughly the least time any client needs on this server.
    """
    from zarr_dask_utils._core.pure.keys import is_metadata_key
    from zarr_dask_utils._core.storage.storeio import list_keys, read_keys

    with _fresh_store(url, storage_options, read_only=True) as store:
        keys = [k for k in list_keys(store) if is_metadata_key(k)]
        return len(read_keys(store, keys, concurrency=64))


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


# --- the run --------------------------------------------------------------------------------

LABELS = {
    "r": "r. reference: list + GET each document",
    "a": "a. zarr open_group + members, unconsolidated",
    "b": "b. zarr open_group + members, consolidated",
    "c": "c. zarr.consolidate_metadata",
    "d": "d. zarr_dask_utils.consolidate_metadata",
    "e": "e. zarr_dask_utils.walk_hierarchy",
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import boto3

    import zarr_dask_utils

    n, fmt, repeat = args.n_arrays, args.zarr_format, args.repeat
    timings: dict[str, list[float]] = {k: [] for k in LABELS}
    requests: dict[str, dict[str, int]] = {}
    checks: dict[str, Any] = {}
    result: dict[str, Any] = {
        "parameters": {**vars(args), "repeat": repeat},
        "machine": _machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    log = _logger(args.json)

    with S3Server(in_process=args.s3_in_process, latency_s=args.latency_ms / 1000) as s3:
        options: dict[str, Any] = {**CREDENTIALS, "endpoint_url": s3.endpoint}
        if args.s3fs_max_concurrency:
            options["max_concurrency"] = args.s3fs_max_concurrency

        def measure(key: str, func: Callable[[], Any]) -> Any:
            s3.requests()  # reset the server's counters
            seconds, value = timed(func)
            timings[key].append(seconds)
            requests[key] = s3.requests()  # of the last run; runs of one kind do the same
            return value

        boto3.client(
            "s3",
            endpoint_url=s3.endpoint,
            region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["key"],
            aws_secret_access_key=CREDENTIALS["secret"],
        ).create_bucket(Bucket=BUCKET)
        url = f"s3://{BUCKET}/wide-v{fmt}.zarr"
        log(f"S3 server at {s3.endpoint}; building {n} arrays in {args.groups} groups at {url}")
        result["build_s"], arrays = timed(
            lambda: build_hierarchy(url, options, n_arrays=n, zarr_format=fmt, groups=args.groups)
        )
        checks["arrays_built"] = len(arrays)
        unconsolidate(url, options, fmt)

        log(f"r, a: reference reads and unconsolidated opens ({repeat}x)")
        for _ in range(repeat):
            checks["reference_documents"] = measure("r", lambda: read_all_documents(url, options))
            checks["unconsolidated_open_sees"] = measure(
                "a", lambda: open_and_walk(url, options, consolidated=False)
            )

        result["cluster_start_s"], (cluster, client) = timed(lambda: _start_cluster(args))
        log(f"LocalCluster started in {result['cluster_start_s']:.1f} s (not timed below)")
        with cluster, client:
            # Warm-up (untimed): worker processes import zarr and s3fs once, as in any
            # long-lived cluster.
            zarr_dask_utils.walk_hierarchy(
                url, storage_options=options, client=client, progress=False
            )
            for i in range(repeat):
                log(f"c, d: consolidation round {i + 1}/{repeat} (zarr's, then ours)")
                unconsolidate(url, options, fmt)
                measure("c", lambda: zarr_consolidate(url, options))
                if i == 0:
                    checks["zarr_consolidated_open_sees"] = open_and_walk(
                        url, options, consolidated=True
                    )
                unconsolidate(url, options, fmt)
                report = measure(
                    "d",
                    lambda: zarr_dask_utils.consolidate_metadata(
                        url, storage_options=options, client=client, progress=False
                    ),
                )
                checks["ours_written"] = checks.get("ours_written", True) and report.written
            checks["ours_entries"] = report.entries
            result["engine"] = report.engine

            log(f"b, e: consolidated opens and walk_hierarchy ({repeat}x)")
            for _ in range(repeat):
                checks["consolidated_open_sees"] = measure(
                    "b", lambda: open_and_walk(url, options, consolidated=True)
                )
                hierarchy = measure(
                    "e",
                    lambda: zarr_dask_utils.walk_hierarchy(
                        url, storage_options=options, client=client, progress=False
                    ),
                )
                checks["walk_hierarchy_sees"] = len(hierarchy.arrays)
            if args.profile:
                log("profiling one more zarr_dask_utils.consolidate_metadata")
                unconsolidate(url, options, fmt)
                result["profile"] = profile_ours(url, options, client)

    result["timings"] = {
        k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "samples_s": v}
        for k, v in timings.items()
    }
    result["requests"] = requests
    med = {k: v["median_s"] for k, v in result["timings"].items()}
    result["ratios"] = {
        "zarr_consolidate_over_ours": med["c"] / med["d"],
        "unconsolidated_open_over_consolidated_open": med["a"] / med["b"],
        "unconsolidated_open_over_walk_hierarchy": med["a"] / med["e"],
    }
    seen = (
        "arrays_built",
        "unconsolidated_open_sees",
        "zarr_consolidated_open_sees",
        "consolidated_open_sees",
        "walk_hierarchy_sees",
    )
    checks["ok"] = all(checks[k] == n for k in seen) and checks["ours_written"]
    result["checks"] = checks
    return result


def profile_ours(url: str, options: dict[str, Any], client: Any) -> dict[str, Any]:
    """Where one ``consolidate_metadata`` spends its time: graph tasks, then the client side."""
    import cProfile
    import pstats

    from distributed import get_task_stream

    import zarr_dask_utils

    profiler = cProfile.Profile()
    with get_task_stream(client) as stream:
        start = time.time()
        profiler.enable()
        zarr_dask_utils.consolidate_metadata(
            url, storage_options=options, client=client, progress=False
        )
        profiler.disable()
        total = time.time() - start
    tasks = []
    for task in stream.data:
        for ss in task["startstops"]:
            if ss["action"] == "compute":
                name = task["key"] if isinstance(task["key"], str) else str(task["key"][0])
                tasks.append(
                    {
                        "task": name.rsplit("-", 1)[0],
                        "worker": task["worker"],
                        "start_s": round(ss["start"] - start, 3),
                        "stop_s": round(ss["stop"] - start, 3),
                    }
                )
    stats = pstats.Stats(profiler)
    rows = [
        (cum, f"{func[0].rsplit('site-packages/', 1)[-1]}:{func[1]}({func[2]})")
        for func, (_, _, _, cum, _) in stats.stats.items()  # type: ignore[attr-defined]
    ]
    top = [
        {"function": name, "cumulative_s": round(cum, 3)}
        for cum, name in sorted(rows, reverse=True)
        if "zarr_dask_utils" in name or "gather" in name or "json" in name
    ][:15]
    return {"total_s": total, "tasks": sorted(tasks, key=lambda t: t["start_s"]), "client": top}


def _start_cluster(args: argparse.Namespace) -> Any:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=args.n_workers,
        threads_per_worker=args.threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )
    return cluster, Client(cluster)


def _machine() -> dict[str, Any]:
    packages = ("zarr", "zarr-dask-utils", "dask", "distributed", "s3fs", "moto")
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "versions": {p: version(p) for p in packages},
    }


def _logger(quiet: bool) -> Callable[[str], None]:
    def log(message: str) -> None:
        if not quiet:
            print(f"  .. {message}", file=sys.stderr, flush=True)

    return log


# --- output -----------------------------------------------------------------------------------


def render(result: dict[str, Any]) -> str:
    p, m, t, r, c = (result[k] for k in ("parameters", "machine", "timings", "ratios", "checks"))
    server = "in the benchmark process" if p["s3_in_process"] else "own process"
    extras = []
    if p["latency_ms"]:
        extras.append(f"+{p['latency_ms']:g} ms per request")
    if p["s3fs_max_concurrency"]:
        extras.append(f"s3fs max_concurrency={p['s3fs_max_concurrency']}")
    lines = [
        f"Metadata benchmark, {result['date']}: {p['n_arrays']} arrays in {p['groups']} groups, "
        f"zarr format {p['zarr_format']}",
        f"S3: moto ThreadedMotoServer on 127.0.0.1 ({server}){''.join(', ' + e for e in extras)}",
        f"machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"cluster: LocalCluster({p['n_workers']} workers x {p['threads_per_worker']} threads, "
        f"processes) started in {result['cluster_start_s']:.2f} s (not timed below); "
        f"hierarchy built in {result['build_s']:.1f} s",
        "",
        f"{'operation':<46}{'median':>9}{'min':>9}{'max':>9}   requests (last run)",
    ]
    for key, label in LABELS.items():
        s = t[key]
        reqs = " ".join(f"{k} {v}" for k, v in sorted(result["requests"].get(key, {}).items()))
        lines.append(
            f"{label:<46}{s['median_s']:>8.3f}s{s['min_s']:>8.3f}s{s['max_s']:>8.3f}s   {reqs}"
        )
    goal = r["zarr_consolidate_over_ours"]
    lines += [
        f"(seconds, {p['repeat']} runs each)",
        "",
        f"ours vs zarr.consolidate_metadata (c/d): {goal:.2f}x "
        f"(goal >= {GOAL:g}x: {'met' if goal >= GOAL else 'NOT met'})",
        "consolidated vs unconsolidated open (a/b): "
        f"{r['unconsolidated_open_over_consolidated_open']:.2f}x",
        "walk_hierarchy vs unconsolidated open (a/e): "
        f"{r['unconsolidated_open_over_walk_hierarchy']:.2f}x",
        "",
        f"correctness: {'OK' if c['ok'] else 'FAILED'}: built {c['arrays_built']} arrays; "
        f"unconsolidated open sees {c['unconsolidated_open_sees']}; after zarr's consolidation "
        f"{c['zarr_consolidated_open_sees']}; after ours (written: {c['ours_written']}, "
        f"{c['ours_entries']} entries) zarr.open_group(use_consolidated=True) sees "
        f"{c['consolidated_open_sees']}; walk_hierarchy sees {c['walk_hierarchy_sees']}",
        f"ours ran on: {result['engine']}",
    ]
    if "profile" in result:
        prof = result["profile"]
        lines += [
            "",
            f"profile of one zarr_dask_utils.consolidate_metadata ({prof['total_s']:.3f} s):",
        ]
        lines += [
            f"  task {x['task']:<24} {x['start_s']:>6.3f} -> {x['stop_s']:>6.3f} s  {x['worker']}"
            for x in prof["tasks"]
        ]
        lines += [f"  client {x['cumulative_s']:>7.3f} s  {x['function']}" for x in prof["client"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-arrays", type=int, default=1000, help="arrays (default 1000)")
    parser.add_argument("--groups", type=int, default=10, help="groups they are spread over")
    parser.add_argument("--zarr-format", type=int, choices=(2, 3), default=3)
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--n-workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=2)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay the S3 server adds to every request, like a remote object store "
        "(default 0: raw loopback)",
    )
    parser.add_argument(
        "--s3fs-max-concurrency",
        type=int,
        default=None,
        help="s3fs max_concurrency for every store (default: s3fs's, 10, with which s3fs "
        "sends a HEAD before each whole-object GET unless the listing is cached; 1 avoids it)",
    )
    parser.add_argument(
        "--s3-in-process",
        action="store_true",
        help="run the moto server in this process (as the tests do) instead of its own; it "
        "then competes with plain zarr for this process's GIL",
    )
    parser.add_argument("--profile", action="store_true", help="profile one more run of ours")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if min(args.n_arrays, args.repeat, args.groups) < 1:
        parser.error("--n-arrays, --groups and --repeat must be at least 1")
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result["checks"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
