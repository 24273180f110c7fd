"""compare_stores on a rechunked copy vs its peers, one run.

Builds a float32 (time, y, x) array stored time-major (chunks span all of time, 32 x 32 in
space) and a space-major copy of it (16 time steps x the whole map per chunk), then proves the
copy equal with:

* **ours**: ``compare_stores(a, b)``: both sides read once as Dask arrays in blocks of whole
  chunks (decoded directly), B rechunked by Dask to A's blocks, compared per chunk of A (NaN
  equals NaN, differing keys); median of 3 after a warm-up;
* **per-chunk regions** (how ours worked before): for every chunk of A, ``b[region]`` read
  with zarr inside Dask tasks (batches of A's chunks), which reads every chunk of B many times;
* **dask.array**: ``(da.from_zarr(a) == da.from_zarr(b)).all()`` (no NaN handling, no keys);
* and for scale ``compare_stores(a, a_copy)`` on a byte-identical copy (raw-bytes mode).

Run::

    python benchmarks/bench_compare.py              # 256 MB per side
    python benchmarks/bench_compare.py --size 1GB
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import dask
import dask.array as da
import numpy as np
import zarr
from dask.utils import parse_bytes
from distributed import Client, LocalCluster

from zarr_dask_utils import compare_stores


def build(tmp: str, nbytes: int) -> tuple[str, str, str]:
    t = max(16, nbytes // (4 * 256 * 256) // 16 * 16)
    shape = (t, 256, 256)
    a, b, c = (os.path.join(tmp, n) for n in ("a.zarr", "b.zarr", "copy.zarr"))
    arr_a = zarr.create_array(a, shape=shape, chunks=(t, 32, 32), dtype="f4")
    arr_b = zarr.create_array(b, shape=shape, chunks=(16, 256, 256), dtype="f4")
    rng = np.random.default_rng(0)
    for i in range(0, t, 64):
        block = rng.normal(size=(min(64, t - i), 256, 256)).astype("f4")
        arr_a[i : i + len(block)] = block
        arr_b[i : i + len(block)] = block
    shutil.copytree(a, c)
    return a, b, c


def region_batch(a: str, b: str, regions: list[tuple[slice, ...]]) -> int:
    """The old way: one zarr read of each side per chunk of A."""
    za, zb = zarr.open_array(a, mode="r"), zarr.open_array(b, mode="r")
    return sum(int(np.count_nonzero(za[r] != zb[r])) for r in regions)


def per_chunk_regions(a: str, b: str, batch_bytes: int) -> int:
    za = zarr.open_array(a, mode="r")
    per = int(np.prod(za.chunks)) * za.dtype.itemsize
    regions = [
        tuple(
            slice(i * c, min((i + 1) * c, s))
            for i, c, s in zip(idx, za.chunks, za.shape, strict=True)
        )
        for idx in np.ndindex(*za.cdata_shape)
    ]
    step = max(1, batch_bytes // per)
    tasks = [
        dask.delayed(region_batch)(a, b, regions[i : i + step])
        for i in range(0, len(regions), step)
    ]
    return sum(dask.compute(*tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256MB", help="uncompressed bytes per side")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a, b, copy = build(tmp, parse_bytes(args.size))
        za = zarr.open_array(a, mode="r")
        print(
            f"{za.nbytes / 1e9:.2f} GB per side: A chunks {za.chunks}, "
            f"B chunks {zarr.open_array(b, mode='r').chunks}; {args.workers} workers x 1 thread"
        )
        rows: list[tuple[str, float]] = []
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            compare_stores(a, b, client=client, progress=False)  # warm up (imports, P2P)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                report = compare_stores(a, b, client=client, progress=False)
                times.append(time.perf_counter() - start)
                assert report.ok, str(report)
            rows.append(("ours: compare_stores(a, rechunked b), median", sorted(times)[1]))
            start = time.perf_counter()
            assert per_chunk_regions(a, b, 128 * 2**20) == 0
            rows.append(("per-chunk regions of b (ours before)", time.perf_counter() - start))
            start = time.perf_counter()
            assert bool((da.from_zarr(a) == da.from_zarr(b)).all().compute())
            rows.append(("(da.from_zarr(a) == da.from_zarr(b)).all()", time.perf_counter() - start))
            start = time.perf_counter()
            assert compare_stores(a, copy, client=client, progress=False).ok
            rows.append(("ours: compare_stores(a, identical copy)", time.perf_counter() - start))
    base = rows[0][1]
    print(f"{'method':<46} {'seconds':>8} {'GB/s':>7} {'x ours':>7}")
    for name, seconds in rows:
        print(f"{name:<46} {seconds:8.2f} {za.nbytes / seconds / 1e9:7.2f} {base / seconds:7.2f}")


if __name__ == "__main__":
    main()
