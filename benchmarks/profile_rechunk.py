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

``--fixed-cost`` instead breaks one call on the embedded default (no client) into its steps:
the first call in the process, then warm calls on a tiny array ((4, 64, 64) -> (4, 16, 16)),
each step of :func:`rechunk_array` and the embedded cluster's start and close timed with
``time.perf_counter``, a cProfile of one warm call, and each copy task of a 256 MiB 4 MiB-chunk
rechunk (read and write time per task; the tasks run on threads of this process).
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


_STEPS = (
    "open_rechunk_source",
    "target_layout",
    "open_outputs",
    "plan_run",
    "mark_partial",
    "copy_blocks",
    "finish_target",
    "source_is_consolidated",
    "_consolidate_target",
)


def _instrument(times: dict[str, float], tasks: list[tuple[str, float, float, float]]) -> None:
    """Time the steps of ``rechunk_array``, the embedded cluster and each copy task."""
    import contextlib
    import functools
    import threading

    import zarr_dask_utils._core.compute.cluster as cluster_mod
    import zarr_dask_utils.optimize.array_jobs as jobs_mod
    import zarr_dask_utils.optimize.graphs as graphs_mod
    import zarr_dask_utils.optimize.rechunk as rechunk_mod

    def timer(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - t

        return timed

    for name in _STEPS:
        setattr(rechunk_mod, name, timer(name, getattr(rechunk_mod, name)))
    embedded = cluster_mod._embedded_cluster

    @contextlib.contextmanager
    def cluster(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        with embedded(*a, **k) as c:
            times["cluster start"] = time.perf_counter() - t
            yield c
            t = time.perf_counter()
        times["cluster close"] = time.perf_counter() - t

    cluster_mod._embedded_cluster = cluster
    reads: dict[int, float] = {}
    read, copy = jobs_mod.read_selection, jobs_mod.copy_blocks_task

    def read_timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return read(*a, **k)
        finally:
            reads[threading.get_ident()] = time.perf_counter() - t

    @functools.wraps(copy)
    def copy_timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        out = copy(*a, **k)
        stage = f"{a[0].display.rsplit('/', 1)[-1]}->{a[3].display.rsplit('/', 1)[-1]}"
        tasks.append((stage, t, time.perf_counter(), reads.get(threading.get_ident(), 0.0)))
        return out

    jobs_mod.read_selection = read_timed
    jobs_mod.copy_blocks_task = graphs_mod.copy_blocks_task = copy_timed  # pickled by name


def fixed_cost(out: Path, reps: int = 5) -> None:
    """Print the fixed cost of one ``rechunk_array`` call on the embedded default, by step."""
    import cProfile
    import io
    import pstats
    import statistics

    times: dict[str, float] = {}
    tasks: list[tuple[str, float, float, float]] = []
    _instrument(times, tasks)
    tiny = str(out / "tiny.zarr")
    arr = zarr.create_array(tiny, shape=(4, 64, 64), chunks=(1, 64, 64), dtype="f4")
    arr[:] = np.random.default_rng(0).standard_normal(arr.shape, dtype="f4")

    def call(src: str, target: tuple[int, ...], mem: str) -> tuple[float, float, dict[str, float]]:
        times.clear()
        tasks.clear()
        dst = str(out / "dst-fixed.zarr")
        t, c = time.perf_counter(), time.process_time()
        rechunk_array(src, target, dst, max_mem=mem, temp_store=dst + ".tmp", progress=False)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        shutil.rmtree(dst, ignore_errors=True)
        shutil.rmtree(dst + ".tmp", ignore_errors=True)
        return wall, cpu, dict(times)

    def show(label: str, runs: list[tuple[float, float, dict[str, float]]]) -> None:
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(
            f"\n{label}: {wall * 1e3:.0f} ms wall, {cpu * 1e3:.0f} ms CPU (median of {len(runs)})"
        )
        for step in runs[0][2]:
            ms = [r[2].get(step, 0.0) * 1e3 for r in runs]
            print(f"   {step:<24} median {statistics.median(ms):7.1f} ms  max {max(ms):7.1f} ms")

    print(f"load before: {os.getloadavg()}")
    show("first call in this process (imports, first cluster)", [call(tiny, (4, 16, 16), "1MiB")])
    show("warm calls, tiny array", [call(tiny, (4, 16, 16), "1MiB") for _ in range(reps)])
    profile = cProfile.Profile()
    profile.enable()
    call(tiny, (4, 16, 16), "1MiB")
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats("zarr_dask_utils", 15)
    print("\ncProfile of one warm call (this thread; zarr_dask_utils functions, cumulative):")
    print("\n".join(text.getvalue().splitlines()[-17:]))
    big = str(out / "big.zarr")
    arr = zarr.create_array(
        big,
        shape=(256, 512, 512),
        chunks=(4, 512, 512),
        dtype="f4",
        compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    )
    arr[:] = np.random.default_rng(0).standard_normal(arr.shape, dtype="f4")
    runs = []
    for _ in range(max(2, reps // 2)):
        runs.append(call(big, (256, 64, 64), "64MiB"))
        t0 = min(t[1] for t in tasks)
        for stage, start, stop, read_s in sorted(tasks, key=lambda t: t[1]):
            print(
                f"   task {stage:<22} {1e3 * (start - t0):6.0f} .. {1e3 * (stop - t0):6.0f} ms"
                f"  read {1e3 * read_s:5.0f} ms, write {1e3 * (stop - start - read_s):5.0f} ms"
            )
    show("256 MiB, (4, 512, 512) -> (256, 64, 64), max_mem 64 MiB", runs)
    print(f"load after: {os.getloadavg()}")


def main() -> None:
    """Build the store once, run each row once, print the breakdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--max-mem", default="256MiB")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--rows", default="processes:auto,threads:auto,threads:rechunker,dask-threads"
    )
    parser.add_argument("--fixed-cost", action="store_true", help="the fixed cost of a call")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="zdu-prof-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.fixed_cost:
        try:
            fixed_cost(out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return
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
