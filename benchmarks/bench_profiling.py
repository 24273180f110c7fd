"""Profiler overhead: a deep scan profiled vs the same scan unprofiled, same data, one run.

Builds a local zarr 3 store of float32 data compressed with blosc-zstd (``--size``, default
1 GB uncompressed, 2 MiB chunks), starts one ``LocalCluster`` (one process per core, 1 thread
each), warms the page cache with one unprofiled scan, then times:

* **plain**: ``check_data_integrity(store, deep=True)``;
* **profiled**: ``profile_zarr_operation(check_data_integrity, store, deep=True)`` (the
  ``zdu-profile`` span, the task stream, the memory sampler and the store-operation tracer on
  every worker), including collecting and summarising the records;
* **Dask's report**: rendering Dask's performance report of the profiled call afterwards
  (``report.dask_report_html``: what ``save_html`` adds; not part of the profile any more).

and prints the ratio profiled / plain, where the profile's extra time went (its INFO log line)
and the machine's load (``os.getloadavg``), since the numbers mean little on a busy machine.
``--repeat N`` times plain and profiled N times each, alternating, and reports medians.

Wall-clock ratios on a shared machine swing by tens of percent, so each run also records the
CPU time it cost: the client process's (``time.process_time``: the client, and the scheduler
of the ``LocalCluster``, which runs in this process) and the workers' (``psutil`` CPU times
of the worker processes, user + system).  CPU time is what the profile adds to the machine's
work and barely depends on other jobs.  Run::

    python benchmarks/bench_profiling.py              # ~1 GB
    python benchmarks/bench_profiling.py --size 256MB --json
    python benchmarks/bench_profiling.py --repeat 5 --store /tmp/data.zarr  # keep/reuse data
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import zarr
from dask.utils import format_bytes, parse_bytes


def build(path: str, nbytes: int) -> None:
    """``nbytes`` of float32 in 2 MiB chunks (512 x 1024), blosc-zstd."""
    blocks = max(1, nbytes // (4 * 1024 * 1024))
    arr = zarr.create_array(
        path,
        shape=(blocks * 1024, 1024),
        chunks=(512, 1024),
        dtype="f4",
        compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    )
    rng = np.random.default_rng(0)
    base = np.sin(np.linspace(0, 40, 1024 * 1024)).astype("f4").reshape(1024, 1024)
    for i in range(blocks):
        noise = rng.normal(0, 0.01, size=(1024, 1024)).astype("f4").round(3)
        arr[i * 1024 : (i + 1) * 1024] = base + noise


class _Cpu:
    """CPU seconds of this process (client + in-process scheduler) and of the workers."""

    def __init__(self, worker_pids: list[int]) -> None:
        self.workers = [psutil.Process(pid) for pid in worker_pids]

    def now(self) -> tuple[float, float]:
        """``(client + scheduler, workers)`` CPU seconds so far (user + system)."""
        workers = 0.0
        for proc in self.workers:
            times = proc.cpu_times()
            workers += times.user + times.system
        return time.process_time(), workers


def _timed(cpu: _Cpu, func: Any) -> tuple[Any, float, float, float]:
    """Run *func*; return its result, wall seconds, client CPU and worker CPU seconds."""
    c0, w0 = cpu.now()
    start = time.perf_counter()
    result = func()
    wall = time.perf_counter() - start
    c1, w1 = cpu.now()
    return result, wall, c1 - c0, w1 - w0


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


class _Lines(logging.Handler):
    """Keeps the messages logged (the profile's breakdown of its own time)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _measure(client: Any, store: str, repeat: int) -> dict[str, Any]:
    """Plain and profiled scans, alternating; wall, CPU and load of every run."""
    from zarr_dask_utils import check_data_integrity, profile_zarr_operation

    cpu = _Cpu(list(client.run(os.getpid).values()))
    check_data_integrity(store, deep=True, client=client, progress=False)  # warm-up
    runs: dict[str, list[Any]] = {k: [] for k in ("plain", "profiled", "call", "render", "load")}
    profile = plain_report = None
    for _ in range(max(1, repeat)):
        runs["load"].append(os.getloadavg()[0])
        plain_report, *plain = _timed(
            cpu, lambda: check_data_integrity(store, deep=True, client=client, progress=False)
        )
        profile, *profiled = _timed(
            cpu,
            lambda: profile_zarr_operation(
                check_data_integrity, store, deep=True, client=client, progress=False
            ),
        )
        runs["plain"].append(plain)
        runs["profiled"].append(profiled)
        runs["call"].append(profile.wall_seconds)
        start = time.perf_counter()
        html = profile.dask_report_html
        runs["render"].append((time.perf_counter() - start, len(html)))
    runs["load"].append(os.getloadavg()[0])
    assert profile is not None
    assert plain_report is not None
    return {"runs": runs, "profile": profile, "ok": bool(plain_report.ok and profile.result.ok)}


def _summary(nbytes: int, workers: int, measured: dict[str, Any]) -> dict[str, Any]:
    runs, profile = measured["runs"], measured["profile"]
    out: dict[str, Any] = {"size": nbytes, "workers": workers, "runs": len(runs["plain"])}
    for i, what in enumerate(("wall", "client_cpu", "worker_cpu")):
        plain = _median([r[i] for r in runs["plain"]])
        profiled = _median([r[i] for r in runs["profiled"]])
        out[f"plain_{what}_seconds"] = plain
        out[f"profiled_{what}_seconds"] = profiled
        out[f"{what}_ratio"] = round(profiled / plain, 3) if plain else None
        out[f"all_plain_{what}"] = [round(r[i], 3) for r in runs["plain"]]
        out[f"all_profiled_{what}"] = [round(r[i], 3) for r in runs["profiled"]]
    plain_cpu = out["plain_client_cpu_seconds"] + out["plain_worker_cpu_seconds"]
    profiled_cpu = out["profiled_client_cpu_seconds"] + out["profiled_worker_cpu_seconds"]
    out["cpu_ratio"] = round(profiled_cpu / plain_cpu, 3) if plain_cpu else None
    out["profiled_call_seconds"] = _median(runs["call"])
    out["dask_report_seconds"] = _median([r[0] for r in runs["render"]])
    out["dask_report_bytes"] = runs["render"][-1][1]
    out["verdict"] = profile.verdict.kind
    out["requests"] = profile.requests
    out["ok"] = measured["ok"]
    out["load_1min"] = [round(x, 2) for x in runs["load"]]
    return out


def _print(result: dict[str, Any], breakdown: list[str]) -> None:
    runs = f"median of {result['runs']} runs" if result["runs"] > 1 else "one run"
    print(f"deep scan of {format_bytes(result['size'])} on {result['workers']} worker(s), {runs}")
    for label, what in (("wall", "wall"), ("client+scheduler CPU", "client_cpu")):
        print(f"  {label}:")
        for kind in ("plain", "profiled"):
            every = ", ".join(f"{t:.2f}" for t in result[f"all_{kind}_{what}"])
            print(f"    {kind:9} {result[f'{kind}_{what}_seconds']:7.2f} s  (all: {every})")
        print(f"    ratio     {result[f'{what}_ratio']:7.2f}x")
    print("  workers' CPU:")
    for kind in ("plain", "profiled"):
        every = ", ".join(f"{t:.2f}" for t in result[f"all_{kind}_worker_cpu"])
        print(f"    {kind:9} {result[f'{kind}_worker_cpu_seconds']:7.2f} s  (all: {every})")
    print(f"    ratio     {result['worker_cpu_ratio']:7.2f}x")
    print(f"  all CPU ratio {result['cpu_ratio']:.2f}x")
    print(
        f"  the profiled call itself {result['profiled_call_seconds']:.2f} s; verdict "
        f"{result['verdict']}, {result['requests']} requests"
    )
    print(
        f"  Dask's report rendered afterwards: {result['dask_report_seconds']:.2f} s "
        f"({result['dask_report_bytes'] / 1e6:.1f} MB of HTML)"
    )
    for line in breakdown[-3:]:
        print(f"  {line}")
    print(f"  load (1 min) before each pair and at the end: {result['load_1min']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GB", help="uncompressed bytes (default 1GB)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (default 1)")
    parser.add_argument(
        "--store", help="build the data here, or reuse it when it exists (default: a temp dir)"
    )
    args = parser.parse_args()
    breakdown = _Lines()
    log = logging.getLogger("zarr_dask_utils.profiling.profile")
    log.addHandler(breakdown)
    log.setLevel(logging.INFO)

    from distributed import Client, LocalCluster

    nbytes = parse_bytes(args.size)
    with tempfile.TemporaryDirectory(prefix="zdu-bench-profile-") as tmp:
        store = args.store or str(Path(tmp) / "data.zarr")
        if not Path(store).exists():
            build(store, nbytes)
        workers = os.cpu_count() or 1
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            Client(cluster) as client,
        ):
            measured = _measure(client, store, args.repeat)
    result = _summary(nbytes, workers, measured)
    result["breakdown"] = breakdown.lines
    if args.json:
        print(json.dumps(result, indent=2))
        return
    _print(result, breakdown.lines)


if __name__ == "__main__":
    main()
