"""Deep-scan throughput: ``check_data_integrity(deep=True)`` vs its peers, one run.

Builds a local zarr 3 store of float32 data compressed with blosc-zstd (``--size``, default
1 GB uncompressed), then decodes every chunk with:

* **decode limit**: numcodecs ``Blosc`` decode of the same stored bytes on all cores (a
  process pool, each process reading and decoding its share of the files, blosc 1 thread);
* **ours**: ``check_data_integrity(store, deep=True)`` on a ``LocalCluster`` with one
  process per core (1 thread each), blosc pinned to 1 thread in the tasks — and again with
  blosc left to its own threads (``integrity.blosc-threads: null``), and on workers started
  with ``MALLOC_TRIM_THRESHOLD_`` raised to 1 GiB;
* **serial zarr**: one thread reading every chunk with ``array[region]``;
* **dask.array**: ``da.from_zarr(store).sum()`` on the same cluster.

Throughput is uncompressed GB/s; ratios are to the decode limit.  Run::

    python benchmarks/bench_integrity.py            # ~1 GB
    python benchmarks/bench_integrity.py --size 200MB
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dask
import numpy as np
import zarr
from dask.utils import parse_bytes


def build(path: str, nbytes: int) -> zarr.Array:
    rows = max(1, nbytes // (4 * 1024 * 1024))  # float32, 1024 x 1024 per row block
    arr = zarr.create_array(
        path,
        shape=(rows * 1024, 1024),
        chunks=(512, 1024),  # 2 MiB per chunk
        dtype="f4",
        compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    )
    rng = np.random.default_rng(0)
    base = np.sin(np.linspace(0, 40, 1024 * 1024)).astype("f4").reshape(1024, 1024)
    for i in range(rows):
        noise = rng.normal(0, 0.01, size=(1024, 1024)).astype("f4").round(3)
        arr[i * 1024 : (i + 1) * 1024] = base + noise
    return arr


def _decode_files(paths: list[str]) -> int:
    from numcodecs import Blosc, blosc

    blosc.set_nthreads(1)
    codec = Blosc()
    total = 0
    for p in paths:
        total += len(codec.decode(Path(p).read_bytes()))
    return total


def decode_limit(root: str, workers: int) -> tuple[float, int]:
    files = sorted(str(p) for p in Path(root, "c").rglob("*") if p.is_file())
    shares = [files[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode_files, [s[:1] for s in shares]))  # warm up the processes
        start = time.perf_counter()
        total = sum(pool.map(_decode_files, shares))
        return time.perf_counter() - start, total


def serial_zarr(arr: zarr.Array) -> tuple[float, int]:
    start = time.perf_counter()
    total = 0
    for i in range(0, arr.shape[0], arr.chunks[0]):
        total += arr[i : i + arr.chunks[0]].nbytes
    return time.perf_counter() - start, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GB", help="uncompressed size (default 1GB)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster

    from zarr_dask_utils import check_data_integrity

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.zarr")
        t0 = time.perf_counter()
        arr = build(path, parse_bytes(args.size))
        stored = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
        print(
            f"store: {arr.nbytes / 1e9:.2f} GB uncompressed, {stored / 1e9:.2f} GB stored "
            f"({arr.nchunks} chunks of 2 MiB), built in {time.perf_counter() - t0:.0f} s; "
            f"{args.workers} cores"
        )
        rows: list[tuple[str, float, int]] = []
        seconds, nbytes = decode_limit(path, args.workers)
        rows.append(("decode limit (numcodecs, process pool)", seconds, nbytes))
        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster) as client,
        ):
            # warm the workers (imports, codecs, page cache) with one untimed deep scan
            check_data_integrity(path, deep=True, client=client, progress=False)
            start = time.perf_counter()
            report = check_data_integrity(path, deep=True, client=client, progress=False)
            rows.append(
                (
                    "ours: check_data_integrity(deep=True)",
                    time.perf_counter() - start,
                    report.bytes_decoded,
                )
            )
            if not report.ok or report.chunks_decoded != arr.nchunks:
                raise RuntimeError(str(report))
            with dask.config.set({"zarr-dask-utils.integrity.blosc-threads": None}):
                start = time.perf_counter()
                loose = check_data_integrity(path, deep=True, client=client, progress=False)
                rows.append(
                    (
                        "ours, blosc threads not pinned",
                        time.perf_counter() - start,
                        loose.bytes_decoded,
                    )
                )
            start = time.perf_counter()
            da.from_zarr(path).sum().compute()
            rows.append(
                ("dask.array.from_zarr(...).sum()", time.perf_counter() - start, arr.nbytes)
            )
        # distributed sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which also disables
        # glibc's dynamic mmap threshold: every 2 MiB decode buffer becomes a fresh mmap.
        trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 2**30}
        with (
            dask.config.set(trim),
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster) as client,
        ):
            check_data_integrity(path, deep=True, client=client, progress=False)
            start = time.perf_counter()
            report = check_data_integrity(path, deep=True, client=client, progress=False)
            rows.insert(
                2,
                (
                    "ours, workers with MALLOC_TRIM_THRESHOLD_=1GiB",
                    time.perf_counter() - start,
                    report.bytes_decoded,
                ),
            )
        seconds, nbytes = serial_zarr(zarr.open_array(path, mode="r"))
        rows.append(("serial zarr read of every chunk", seconds, nbytes))

    limit = rows[0][2] / rows[0][1]
    print(f"{'method':<48} {'seconds':>8} {'GB/s':>7} {'x limit':>8}")
    for name, seconds, nbytes in rows:
        rate = nbytes / seconds
        print(f"{name:<48} {seconds:8.2f} {rate / 1e9:7.2f} {rate / limit:8.2f}")


if __name__ == "__main__":
    main()
