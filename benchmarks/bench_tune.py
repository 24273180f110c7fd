"""s3fs vs obstore, and tuned vs default settings, on the S3 latency rig (issue 15, parts 1 and 4).

Run: ``.venv/bin/python benchmarks/bench_tune.py [--quick] [--servers 2] [--json]``

Part 4, the client library: one array of many small chunks and one of a few large chunks are
written to the rig (unthrottled), then read three ways in this process, through zarr as a user
does: ``listing`` (``fs.find`` vs ``obstore.list``), ``small GETs`` and ``large GETs`` (zarr
``arr[:]``) with

- ``s3fs default``: zarr's ``async.concurrency`` (10), s3fs defaults (a HEAD before each GET);
- ``s3fs tuned``: ``max_concurrency=1`` (no HEAD), a 64-connection pool, 64 in flight;
- ``obstore``: ``zdu_engine='obstore'`` (zarr's ``ObjectStore``), 64 in flight.

Part 1: ``optimize_s3_access`` on the small array for ``--pattern`` on a LocalCluster of 2
workers; its report's throughput with the settings given vs the winner, side by side.
Every read is checked byte for byte; the rig's request counts (GET/HEAD/LIST) and the load
average are printed with each row (the machine is shared: compare ratios, not absolutes).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from s3server import S3Rig

SMALL_CHUNK = 57 * 1024 // 8  # float64 elements: 57 KiB
LARGE_CHUNK = 14_000_000 // 8  # 14 MB


def build(rig: S3Rig, url: str, n_small: int, n_large: int) -> dict[str, np.ndarray]:
    """Write both arrays (unthrottled); return their data."""
    import zarr

    rng = np.random.default_rng(0)
    data = {}
    with rig.unthrottled():
        store = zarr.storage.FsspecStore.from_url(
            url, storage_options=rig.storage_options, read_only=False
        )
        for name, n, chunk in (("small", n_small, SMALL_CHUNK), ("large", n_large, LARGE_CHUNK)):
            values = rng.random(n * chunk)
            arr = zarr.create_array(
                store,
                name=name,
                shape=values.shape,
                chunks=(chunk,),
                dtype="f8",
                compressors=None,
                dimension_names=("time",),
            )
            arr[:] = values
            data[name] = values
    return data


ENGINES: dict[str, tuple[dict[str, Any], int]] = {
    "s3fs default": ({}, 10),
    "s3fs tuned": ({"max_concurrency": 1, "config_kwargs": {"max_pool_connections": 64}}, 64),
    "obstore": ({"zdu_engine": "obstore"}, 64),
}


def _measure(rig: S3Rig, label: str, fn: Callable[[], Any], check: Callable[[Any], bool]) -> dict:
    rig.reset_stats()
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    stats = rig.stats()
    return {
        "case": label,
        "seconds": seconds,
        "GET": stats["GET"],
        "HEAD": stats["HEAD"],
        "LIST": stats["LIST"],
        "bytes": stats.bytes_served,
        "identical": bool(check(value)),
        "load1": os.getloadavg()[0],
    }


def read_rows(rig: S3Rig, url: str, data: dict[str, np.ndarray], engines: list[str]) -> list:
    """Listing, small GETs and large GETs per engine."""
    import zarr

    from zarr_dask_utils import open_store

    rows = []
    for engine in engines:
        extra, level = ENGINES[engine]
        options = {**rig.storage_options, **extra}
        prefix = url[len("s3://") :]
        if engine == "obstore":
            import obstore

            store = open_store(url, storage_options=options)

            def listing(store: Any = store) -> list[str]:
                return [m["path"] for b in obstore.list(store.store) for m in b]
        else:
            import s3fs

            fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)

            def listing(fs: Any = fs, prefix: str = prefix) -> list[str]:
                return list(fs.find(prefix))

        n_keys = len(data["small"]) // SMALL_CHUNK + len(data["large"]) // LARGE_CHUNK + 3
        rows.append(
            _measure(rig, f"listing: {engine}", listing, lambda keys, n=n_keys: len(keys) == n)
        )
        for name in ("small", "large"):
            opts = {**options, "skip_instance_cache": True} if engine != "obstore" else options

            def read(name: str = name, opts: dict[str, Any] = opts, level: int = level) -> Any:
                with zarr.config.set({"async.concurrency": level}):
                    store = open_store(url, storage_options=opts)
                    return zarr.open_array(store, path=name, mode="r")[:]

            rows.append(
                _measure(
                    rig,
                    f"{name} GETs: {engine}",
                    read,
                    lambda v, name=name: np.array_equal(v, data[name]),
                )
            )
    return rows


def tune_rows(rig: S3Rig, url: str, pattern: str) -> dict[str, Any]:
    """optimize_s3_access on the small array, on 2 worker processes."""
    from distributed import Client, LocalCluster

    from zarr_dask_utils import optimize_s3_access

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        report = optimize_s3_access(
            f"{url}/small",
            access_pattern=pattern,
            storage_options=rig.storage_options,
            client=client,
            progress=False,
        )
        seconds = time.perf_counter() - t0
    return {
        "pattern": pattern,
        "winner": report.winner,
        "storage_options": dict(report.storage_options),
        "zarr_config": dict(report.zarr_config),
        "before_mb_s": (report.throughput_before or 0) / 1e6,
        "after_mb_s": (report.throughput_after or 0) / 1e6,
        "speedup": report.speedup,
        "trials": {
            k: {
                "mb_s": v.get("throughput", 0) / 1e6,
                "heads": (v.get("calls") or {}).get("HeadObject", 0),
                "in_flight": v.get("max_in_flight"),
            }
            for k, v in report.trials.items()
        },
        "tune_seconds": seconds,
        "load1": os.getloadavg()[0],
    }


def print_table(settings: dict[str, Any], rows: list[dict], tuned: dict[str, Any] | None) -> None:
    print(f"rig: {settings}")
    print(
        f"{'case':28} {'s':>7} {'MB/s':>8} {'GET':>5} {'HEAD':>5} {'LIST':>5} "
        f"{'x s3fs default':>15} {'same':>5} {'load':>5}"
    )
    base = {r["case"].split(":")[0]: r for r in rows if r["case"].endswith("s3fs default")}
    for r in rows:
        kind = r["case"].split(":")[0]
        ratio = base[kind]["seconds"] / r["seconds"] if kind in base else float("nan")
        print(
            f"{r['case']:28} {r['seconds']:7.2f} {r['bytes'] / r['seconds'] / 1e6:8.1f} "
            f"{r['GET']:5d} {r['HEAD']:5d} {r['LIST']:5d} {ratio:15.2f} "
            f"{'yes' if r['identical'] else 'NO':>5} {r['load1']:5.2f}"
        )
    if tuned:
        print(
            f"\noptimize_s3_access, pattern {tuned['pattern']!r} on 2 workers "
            f"({tuned['tune_seconds']:.1f} s, load {tuned['load1']:.2f}):"
        )
        for name, t in tuned["trials"].items():
            print(
                f"  {name:18} {t['mb_s']:8.1f} MB/s  {t['heads']:4d} HEAD  "
                f"{t['in_flight']} in flight"
            )
        print(
            f"  winner {tuned['winner']}: {tuned['before_mb_s']:.1f} -> {tuned['after_mb_s']:.1f}"
            f" MB/s, tuned/default = {tuned['speedup'] or 1.0:.2f}x"
        )
        print(f"  storage_options: {json.dumps(tuned['storage_options'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="57 KiB chunks")
    parser.add_argument("--large", type=int, default=12, help="14 MB chunks")
    parser.add_argument("--quick", action="store_true", help="200 small and 4 large chunks")
    parser.add_argument("--servers", type=int, default=4, help="moto processes")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--bandwidth", default=None, help="per connection, e.g. 100MB")
    parser.add_argument("--pattern", default="sequential", help="analyze_chunks pattern name")
    parser.add_argument("--no-tune", action="store_true", help="skip optimize_s3_access")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.small, args.large = 200, 4
    try:
        import obstore  # noqa: F401

        engines = list(ENGINES)
    except ImportError:
        print("obstore not installed: its rows are skipped (pip install 'zarr-dask-utils[s3]')")
        engines = ["s3fs default", "s3fs tuned"]
    rig = S3Rig(
        latency=args.latency_ms / 1000,
        jitter=args.latency_ms / 10000,
        bandwidth=args.bandwidth,
        servers=args.servers,
    )
    with rig:
        url = f"s3://{rig.make_bucket('zdu-bench-tune')}/store.zarr"
        data = build(rig, url, args.small, args.large)
        rows = read_rows(rig, url, data, engines)
        tuned = None if args.no_tune else tune_rows(rig, url, args.pattern)
    settings = {
        "servers": args.servers,
        "latency_ms": args.latency_ms,
        "bandwidth": args.bandwidth,
        "small": args.small,
        "large": args.large,
    }
    if args.json:
        print(json.dumps({"settings": settings, "rows": rows, "tune": tuned}, indent=2))
    else:
        print_table(settings, rows, tuned)
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
