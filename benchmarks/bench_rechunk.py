"""Benchmark: rechunk a (time, lat, lon) float32 array time-major → space-major.

Side by side on one LocalCluster (2 worker processes): ``rechunk_array`` (rechunker plan,
two stages through a temp store; and the direct one-stage plan), Dask ``rechunk(method="tasks")``
+ store, and Dask ``rechunk(method="p2p")`` + store.  Prints wall time and peak cluster memory
(``MemorySampler``, process memory summed over workers, minus the idle baseline) per method
and the ratios to the best peer.  Then a small predicted-vs-measured table for
``estimate_performance`` on local disk and on the loopback S3 server (``--no-s3`` skips it).

Run: ``python benchmarks/bench_rechunk.py [--size-gb 0.5] [--max-mem 256MiB]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
import s3fs
import zarr
from dask.utils import format_bytes, parse_bytes
from distributed import Client, LocalCluster
from distributed.diagnostics import MemorySampler
from s3server import S3Server

from zarr_dask_utils import estimate_performance, rechunk_array
from zarr_dask_utils._core.pure.access_patterns import resolve_patterns


def _make_source(path: str, size_gb: float) -> tuple[int, int, int]:
    lat, lon = 256, 256
    nt = max(16, int(size_gb * 1e9 / (lat * lon * 4)))
    arr = zarr.create_array(
        path,
        shape=(nt, lat, lon),
        chunks=(1, lat, lon),
        dtype="f4",
        dimension_names=("time", "lat", "lon"),
        fill_value=np.nan,
    )
    x = da.random.default_rng(0).standard_normal((nt, lat, lon), chunks=(64, lat, lon)).astype("f4")
    da.store(x, arr, lock=False)
    return nt, lat, lon


def _dask_method(src: str, dst: str, target: tuple[int, ...], method: str) -> None:
    source = zarr.open_array(src, mode="r")
    out = zarr.create_array(
        dst,
        shape=source.shape,
        chunks=target,
        dtype=source.dtype,
        fill_value=np.nan,
        dimension_names=("time", "lat", "lon"),
        overwrite=True,
    )
    x = da.from_zarr(source).rechunk(target, method=method)
    da.store(x, out, lock=False)


def _measure(client: Client, name: str, fn) -> tuple[float, int, int]:
    """Wall time, peak cluster process memory, and that peak minus the idle level before."""
    sampler = MemorySampler()
    client.run(lambda: __import__("gc").collect())
    time.sleep(2)  # let the workers' heartbeats report the idle level
    with sampler.sample(name, client=client, measure="process", interval=0.1):
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    values = [v for _, v in sampler.samples[name]]
    return wall, int(max(values)), int(max(values) - values[0])


def _predict_vs_measure(path: str, options: dict | None, client: Client) -> None:
    """Print predicted (probe-measured cost model) vs measured time of two patterns."""
    arr = zarr.open_array(path, mode="r", storage_options=options)
    for pattern in ("time-series", "spatial"):
        est = estimate_performance(
            path, None, pattern, storage_options=options, client=client, progress=False
        )
        t0 = time.perf_counter()
        for p in resolve_patterns(pattern, arr.shape, ("time", "lat", "lon")):
            for sel in p.selections:
                arr[tuple(slice(a, b) for a, b in sel)]
        measured = time.perf_counter() - t0
        print(
            f"{arr.chunks!s:18s} {pattern:12s} {est.requests:8d} {est.seconds:8.3f} {measured:8.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=0.5)
    parser.add_argument("--max-mem", default="256MiB")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--no-s3", action="store_true", help="skip the loopback S3 estimate table")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="zdu-bench-rechunk-"))
    max_mem = parse_bytes(args.max_mem)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        src = str(work / "src.zarr")
        shape = _make_source(src, args.size_gb)
        target = (shape[0], 16, 16)
        print(
            f"array {shape} float32 = {format_bytes(math.prod(shape) * 4)}; chunks "
            f"(1, {shape[1]}, {shape[2]}) -> {target}; max_mem {args.max_mem}; 2 workers x 2 thr"
        )
        runs = {
            "zdu rechunk_array (auto, temp)": lambda d: rechunk_array(
                src,
                target,
                d,
                max_mem=max_mem,
                temp_store=str(work / "tmp.zarr"),
                client=client,
                progress=False,
            ),
            "zdu rechunk_array (direct)": lambda d: rechunk_array(
                src, target, d, max_mem=max_mem, engine="rechunker", client=client, progress=False
            ),
            "dask tasks + store": lambda d: _dask_method(src, d, target, "tasks"),
            "dask p2p + store": lambda d: _dask_method(src, d, target, "p2p"),
        }
        results = {}
        reference = zarr.open_array(src, mode="r")[:, :16, :16]
        for name, fn in runs.items():
            dst = str(work / f"dst-{len(results)}.zarr")
            wall, peak, delta = _measure(client, name, lambda fn=fn, dst=dst: fn(dst))
            out = zarr.open_array(dst, mode="r")
            assert out.chunks == target
            assert np.array_equal(out[:, :16, :16], reference, equal_nan=True)
            results[name] = (wall, peak, delta)
            shutil.rmtree(dst)
        peers = {k: v for k, v in results.items() if k.startswith("dask")}
        best_t = min(t for t, _, _ in peers.values())
        p2p_mem = results["dask p2p + store"][1]
        print(
            f"\n{'method':32s} {'wall s':>7s} {'peak mem':>10s} {'peak-idle':>10s} "
            f"{'t/best peer':>11s} {'mem/p2p':>8s}"
        )
        for name, (wall, peak, delta) in results.items():
            print(
                f"{name:32s} {wall:7.1f} {format_bytes(peak):>10s} {format_bytes(delta):>10s} "
                f"{wall / best_t:11.2f} {peak / max(p2p_mem, 1):8.2f}"
            )

        print("\nestimate_performance on local disk (probe-measured parameters), 1 reader:")
        print(f"{'chunks':18s} {'pattern':12s} {'requests':>8s} {'pred s':>8s} {'meas s':>8s}")
        dst = str(work / "est.zarr")
        rechunk_array(
            src,
            target,
            dst,
            max_mem=max_mem,
            temp_store=str(work / "tmp.zarr"),
            client=client,
            progress=False,
        )
        for path in (src, dst):
            _predict_vs_measure(path, None, client)
        if not args.no_s3:
            print("\nthe same on the loopback S3 server (moto, own process):")
            print(f"{'chunks':18s} {'pattern':12s} {'requests':>8s} {'pred s':>8s} {'meas s':>8s}")
            with S3Server(in_process=False) as s3:
                options = {"key": "testing", "secret": "testing", "endpoint_url": s3.endpoint}
                s3fs.S3FileSystem(**options).mkdir("zdu-bench-est")
                for i, path in enumerate((src, dst)):
                    url = f"s3://zdu-bench-est/copy{i}.zarr"
                    chunks = zarr.open_array(path, mode="r").chunks
                    rechunk_array(
                        path,
                        chunks,
                        url,
                        max_mem=max_mem,
                        target_storage_options=options,
                        client=client,
                        progress=False,
                    )
                    _predict_vs_measure(url, options, client)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
