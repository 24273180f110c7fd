"""Profile: where ``rechunk_array`` spends its time on one machine, per engine.

Builds a float32 (nt, 720, 1440) store (blosc-zstd, time-major (1, 720, 1440) chunks, ~4 MiB
each, a smooth field plus noise), then rechunks it space-major (nt, 45, 90) with
``rechunk_array`` on:

- ``processes``: ``LocalCluster(n_workers=2, threads_per_worker=1)`` (the old embedded default);
- ``threads``: ``LocalCluster(processes=False, n_workers=1, threads_per_worker=2)``;
- ``dask-threads``: Dask tasks rechunk + store with the threaded scheduler, no cluster (the
  machine's reference).

For the cluster rows it records a ``performance_report(mode="inline")`` (HTML in the output
folder), the task stream summed by task prefix (compute time per prefix), bytes transferred
between workers, worker memory peaks and spilled bytes.

Run: ``python benchmarks/profile_rechunk.py [--steps 128] [--max-mem 256MiB] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from distributed import Client, LocalCluster, performance_report
from distributed.diagnostics import MemorySampler

from zarr_dask_utils import rechunk_array

TARGET = (None, 45, 90)


def _make_source(path: str, steps: int) -> None:
    arr = zarr.create_array(
        path,
        shape=(steps, 720, 1440),
        chunks=(1, 720, 1440),
        dtype="f4",
        compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),
        fill_value=np.nan,
    )
    y, x = np.meshgrid(np.linspace(0, 6, 720), np.linspace(0, 12, 1440), indexing="ij")
    base = (np.sin(y) * np.cos(x)).astype("f4")
    rng = np.random.default_rng(0)
    for t in range(steps):
        arr[t] = base + rng.standard_normal(base.shape, dtype="f4") * 0.1


def _dask_threads(src: str, dst: str, steps: int) -> None:
    source = zarr.open_array(src, mode="r")
    out = zarr.create_array(
        dst, shape=source.shape, chunks=(steps, 45, 90), dtype="f4", overwrite=True
    )
    x = da.from_zarr(source).rechunk((steps, 45, 90), method="tasks")
    with dask.config.set(scheduler="threads"):
        da.store(x, out, lock=False)


def _cpu_seconds(client: Client | None) -> float:
    """CPU time (user + system) of this process plus the cluster's worker processes.

    CPU seconds hardly change with other load on the machine, unlike wall time.
    """
    import psutil

    def cpu() -> float:
        t = psutil.Process().cpu_times()
        return float(t.user + t.system)

    total = cpu()
    if client is not None:
        pids = client.run(os.getpid)
        if set(pids.values()) != {os.getpid()}:  # worker processes: add theirs
            total += sum(client.run(cpu).values())
    return total


def _task_stream_summary(stream: list[dict[str, Any]]) -> dict[str, Any]:
    compute: dict[str, float] = collections.defaultdict(float)
    transfer_time = 0.0
    for t in stream:
        prefix = str(t["key"]).split("-")[1] if "zdu" in str(t["key"]) else str(t["key"])[:30]
        for s in t.get("startstops", ()):
            if s["action"] == "compute":
                compute[prefix] += s["stop"] - s["start"]
            elif s["action"] == "transfer":
                transfer_time += s["stop"] - s["start"]
    return {"compute": dict(compute), "transfer_s": transfer_time, "tasks": len(stream)}


def _cluster_row(
    name: str, kwargs: dict[str, Any], src: str, out: Path, mem: str, engine: str
) -> None:
    dst = str(out / f"dst-{name.replace(':', '-')}.zarr")
    shutil.rmtree(dst, ignore_errors=True)
    host = {"host": "127.0.0.1"} if kwargs["processes"] else {}  # threads: inproc://
    with LocalCluster(dashboard_address=":0", **host, **kwargs) as cluster:  # noqa: SIM117
        with Client(cluster) as client:
            client.run(lambda: None)
            sampler = MemorySampler()
            with (
                performance_report(str(out / f"report-{name}.html"), mode="inline"),
                sampler.sample(name),
            ):
                client.get_task_stream(start=time.time() - 1)  # clear
                start = time.time()
                cpu0 = _cpu_seconds(client)
                t0 = time.perf_counter()
                report = rechunk_array(
                    src, TARGET, dst, max_mem=mem, engine=engine, client=client, progress=False
                )
                wall = time.perf_counter() - t0  # the rechunk alone, not the report's HTML
                cpu = _cpu_seconds(client) - cpu0
                stream = client.get_task_stream(start=start)
            wstats = client.run(
                lambda dask_worker: {
                    "incoming_bytes": sum(
                        t.get("total", 0) for t in dask_worker.transfer_incoming_log
                    ),
                    "spilled": getattr(getattr(dask_worker.data, "spilled_total", None), "disk", 0),
                    "memory_limit": dask_worker.memory_manager.memory_limit,
                }
            )
            peak = sampler.to_pandas()[name].max() - sampler.to_pandas()[name].min()
    summary = _task_stream_summary(stream)
    print(f"\n== {name}: {wall:.1f} s wall, {cpu:.1f} CPU s, method {report.method}")
    print(f"   why: {report.method_reason}")
    print(f"   engine: {report.engine}")
    print(f"   peak cluster memory over idle: {peak / 2**20:.0f} MiB; tasks {summary['tasks']}")
    busy = sum(summary["compute"].values())
    print(
        f"   task compute time (s, summed over threads): {busy:.1f}; "
        f"transfer {summary['transfer_s']:.1f}"
    )
    for k, v in sorted(summary["compute"].items(), key=lambda kv: -kv[1])[:6]:
        print(f"     {k:<30} {v:7.1f}")
    for addr, s in wstats.items():
        print(
            f"   {addr}: incoming transfer {s['incoming_bytes'] / 2**20:.0f} MiB, "
            f"spilled {s['spilled']}, memory limit {s['memory_limit'] / 2**30:.1f} GiB"
        )


def main() -> None:
    """Build the store once, run each row once, print the breakdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--max-mem", default="256MiB")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--rows", default="processes:auto,threads:auto,threads:rechunker,dask-threads"
    )
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="zdu-prof-"))
    out.mkdir(parents=True, exist_ok=True)
    src = str(out / "src.zarr")
    if not Path(src).exists():
        _make_source(src, args.steps)
    size = sum(f.stat().st_size for f in Path(src).rglob("*") if f.is_file())
    print(
        f"source {src}: {args.steps * 720 * 1440 * 4 / 1e9:.2f} GB raw, {size / 1e9:.2f} GB stored"
    )
    print(f"load before: {os.getloadavg()}")
    rows = args.rows.split(",")
    for row in rows:
        kind, _, engine = row.partition(":")
        if kind == "processes":
            kw = {"n_workers": 2, "threads_per_worker": 1, "processes": True}
        elif kind == "threads":
            kw = {"n_workers": 1, "threads_per_worker": 2, "processes": False}
        else:
            continue
        _cluster_row(row, kw, src, out, args.max_mem, engine or "auto")
    if "dask-threads" in rows:
        cpu0 = _cpu_seconds(None)
        t0 = time.perf_counter()
        _dask_threads(src, str(out / "dst-dask.zarr"), args.steps)
        wall, cpu = time.perf_counter() - t0, _cpu_seconds(None) - cpu0
        print(
            f"\n== dask-threads (tasks rechunk + store, no cluster): {wall:.1f} s, {cpu:.1f} CPU s"
        )
    print(f"load after: {os.getloadavg()}")
    for d in out.glob("dst-*"):
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
