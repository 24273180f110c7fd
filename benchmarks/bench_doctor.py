"""``zdu doctor`` on a store with many objects on S3, against a plain serial walk.

One run, on moto's S3 server on loopback (own process):

- **ours**: ``diagnose_zarr_store(url, client=LocalCluster(2 processes))``: one listing with
  sizes on a worker, documents read concurrently, the chunk inventory built beside the
  listing (only per-array counts travel), plus ``validate_metadata``.
- **serial**: what a user writes with plain zarr: ``zarr.open_group(..., use_consolidated=False)``
  then ``array.info_complete()`` for every array, one after another (each lists its prefix and
  sizes its chunks).

Both count the stored chunks of every array; the run checks they agree, then prints times
and the ratio.  ``python benchmarks/bench_doctor.py --objects 100000`` for the issue's size
(building it takes minutes on moto: about 400 PUTs per second).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any

import numpy as np
from s3server import S3Server

BUCKET = "zdu-doctor"


def build(url: str, options: dict[str, Any], n_arrays: int, n_objects: int) -> int:
    """Format 2 arrays whose chunk objects are written directly (small random bytes)."""
    import s3fs
    import zarr

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    fs.mkdir(BUCKET)
    group = zarr.open_group(url, mode="w", zarr_format=2, storage_options=options)
    per_array = max(1, n_objects // n_arrays)
    rng = np.random.default_rng(0)
    blobs: dict[str, bytes] = {}
    for i in range(n_arrays):
        group.create_array(
            f"var{i:03d}", shape=(per_array * 16,), chunks=(16,), dtype="f4", compressors=None
        )
        for c in range(per_array):
            blobs[f"{url}/var{i:03d}/{c}"] = rng.bytes(64)
    keys = list(blobs)
    for start in range(0, len(keys), 2000):
        fs.pipe({k: blobs[k] for k in keys[start : start + 2000]}, batch_size=64)
    return len(keys)


def serial_walk(url: str, options: dict[str, Any]) -> dict[str, int]:
    """Plain zarr: open, then ``info_complete()`` per array, one after another.

    Returns the chunks stored per array (``info_complete`` also sums their bytes).
    """
    import zarr

    group = zarr.open_group(
        url,
        mode="r",
        use_consolidated=False,
        storage_options={**options, "skip_instance_cache": True},
    )
    stored = {}
    for name, array in sorted(group.arrays()):
        info = array.info_complete()
        stored[name] = int(info._count_chunks_initialized)
    return stored


def ours(url: str, options: dict[str, Any], client: Any) -> dict[str, int]:
    from zarr_dask_utils import diagnose_zarr_store

    report = diagnose_zarr_store(url, storage_options=options, client=client, progress=False)
    return {a.path: a.objects_present for a in report.arrays}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20000, help="chunk objects in all")
    parser.add_argument("--arrays", type=int, default=20)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from distributed import Client, LocalCluster

    with S3Server(in_process=False) as s3:
        options = {"key": "testing", "secret": "testing", "endpoint_url": s3.endpoint}
        url = f"s3://{BUCKET}/many.zarr"
        t0 = time.perf_counter()
        n = build(url, options, args.arrays, args.objects)
        print(
            f"built {n} chunk objects in {args.arrays} arrays in {time.perf_counter() - t0:.1f} s"
        )
        s3.requests()
        with (
            LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=":0") as cluster,
            Client(cluster) as client,
        ):
            ours(url, options, client)  # warm the workers (imports), untimed
            s3.requests()
            t0 = time.perf_counter()
            mine = ours(url, options, client)
            t_ours = time.perf_counter() - t0
            req_ours = s3.requests()
        t0 = time.perf_counter()
        theirs = serial_walk(url, options)
        t_serial = time.perf_counter() - t0
        req_serial = s3.requests()
    same = mine == theirs
    print(f"\n{'method':<48}{'seconds':>9}   requests")
    print(f"{'ours: diagnose_zarr_store (LocalCluster 2x2)':<48}{t_ours:>9.2f}   {req_ours}")
    print(f"{'serial: open_group + info_complete per array':<48}{t_serial:>9.2f}   {req_serial}")
    print(f"\nserial / ours: {t_serial / t_ours:.2f}x")
    print(f"stored chunks per array agree: {same} ({sum(mine.values())} in {len(mine)} arrays)")
    print(f"machine: {os.cpu_count()} CPUs")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
