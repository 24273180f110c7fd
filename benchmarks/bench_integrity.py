"""Deep-scan throughput: ``check_data_integrity(deep=True)`` vs its peers, one run.

Builds a local zarr 3 store of float32 data compressed with blosc-zstd (``--size``, default
1 GB uncompressed), then decodes every chunk with:

* **decode limit**: numcodecs ``Blosc`` decode of the same stored bytes on all cores (a
  process pool, each process reading and decoding its share of the files, blosc 1 thread);
* **ours**: ``check_data_integrity(store, deep=True)`` on a ``LocalCluster`` with one
  process per core (1 thread each), the whole call (listing, metadata, inventory, decode);
  again with ``nan_check=True``, and with the direct decode path switched off
  (``integrity.direct-decode: false``: every chunk through zarr's codec pipeline);
* **the limit's code in the workers**: the same numcodecs loop submitted to the same Dask
  workers (one share per worker): what a plain decode costs inside distributed's worker
  processes (their ``MALLOC_TRIM_THRESHOLD_`` makes every large buffer a fresh ``mmap``);
* **dask.array**: ``da.from_zarr(store).sum()`` on the same cluster;
* **serial zarr**: one thread reading every chunk with ``array[region]``.

Each method runs ``--repeat`` times after a warm-up (the store is in the page cache); the
table shows the median.  Throughput is uncompressed GB/s; ratios are to the decode limit.
Run::

    python benchmarks/bench_integrity.py            # ~1 GB, about 1 minute
    python benchmarks/bench_integrity.py --size 4GB
    python benchmarks/bench_integrity.py --s3 256MB   # also on a loopback S3 server
    python benchmarks/bench_integrity.py --shard-rows 4096   # sharded: 8 chunks per shard
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import dask
import numpy as np
import zarr
from dask.utils import parse_bytes


def build(path: str, nbytes: int, shard_rows: int | None = None) -> zarr.Array:
    rows = max(1, nbytes // (4 * 1024 * 1024))  # float32, 1024 x 1024 per row block
    arr = zarr.create_array(
        path,
        shape=(rows * 1024, 1024),
        chunks=(512, 1024),  # 2 MiB per chunk
        shards=None if shard_rows is None else (shard_rows, 1024),
        dtype="f4",
        compressors=zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    )
    rng = np.random.default_rng(0)
    base = np.sin(np.linspace(0, 40, 1024 * 1024)).astype("f4").reshape(1024, 1024)
    for i in range(rows):
        noise = rng.normal(0, 0.01, size=(1024, 1024)).astype("f4").round(3)
        arr[i * 1024 : (i + 1) * 1024] = base + noise
    return arr


def _decode_files(paths: list[str], per_shard: int = 0) -> int:
    """Blosc-decode every file (every inner chunk of every shard when *per_shard*)."""
    from numcodecs import Blosc, blosc

    blosc.set_nthreads(1)
    codec = Blosc()
    total = 0
    for p in paths:
        data = Path(p).read_bytes()
        if not per_shard:
            total += len(codec.decode(data))
            continue
        index = np.frombuffer(data[-(16 * per_shard + 4) : -4], dtype="<u8").reshape(-1, 2)
        for offset, length in index.tolist():
            if offset != 2**64 - 1:  # inner chunks past the array's end are not stored
                total += len(codec.decode(data[offset : offset + length]))
    return total


def decode_limit(root: str, workers: int, per_shard: int = 0) -> tuple[float, int]:
    files = sorted(str(p) for p in Path(root, "c").rglob("*") if p.is_file())
    shares = [files[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode_files, [s[:1] for s in shares], [per_shard] * workers))  # warm up
        start = time.perf_counter()
        total = sum(pool.map(_decode_files, shares, [per_shard] * workers))
        return time.perf_counter() - start, total


def serial_zarr(arr: zarr.Array) -> tuple[float, int]:
    start = time.perf_counter()
    total = 0
    for i in range(0, arr.shape[0], arr.chunks[0]):
        total += arr[i : i + arr.chunks[0]].nbytes
    return time.perf_counter() - start, total


def median_run(run: Callable[[], tuple[float, int]], repeat: int) -> tuple[float, int]:
    """Warm up once, then the median time of *repeat* runs (and the bytes decoded)."""
    run()
    results = sorted(run() for _ in range(repeat))
    return results[len(results) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GB", help="uncompressed size (default 1GB)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method")
    parser.add_argument(
        "--shard-rows",
        type=int,
        default=None,
        metavar="N",
        help="store shards of N rows (a multiple of 512; 4096 = 8 chunks, 16 MiB per shard)",
    )
    parser.add_argument(
        "--s3",
        default=None,
        metavar="SIZE",
        help="also copy SIZE (e.g. 256MB) of the store to a loopback moto S3 server and scan it",
    )
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster

    from zarr_dask_utils import check_data_integrity

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.zarr")
        t0 = time.perf_counter()
        arr = build(path, parse_bytes(args.size), args.shard_rows)
        per_shard = (args.shard_rows or 0) // 512
        objects = -(-arr.shape[0] // args.shard_rows) if per_shard else arr.nchunks
        stored = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
        print(
            f"store: {arr.nbytes / 1e9:.2f} GB uncompressed, {stored / 1e9:.2f} GB stored "
            f"({arr.nchunks} chunks of 2 MiB"
            + (f" in shards of {per_shard}" if per_shard else "")
            + f"), built in {time.perf_counter() - t0:.0f} s; "
            f"{args.workers} cores, median of {args.repeat} runs"
        )
        rows: list[tuple[str, float, int]] = []
        rows.append(
            (
                "decode limit (numcodecs, process pool)",
                *median_run(lambda: decode_limit(path, args.workers, per_shard), args.repeat),
            )
        )
        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster) as client,
        ):

            def ours(**kwargs: Any) -> tuple[float, int]:
                start = time.perf_counter()
                report = check_data_integrity(
                    path, deep=True, client=client, progress=False, **kwargs
                )
                seconds = time.perf_counter() - start
                if not report.ok or report.chunks_decoded != objects:
                    raise RuntimeError(str(report))
                return seconds, report.bytes_decoded

            rows.append(("ours: check_data_integrity(deep=True)", *median_run(ours, args.repeat)))
            rows.append(
                (
                    "ours, deep=True, nan_check=True",
                    *median_run(lambda: ours(nan_check=True), args.repeat),
                )
            )
            with dask.config.set({"zarr-dask-utils.integrity.direct-decode": False}):
                rows.append(("ours, zarr's codec pipeline", *median_run(ours, args.repeat)))

            def in_workers() -> tuple[float, int]:
                files = sorted(str(p) for p in Path(path, "c").rglob("*") if p.is_file())
                workers = list(client.scheduler_info(n_workers=-1)["workers"])
                shares = [files[i :: len(workers)] for i in range(len(workers))]
                start = time.perf_counter()
                futures = [
                    client.submit(_decode_files, share, per_shard, workers=[w], pure=False)
                    for share, w in zip(shares, workers, strict=True)
                ]
                total = sum(client.gather(futures))
                return time.perf_counter() - start, total

            rows.append(
                ("the limit's code run in the Dask workers", *median_run(in_workers, args.repeat))
            )

            def dask_sum() -> tuple[float, int]:
                start = time.perf_counter()
                da.from_zarr(path).sum().compute()
                return time.perf_counter() - start, arr.nbytes

            rows.append(("dask.array.from_zarr(...).sum()", *median_run(dask_sum, args.repeat)))
        array = zarr.open_array(path, mode="r")
        rows.append(
            (
                "serial zarr read of every chunk",
                *median_run(lambda: serial_zarr(array), args.repeat),
            )
        )
        s3_rows = s3_table(path, parse_bytes(args.s3), args) if args.s3 else []

    limit = rows[0][2] / rows[0][1]
    print(f"{'method':<48} {'seconds':>8} {'GB/s':>7} {'x limit':>8}")
    for name, seconds, nbytes in rows:
        rate = nbytes / seconds
        print(f"{name:<48} {seconds:8.2f} {rate / 1e9:7.2f} {rate / limit:8.2f}")
    if s3_rows:
        base = s3_rows[0][2] / s3_rows[0][1]
        print(f"\nloopback S3 (moto in its own process), {args.s3}:")
        print(f"{'method':<48} {'seconds':>8} {'GB/s':>7} {'x ours':>8}")
        for name, seconds, nbytes in s3_rows:
            rate = nbytes / seconds
            print(f"{name:<48} {seconds:8.2f} {rate / 1e9:7.2f} {rate / base:8.2f}")


def s3_table(path: str, nbytes: int, args: argparse.Namespace) -> list[tuple[str, float, int]]:
    """The first *nbytes* of the store copied to moto, scanned by ours and by its peers."""
    import dask.array as da
    import s3fs
    from distributed import Client, LocalCluster
    from s3server import S3Server

    from zarr_dask_utils import check_data_integrity

    src = zarr.open_array(path, mode="r")
    rows_n = max(src.chunks[0], nbytes // (src.shape[1] * 4) // src.chunks[0] * src.chunks[0])
    with S3Server(in_process=False) as s3:
        options = {"key": "testing", "secret": "testing", "endpoint_url": s3.endpoint}
        s3fs.S3FileSystem(**options).mkdir("zdu-bench-integrity")
        url = "s3://zdu-bench-integrity/bench.zarr"
        dst = zarr.create_array(
            zarr.storage.FsspecStore.from_url(url, storage_options=options),
            shape=(rows_n, src.shape[1]),
            chunks=src.chunks,
            dtype=src.dtype,
            compressors=src.compressors,
        )
        for i in range(0, rows_n, src.chunks[0] * 8):
            dst[i : i + src.chunks[0] * 8] = src[i : i + src.chunks[0] * 8]
        out: list[tuple[str, float, int]] = []
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):

            def ours() -> tuple[float, int]:
                start = time.perf_counter()
                report = check_data_integrity(
                    url, deep=True, storage_options=options, client=client, progress=False
                )
                if not report.ok:
                    raise RuntimeError(str(report))
                return time.perf_counter() - start, report.bytes_decoded

            out.append(("ours: check_data_integrity(deep=True)", *median_run(ours, args.repeat)))
            with dask.config.set({"zarr-dask-utils.integrity.direct-decode": False}):
                out.append(("ours, zarr's codec pipeline", *median_run(ours, args.repeat)))

            def dask_sum() -> tuple[float, int]:
                start = time.perf_counter()
                da.from_zarr(url, storage_options=options).sum().compute()
                return time.perf_counter() - start, dst.nbytes

            out.append(("dask.array.from_zarr(...).sum()", *median_run(dask_sum, args.repeat)))
        return out


if __name__ == "__main__":
    main()
