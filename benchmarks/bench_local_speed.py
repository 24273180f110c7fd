"""Speed on one machine: rechunk, deep scan and compare, ours vs Dask, with peak memory.

The matrix of issue 13, in one run on this machine:

* **rechunk**: time-major <-> space-major (both directions), chunks of 256 KiB and 4 MiB,
  a compressible source (smooth field + noise, about 1.9x with blosc-zstd) and an
  incompressible one (white noise).  Rows: ``rechunk_array`` on the embedded default (no
  client: it starts and closes its own cluster, included in its time), ``rechunk_array`` on
  ``LocalCluster(2x1)`` and ``(2x2)``, Dask ``rechunk(method="tasks")`` and ``"p2p"`` +
  ``store`` on the same clusters, the ``rechunker.algorithm`` plan run with Dask (two stages
  through a temp store when the plan needs one), and Dask ``tasks`` + ``store`` with the
  **threaded scheduler in this process**: the machine's reference.
* **deep scan**: ``check_data_integrity(deep=True)`` on chunks of 64 KiB .. 16 MiB vs the
  decode limit (numcodecs blosc decode of the stored bytes, pre-read into memory, in 2
  processes, 1 blosc thread) and vs read + decode of every chunk file in 2 processes; ours on
  ``LocalCluster(2x1)``, on the embedded default and on the embedded cluster forced to
  worker processes (start-up included).
* **compare**: ``compare_stores`` of a source and its rechunked copy vs Dask threads.
* **zarrs**: full read and write of a ~0.5 GB store with zarr's default codec pipeline vs
  ``zarrs.ZarrsCodecPipeline`` (when zarrs is installed).

Peak memory: the resident memory of this process and all its children (cluster workers,
nannies) sampled every 50 ms, minus the level just before the run ("peak over idle").  The
embedded default's row therefore includes the start-up of its worker processes.

Run::

    python benchmarks/bench_local_speed.py            # the full matrix, ~10 min on 2 cores
    python benchmarks/bench_local_speed.py --quick    # small data, fewer cases, ~2 min
    python benchmarks/bench_local_speed.py --json     # also one JSON document at the end
    python benchmarks/bench_local_speed.py --sections rechunk --repeat 3  # median no-client rows
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import multiprocessing
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import psutil
import zarr
from dask.utils import format_bytes, parse_bytes
from distributed import Client, LocalCluster
from rechunker.algorithm import rechunking_plan

from zarr_dask_utils import check_data_integrity, compare_stores, rechunk_array

BLOSC = zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
CLUSTERS = {"2x1": (2, 1), "2x2": (2, 2)}
LAST_ENGINE = [""]  # method and engine line of the last rechunk_array report


@dataclass
class Row:
    """One timed run."""

    section: str
    case: str
    method: str
    seconds: float
    peak_bytes: int
    note: str = ""


# --- memory -------------------------------------------------------------------------------------


@contextmanager
def process_cluster(workers: int, threads: int) -> Iterator[Client]:
    """A ``LocalCluster`` of *workers* processes x *threads* threads on loopback, and its client."""
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def _tree_rss() -> int:
    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker that just exited
            total += proc.memory_info().rss
    return total


@contextmanager
def peak_memory(interval: float = 0.05) -> Iterator[list[int]]:
    """Sample the process tree's RSS; the yielded list holds ``[peak - idle]`` afterwards."""
    gc.collect()
    idle = _tree_rss()
    peak = [idle]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], _tree_rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out: list[int] = []
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out.append(max(0, max(peak[0], _tree_rss()) - idle))


def timed(fn: Callable[[], Any]) -> tuple[float, int]:
    """Wall seconds and peak-over-idle memory of one call."""
    with peak_memory() as mem:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return seconds, mem[0]


# --- data ---------------------------------------------------------------------------------------


def make_data(shape: tuple[int, int, int], kind: str) -> np.ndarray:
    """A smooth field + small noise (compressible) or white noise (incompressible)."""
    rng = np.random.default_rng(0)
    if kind == "incompressible":
        return rng.standard_normal(shape, dtype="f4")
    nt, ny, nx = shape
    y = np.linspace(0, 6 * np.pi, ny, dtype="f4")[:, None]
    x = np.linspace(0, 6 * np.pi, nx, dtype="f4")[None, :]
    field = np.sin(y) * np.cos(x)
    out = np.empty(shape, dtype="f4")
    for t in range(nt):
        noise = rng.normal(0, 0.01, size=(ny, nx)).astype("f4").round(3)
        out[t] = field * np.float32(1 + 0.001 * t) + noise
    return out


def write_store(path: str, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    arr = zarr.create_array(
        path,
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        compressors=BLOSC,
        dimension_names=("time", "y", "x"),
        overwrite=True,
    )
    arr[:] = data


def stored_ratio(path: str) -> float:
    arr = zarr.open_array(path, mode="r")
    stored = sum(p.stat().st_size for p in Path(path).rglob("c/**/*") if p.is_file())
    return arr.nbytes / max(stored, 1)


def layouts(shape: tuple[int, int, int], chunk_bytes: int) -> dict[str, tuple[int, int, int]]:
    """Time-major and space-major chunk shapes of *chunk_bytes* float32 each."""
    nt, ny, nx = shape
    frame = ny * nx * 4
    if chunk_bytes >= frame:
        time_major = (chunk_bytes // frame, ny, nx)
    else:
        time_major = (1, max(1, chunk_bytes // (nx * 4)), nx)
    side = math.isqrt(chunk_bytes // (nt * 4))
    space_major = (nt, side, max(1, chunk_bytes // (nt * 4 * side)))
    return {"time": time_major, "space": space_major}


# --- rechunk methods ----------------------------------------------------------------------------


def _empty_like(src: zarr.Array, path: str, chunks: tuple[int, ...]) -> zarr.Array:
    return zarr.create_array(
        path,
        shape=src.shape,
        chunks=chunks,
        dtype=src.dtype,
        compressors=BLOSC,
        dimension_names=("time", "y", "x"),
        overwrite=True,
    )


def dask_rechunk(src: str, dst: str, target: tuple[int, ...], method: str, **compute: Any) -> None:
    """Dask ``rechunk(method=...)`` then ``store`` (``compute`` picks the scheduler)."""
    source = zarr.open_array(src, mode="r")
    out = _empty_like(source, dst, target)
    x = da.from_zarr(source).rechunk(target, method=method)
    da.store(x, out, lock=False, **compute)


def rechunker_dask(
    src: str, dst: str, target: tuple[int, ...], max_mem: int, **compute: Any
) -> None:
    """The ``rechunker.algorithm`` plan (read, intermediate, write chunks) run with Dask."""
    source = zarr.open_array(src, mode="r")
    read, inter, write = rechunking_plan(
        source.shape, source.chunks, target, source.dtype.itemsize, max_mem
    )
    out = _empty_like(source, dst, target)
    if tuple(read) == tuple(write):
        da.store(da.from_zarr(source, chunks=read), out, lock=False, **compute)
        return
    tmp = _empty_like(source, dst + ".tmp", tuple(int(c) for c in inter))
    da.store(da.from_zarr(source, chunks=read), tmp, lock=False, **compute)
    da.store(da.from_zarr(tmp, chunks=write), out, lock=False, **compute)
    shutil.rmtree(dst + ".tmp", ignore_errors=True)


def ours(src: str, dst: str, target: tuple[int, ...], max_mem: int, client: Client | None) -> None:
    report = rechunk_array(
        src, target, dst, max_mem=max_mem, temp_store=dst + ".tmp", client=client, progress=False
    )
    LAST_ENGINE[0] = f"{report.method}; {report.engine}"


def check_copy(dst: str, data: np.ndarray, target: tuple[int, ...]) -> None:
    out = zarr.open_array(dst, mode="r")
    if out.chunks != target:
        raise RuntimeError(f"{dst}: chunks {out.chunks} != {target}")
    probe = (slice(None), slice(0, min(40, data.shape[1])), slice(3, min(70, data.shape[2])))
    if not np.array_equal(out[probe], data[probe]):
        raise RuntimeError(f"{dst}: values differ from the source")


# --- sections -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    direction: str  # "time->space" or "space->time"
    chunk_bytes: int
    kind: str

    @property
    def name(self) -> str:
        return f"{self.direction} {format_bytes(self.chunk_bytes)} {self.kind}"


def rechunk_section(
    work: Path,
    shape: tuple[int, int, int],
    cases: list[Case],
    data: dict[str, np.ndarray],
    max_mem: int,
    repeat: int = 1,
    clusters: tuple[str, ...] = tuple(CLUSTERS),
) -> list[Row]:
    """Every rechunk row of every case; no-client rows first, then one cluster at a time.

    The no-client rows (Dask threads, ours on the embedded default) run *repeat* times,
    alternating, and keep the run of median time (a shared machine's load moves in seconds).
    """
    rows: list[Row] = []
    sources: dict[Case, tuple[str, tuple[int, ...]]] = {}
    for case in cases:
        lay = layouts(shape, case.chunk_bytes)
        src_l, dst_l = case.direction.split("->")
        src = str(work / f"src-{src_l}-{case.chunk_bytes}-{case.kind}.zarr")
        if not Path(src).exists():
            write_store(src, data[case.kind], lay[src_l])
        sources[case] = (src, lay[dst_l])

    def run(case: Case, method: str, fn: Callable[[str], Any], note: str = "") -> None:
        target = sources[case][1]
        dst = str(work / "dst.zarr")
        seconds, peak = timed(lambda: fn(dst))
        check_copy(dst, data[case.kind], target)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.rmtree(dst + ".tmp", ignore_errors=True)
        rows.append(Row("rechunk", case.name, method, seconds, peak, note))
        print(
            f"  {case.name:34s} {method:28s} {seconds:7.2f} s {format_bytes(peak):>10s}", flush=True
        )

    for case in cases:
        src, target = sources[case]
        pairs: dict[str, list[Row]] = {"ref": [], "ours": []}
        for _ in range(max(1, repeat)):
            run(
                case,
                "dask tasks, threads (ref)",
                lambda d, s=src, t=target: dask_rechunk(s, d, t, "tasks", scheduler="threads"),
            )
            pairs["ref"].append(rows.pop())
            run(
                case,
                "ours, embedded default",
                lambda d, s=src, t=target: ours(s, d, t, max_mem, None),
            )
            rows[-1].note = LAST_ENGINE[0]
            pairs["ours"].append(rows.pop())
        for runs in pairs.values():
            runs.sort(key=lambda r: r.seconds)
            middle = runs[(len(runs) - 1) // 2]
            if len(runs) > 1:
                times = ", ".join(f"{r.seconds:.2f}" for r in runs)
                middle.note = f"median of {len(runs)} ({times} s); {middle.note}".rstrip("; ")
            rows.append(middle)
    for label, (workers, threads) in CLUSTERS.items():
        if label not in clusters:
            continue
        with process_cluster(workers, threads) as client:
            for case in cases:
                src, target = sources[case]
                run(
                    case,
                    f"ours, {label}",
                    lambda d, s=src, t=target: ours(s, d, t, max_mem, client),
                )
                with client.as_current():
                    for method in ("tasks", "p2p"):
                        run(
                            case,
                            f"dask {method}, {label}",
                            lambda d, s=src, t=target, m=method: dask_rechunk(
                                s, d, t, m, scheduler=client
                            ),
                        )
                    run(
                        case,
                        f"rechunker plan + dask, {label}",
                        lambda d, s=src, t=target: rechunker_dask(
                            s, d, t, max_mem, scheduler=client
                        ),
                    )
    return rows


def _decode_worker(conn: Any) -> None:
    """One process of the decode limit: load a share of chunk files, then time decoding it."""
    from numcodecs import Blosc, blosc

    blosc.set_nthreads(1)
    codec = Blosc()
    paths: list[str] = []
    blobs: list[bytes] = []
    out = np.empty(0, "u1")
    while True:
        msg = conn.recv()
        if msg[0] == "load":  # pre-read every file of the share: decode only below
            paths, blobs = msg[1], [Path(p).read_bytes() for p in msg[1]]
            out = np.empty(msg[2], "u1")
            conn.send(sum(map(len, blobs)))
        elif msg[0] == "decode":  # in memory, into one reused buffer
            start = time.perf_counter()
            for blob in blobs:
                codec.decode(blob, out=out)
            conn.send(time.perf_counter() - start)
        elif msg[0] == "read+decode":  # the whole job of a naive scan: read, decode, allocate
            start = time.perf_counter()
            for p in paths:
                codec.decode(Path(p).read_bytes())
            conn.send(time.perf_counter() - start)
        else:
            return


class DecodeLimit:
    """Two processes (like ``LocalCluster(2x1)``) that time decoding a store's chunk files.

    ``decode``: every chunk file pre-read into memory in the process that decodes it, then
    ``Blosc.decode`` of each into one reused output buffer, 1 blosc thread: the pure decode
    cost, no I/O and no allocation (the old reference also measured allocating a fresh
    buffer per chunk, which made it swing with chunk size).  ``read+decode``: read each file
    and decode it into a new buffer, as a naive scan would.  Each is the slower process's own
    loop time (no IPC), median of 3 after a warm-up.
    """

    def __init__(self, workers: int = 2) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns = []
        self.procs = []
        # plain processes: without the malloc settings distributed puts into os.environ
        saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MALLOC_")}
        try:
            for _ in range(workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_decode_worker, args=(child,), daemon=True)
                proc.start()
                self.conns.append(parent)
                self.procs.append(proc)
        finally:
            os.environ.update(saved)

    def _all(self, *msg: Any) -> list[Any]:
        for conn in self.conns:
            conn.send(msg)
        return [conn.recv() for conn in self.conns]

    def measure(self, root: str, chunk_bytes: int, repeat: int = 3) -> dict[str, float]:
        """Median seconds of ``decode`` and ``read+decode`` for the store at *root*."""
        files = sorted(str(p) for p in Path(root, "c").rglob("*") if p.is_file())
        n = len(self.conns)
        for i, conn in enumerate(self.conns):
            conn.send(("load", files[i::n], chunk_bytes))
        for conn in self.conns:
            conn.recv()
        out = {}
        for kind in ("decode", "read+decode"):
            self._all(kind)  # warm-up
            out[kind] = statistics.median(max(self._all(kind)) for _ in range(repeat))
        self._all("load", [], 0)  # free the blobs
        return out

    def close(self) -> None:
        """Stop the processes."""
        for conn in self.conns:
            conn.send(("stop",))
        for proc in self.procs:
            proc.join(10)


def scan_section(work: Path, nbytes: int, chunk_sizes: list[int], data: np.ndarray) -> list[Row]:
    """Deep scan per chunk size: decode limit, ours (2x1 cluster, embedded), Dask threads."""
    rows: list[Row] = []
    flat = data.reshape(-1)[: nbytes // 4]
    stores = {}
    for cb in chunk_sizes:
        n = cb // 4
        path = str(work / f"scan-{cb}.zarr")
        arr = zarr.create_array(
            path, shape=(flat.size,), chunks=(n,), dtype="f4", compressors=BLOSC
        )
        arr[:] = flat
        stores[cb] = path
    tiny = str(work / "scan-tiny.zarr")
    zarr.create_array(tiny, shape=(1024,), chunks=(1024,), dtype="f4", compressors=BLOSC)[:] = 1
    limit = DecodeLimit(2)
    with process_cluster(2, 1) as client, contextlib.closing(limit):
        for cb, path in stores.items():
            case = f"deep scan {format_bytes(cb)} chunks"

            def scan(cl: Client | None, p: str = path) -> None:
                report = check_data_integrity(p, deep=True, client=cl, progress=False)
                if not report.ok:
                    raise RuntimeError(str(report))

            ref = limit.measure(path, cb)
            rows.append(Row("scan", case, "decode limit (in memory, 2 proc)", ref["decode"], 0))
            rows.append(Row("scan", case, "read + decode (2 proc)", ref["read+decode"], 0))
            scan(client)  # warm the workers
            runs = sorted(timed(lambda: scan(client)) for _ in range(3))
            rows.append(Row("scan", case, "ours deep=True, 2x1", *runs[1]))
            fixed = sorted(timed(lambda: scan(client, tiny)) for _ in range(3))[1]
            rows.append(
                Row(
                    "scan",
                    case,
                    "ours 2x1 minus fixed cost",
                    max(1e-3, runs[1][0] - fixed[0]),
                    0,
                    f"fixed cost {fixed[0]:.2f} s (listing, metadata, graph on a 1-chunk store)",
                )
            )
            rows.append(Row("scan", case, "ours deep=True, embedded", *timed(lambda: scan(None))))
            with dask.config.set({"zarr-dask-utils.cluster.processes": True}):  # start-up incl.
                forced = timed(lambda: scan(None))
            rows.append(Row("scan", case, "ours deep=True, embedded processes", *forced))
            rows.append(
                Row(
                    "scan",
                    case,
                    "dask from_zarr().sum(), threads",
                    *timed(lambda p=path: da.from_zarr(p).sum().compute(scheduler="threads")),
                )
            )
            for row in rows[-7:]:
                print(f"  {row.case:34s} {row.method:34s} {row.seconds:7.2f} s", flush=True)
    return rows


def compare_section(
    work: Path, shape: tuple[int, int, int], chunk_sizes: list[int], data: np.ndarray, max_mem: int
) -> list[Row]:
    """``compare_stores`` of a compressible source and its rechunked copy vs Dask threads."""
    rows: list[Row] = []
    with process_cluster(2, 1) as client:
        for cb in chunk_sizes:
            lay = layouts(shape, cb)
            src = str(work / f"src-time-{cb}-compressible.zarr")
            if not Path(src).exists():
                write_store(src, data, lay["time"])
            copy = str(work / f"cmp-{cb}.zarr")
            rechunk_array(src, lay["space"], copy, max_mem=max_mem, client=client, progress=False)
            case = f"compare {format_bytes(cb)} time vs space"

            def ours_cmp(cl: Client | None, s: str = src, c: str = copy) -> None:
                report = compare_stores(s, c, client=cl, progress=False)
                if not report.ok:
                    raise RuntimeError(str(report))

            def dask_cmp(s: str = src, c: str = copy) -> None:
                a, b = da.from_zarr(s), da.from_zarr(c).rechunk(zarr.open_array(s).chunks)
                if not bool((a == b).all().compute(scheduler="threads")):
                    raise RuntimeError("dask compare found differences")

            rows.append(Row("compare", case, "dask (a == b).all(), threads", *timed(dask_cmp)))
            rows.append(
                Row("compare", case, "ours compare_stores, 2x1", *timed(lambda: ours_cmp(client)))
            )
            rows.append(
                Row(
                    "compare", case, "ours compare_stores, embedded", *timed(lambda: ours_cmp(None))
                )
            )
            for row in rows[-3:]:
                print(f"  {row.case:34s} {row.method:34s} {row.seconds:7.2f} s", flush=True)
            shutil.rmtree(copy, ignore_errors=True)
    return rows


def zarrs_section(work: Path, data: np.ndarray, repeat: int = 3) -> list[Row]:
    """Full read and write, default codec pipeline vs zarrs (in this process, median)."""
    try:
        import zarrs  # noqa: F401
    except ImportError:
        print("  zarrs not installed: skipped")
        return []
    rows: list[Row] = []
    pipelines = {
        "zarr default": "zarr.core.codec_pipeline.BatchedCodecPipeline",
        "zarrs": "zarrs.ZarrsCodecPipeline",
    }
    _, ny, nx = data.shape
    chunks = (max(1, (4 << 20) // (ny * nx * 4)), ny, nx)
    case = f"{format_bytes(data.nbytes)} {chunks} blosc-zstd"
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeat):
        for label, path in pipelines.items():
            with zarr.config.set({"codec_pipeline.path": path}):
                p = str(work / "zarrs.zarr")
                arr = zarr.create_array(
                    p, shape=data.shape, chunks=chunks, dtype="f4", compressors=BLOSC
                )
                start = time.perf_counter()
                arr[:] = data
                results.setdefault((label, "write"), []).append(time.perf_counter() - start)
                arr = zarr.open_array(p, mode="r")
                start = time.perf_counter()
                back = arr[:]
                results.setdefault((label, "read"), []).append(time.perf_counter() - start)
                if not np.array_equal(back, data):
                    raise RuntimeError(f"{label}: read back differs")
                del back
                shutil.rmtree(p)
    for (label, what), times in results.items():
        rows.append(Row("zarrs", f"full {what} {case}", label, statistics.median(times), 0))
        print(f"  full {what:5s} {label:14s} {statistics.median(times):7.2f} s", flush=True)
    return rows


# --- report -------------------------------------------------------------------------------------


def _get(rows: list[Row], case: str, method: str) -> Row | None:
    return next((r for r in rows if r.case == case and r.method == method), None)


def print_rechunk(rows: list[Row]) -> list[str]:
    """The rechunk table with ratios, then the goal lines (returned too)."""
    goals: list[str] = []
    cases = list(dict.fromkeys(r.case for r in rows if r.section == "rechunk"))
    print(
        f"\n{'case':34s} {'method':30s} {'s':>7s} {'peak':>10s} {'x threads':>9s} "
        f"{'x best peer':>11s} {'mem/p2p':>7s}"
    )
    for case in cases:
        ref = _get(rows, case, "dask tasks, threads (ref)")
        for r in (r for r in rows if r.case == case):
            label = r.method.rpartition(", ")[2]
            peers = [
                p
                for p in rows
                if p.case == case and p.method.endswith(label) and not p.method.startswith("ours")
            ]
            best = (
                min((p.seconds for p in peers), default=math.nan) if label in CLUSTERS else math.nan
            )
            p2p = _get(rows, case, f"dask p2p, {label}")
            mem = r.peak_bytes / p2p.peak_bytes if p2p and p2p.peak_bytes else math.nan
            print(
                f"{case:34s} {r.method:30s} {r.seconds:7.2f} {format_bytes(r.peak_bytes):>10s} "
                f"{r.seconds / ref.seconds if ref else math.nan:9.2f} "
                f"{r.seconds / best:11.2f} {mem:7.2f}"
            )
        print()
    for case in cases:
        ref = _get(rows, case, "dask tasks, threads (ref)")
        emb = _get(rows, case, "ours, embedded default")
        if ref and emb:
            ratio = emb.seconds / ref.seconds
            goals.append(
                f"{case}: embedded default {ratio:.2f}x threaded Dask (goal <= 1.2x: "
                f"{'met' if ratio <= 1.2 else 'MISSED'})"
            )
        for label in CLUSTERS:
            mine = _get(rows, case, f"ours, {label}")
            peers = [
                p
                for p in rows
                if p.case == case
                and p.method.endswith(f", {label}")
                and not p.method.startswith("ours")
            ]
            p2p = _get(rows, case, f"dask p2p, {label}")
            if mine and peers and p2p:
                best = min(peers, key=lambda p: p.seconds)
                ratio = mine.seconds / best.seconds
                mem_ok = mine.peak_bytes <= p2p.peak_bytes
                goals.append(
                    f"{case}: {label} ours {ratio:.2f}x best peer ({best.method}); peak "
                    f"{format_bytes(mine.peak_bytes)} vs p2p {format_bytes(p2p.peak_bytes)} (goal "
                    f"<= 0.8x and <= p2p: {'met' if ratio <= 0.8 and mem_ok else 'MISSED'})"
                )
    return goals


def print_other(rows: list[Row]) -> list[str]:
    goals: list[str] = []
    for section in ("scan", "compare", "zarrs"):
        part = [r for r in rows if r.section == section]
        if not part:
            continue
        print(f"\n{'case':40s} {'method':34s} {'s':>7s} {'peak':>10s} {'ratio':>7s}")
        for case in dict.fromkeys(r.case for r in part):
            first = next(r for r in part if r.case == case)
            for r in (r for r in part if r.case == case):
                ratio = first.seconds / r.seconds  # throughput relative to the case's first row
                print(
                    f"{case:40s} {r.method:34s} {r.seconds:7.2f} {format_bytes(r.peak_bytes):>10s} "
                    f"{ratio:7.2f}"
                )
            if section == "scan":
                mine = _get(part, case, "ours deep=True, 2x1")
                net = _get(part, case, "ours 2x1 minus fixed cost")
                if mine and net:
                    ratio = first.seconds / mine.seconds
                    goals.append(
                        f"{case}: ours on 2x1 at {ratio:.2f}x the decode limit, "
                        f"{first.seconds / net.seconds:.2f}x without the fixed cost (goal "
                        f">= 0.9x: {'met' if ratio >= 0.9 else 'MISSED'})"
                    )
    return goals


def main() -> None:
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)  # P2P's per-run notices
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, fewer cases (~2 min)")
    parser.add_argument("--size", default=None, help="rechunk array size (default 256MiB)")
    parser.add_argument("--scan-size", default=None, help="deep-scan store size (default 1GiB)")
    parser.add_argument(
        "--scan-chunks", default=None, help="deep-scan chunk sizes, e.g. 64KiB,256KiB (default all)"
    )
    parser.add_argument("--max-mem", default=None, help="max_mem of the rechunks (default size/4)")
    parser.add_argument(
        "--sections", default="rechunk,scan,compare,zarrs", help="comma-separated subset"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each no-client rechunk row (median kept)"
    )
    parser.add_argument(
        "--clusters", default=",".join(CLUSTERS), help="LocalClusters of the rechunk rows ('' none)"
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON at the end")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    size = parse_bytes(args.size or ("64MiB" if args.quick else "256MiB"))
    max_mem = parse_bytes(args.max_mem) if args.max_mem else size // 4
    scan_size = parse_bytes(args.scan_size or ("128MiB" if args.quick else "1GiB"))
    nt = 256 if not args.quick else 64
    side = math.isqrt(size // (nt * 4))
    shape = (nt, side, side)
    chunk_sizes = [256 << 10, 4 << 20]
    kinds = ["compressible"] if args.quick else ["compressible", "incompressible"]
    directions = ["time->space", "space->time"]
    cases = [Case(d, c, k) for k in kinds for c in chunk_sizes for d in directions]
    scan_sizes = (
        [parse_bytes(c) for c in args.scan_chunks.split(",")]
        if args.scan_chunks
        else [64 << 10, 1 << 20, 4 << 20]
        if args.quick
        else [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20]
    )
    work = Path(args.workdir or tempfile.mkdtemp(prefix="zdu-bench-local-"))
    started = time.perf_counter()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()}; "
        f"{os.cpu_count()} cores; array {shape} float32 = {format_bytes(math.prod(shape) * 4)}; "
        f"max_mem {format_bytes(max_mem)}; zarr {zarr.__version__}, dask {dask.__version__}"
    )
    data = {k: make_data(shape, k) for k in kinds}
    rows: list[Row] = []
    try:
        if "rechunk" in sections:
            print("rechunk:")
            rows += rechunk_section(
                work, shape, cases, data, max_mem, args.repeat, tuple(args.clusters.split(","))
            )
            for k in kinds:
                src = work / f"src-time-{chunk_sizes[-1]}-{k}.zarr"
                if src.exists():
                    print(f"  {k}: {stored_ratio(str(src)):.2f}x with blosc-zstd")
        if "scan" in sections:
            print(f"deep scan (load {os.getloadavg()}):")
            scan_data = np.concatenate([data["compressible"]] * max(1, scan_size // size))
            rows += scan_section(work, scan_size, scan_sizes, scan_data)
            del scan_data
        if "compare" in sections:
            print(f"compare (load {os.getloadavg()}):")
            rows += compare_section(work, shape, chunk_sizes, data["compressible"], max_mem)
        if "zarrs" in sections:
            print(f"zarrs (load {os.getloadavg()}):")
            big = data["compressible"] if args.quick else np.concatenate([data["compressible"]] * 2)
            rows += zarrs_section(work, big, repeat=1 if args.quick else 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    goals = print_rechunk(rows) if "rechunk" in sections else []
    goals += print_other(rows)
    print("\ngoals:")
    for line in goals:
        print("  " + line)
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; load at the end {os.getloadavg()} "
        "(1, 5, 15 min)"
    )
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows], "goals": goals}, indent=1))


if __name__ == "__main__":
    main()
