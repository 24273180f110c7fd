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
``--repeat N`` times plain and profiled N times each, alternating, and reports medians.  Run::

    python benchmarks/bench_profiling.py              # ~1 GB
    python benchmarks/bench_profiling.py --size 256MB --json
    python benchmarks/bench_profiling.py --repeat 3
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

import numpy as np
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


class _Lines(logging.Handler):
    """Keeps the messages logged (the profile's breakdown of its own time)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GB", help="uncompressed bytes (default 1GB)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (default 1)")
    args = parser.parse_args()
    breakdown = _Lines()
    log = logging.getLogger("zarr_dask_utils.profiling.profile")
    log.addHandler(breakdown)
    log.setLevel(logging.INFO)

    from distributed import Client, LocalCluster

    from zarr_dask_utils import check_data_integrity, profile_zarr_operation

    nbytes = parse_bytes(args.size)
    with tempfile.TemporaryDirectory(prefix="zdu-bench-profile-") as tmp:
        store = str(Path(tmp) / "data.zarr")
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
            check_data_integrity(store, deep=True, client=client, progress=False)  # warm-up
            load_before = os.getloadavg()
            plains, profileds, calls, renders = [], [], [], []
            for _ in range(max(1, args.repeat)):
                start = time.perf_counter()
                plain_report = check_data_integrity(store, deep=True, client=client, progress=False)
                plains.append(time.perf_counter() - start)
                start = time.perf_counter()
                profile = profile_zarr_operation(
                    check_data_integrity, store, deep=True, client=client, progress=False
                )
                profileds.append(time.perf_counter() - start)
                calls.append(profile.wall_seconds)
                start = time.perf_counter()
                dask_html = profile.dask_report_html
                renders.append(time.perf_counter() - start)
            load_after = os.getloadavg()
    plain, profiled = statistics.median(plains), statistics.median(profileds)
    result = {
        "size": nbytes,
        "workers": workers,
        "runs": len(plains),
        "plain_seconds": round(plain, 3),
        "profiled_seconds": round(profiled, 3),
        "profiled_call_seconds": round(statistics.median(calls), 3),
        "ratio": round(profiled / plain, 3),
        "dask_report_seconds": round(statistics.median(renders), 3),
        "dask_report_bytes": len(dask_html),
        "verdict": profile.verdict.kind,
        "requests": profile.requests,
        "ok": bool(plain_report.ok and profile.result.ok),
        "load_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "breakdown": breakdown.lines,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    runs = f"median of {len(plains)} runs" if len(plains) > 1 else "one run"
    print(f"deep scan of {format_bytes(nbytes)} on {workers} worker(s), {runs}")
    print(f"  plain     {plain:8.2f} s   (all: {', '.join(f'{t:.2f}' for t in plains)})")
    print(
        f"  profiled  {profiled:8.2f} s   (all: {', '.join(f'{t:.2f}' for t in profileds)}; "
        f"the call itself {result['profiled_call_seconds']:.2f} s; verdict "
        f"{profile.verdict.kind}, {profile.requests} requests)"
    )
    print(f"  ratio     {profiled / plain:8.2f}x")
    print(
        f"  Dask's report rendered afterwards: {result['dask_report_seconds']:.2f} s "
        f"({len(dask_html) / 1e6:.1f} MB of HTML)"
    )
    for line in breakdown.lines:
        print(f"  {line}")
    print(f"  load (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
