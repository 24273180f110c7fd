"""Threads or worker processes for the embedded deep scan (issue 13): the costs that decide it.

Measures, on a 1-D float32 blosc-zstd store per chunk size, interleaved and min of
``--repeat``:

* the embedded cluster's start + close, threads in one process vs worker processes;
* ``check_data_integrity(deep=True)`` on an already started embedded cluster of each kind,
  minus the same call on a 1-chunk store (the fixed cost), as µs per chunk;
* the whole embedded call (start-up included) with ``cluster.processes`` false / true.

The break-even chunk count is (start-up difference) / (µs per chunk difference)::

    python benchmarks/bench_scan_engine.py                       # 256 MiB, 64 KiB..4 MiB
    python benchmarks/bench_scan_engine.py --size 1GiB --chunks 64KiB --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import zarr
from dask.utils import format_bytes, parse_bytes
from distributed import Client

sys.path.insert(0, str(Path(__file__).parent))
from bench_local_speed import BLOSC, make_data

from zarr_dask_utils import check_data_integrity
from zarr_dask_utils._core.compute.cluster import _embedded_cluster


def _scan(path: str, client: Client | None) -> str:
    report = check_data_integrity(path, deep=True, client=client, progress=False)
    if not report.ok:
        raise RuntimeError(str(report))
    return report.engine


def best(fn: Callable[[], Any], repeat: int) -> float:
    """Min wall seconds of *repeat* calls."""
    out = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - start)
    return out


def start_close(processes: bool) -> None:
    with _embedded_cluster(processes) as cluster, Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256MiB")
    parser.add_argument("--chunks", default="64KiB,256KiB,1MiB,4MiB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = parse_bytes(args.size)
    work = Path(tempfile.mkdtemp(prefix="zdu-scan-engine-"))
    try:
        base = make_data((64, 256, 256), "compressible").reshape(-1)
        flat = np.concatenate([base] * max(1, size // base.nbytes))[: size // 4]
        stores = {}
        for cb in (parse_bytes(c) for c in args.chunks.split(",")):
            stores[cb] = str(work / f"s-{cb}.zarr")
            arr = zarr.create_array(
                stores[cb], shape=flat.shape, chunks=(cb // 4,), dtype="f4", compressors=BLOSC
            )
            arr[:] = flat
        tiny = str(work / "tiny.zarr")
        zarr.create_array(tiny, shape=(1024,), chunks=(1024,), dtype="f4", compressors=BLOSC)[:] = 1
        print(f"load {os.getloadavg()}")
        for processes in (False, True, False, True):
            s = best(lambda p=processes: start_close(p), 1)
            print(f"start + close, processes={processes}: {s:.2f} s, load {os.getloadavg()[0]:.1f}")
        clusters = {}
        for processes in (False, True):
            cm = _embedded_cluster(processes)
            cluster = cm.__enter__()
            clusters[processes] = (cm, Client(cluster, set_as_default=False))
        try:
            for cb, path in stores.items():
                n = flat.nbytes // cb
                per: dict[bool, float] = {}
                for processes, (_, client) in clusters.items():
                    _scan(path, client)  # warm
                    fixed = best(lambda c=client: _scan(tiny, c), args.repeat)
                    whole = best(lambda c=client, p=path: _scan(p, c), args.repeat)
                    per[processes] = 1e6 * (whole - fixed) / n
                    print(
                        f"{format_bytes(cb)} x {n}: started cluster, processes={processes}: "
                        f"{whole:.2f} s (fixed {fixed:.2f} s), {per[processes]:.1f} us/chunk, "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                for processes in (False, True):
                    with dask.config.set({"zarr-dask-utils.cluster.processes": processes}):
                        s = best(lambda p=path: _scan(p, None), 1)
                    print(
                        f"{format_bytes(cb)} x {n}: embedded call, processes={processes}: "
                        f"{s:.2f} s, load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        finally:
            for cm, client in clusters.values():
                client.close()
                cm.__exit__(None, None, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
