"""Scale figures on namespace hosts (issue 18 §4): throughput per worker count, metadata growth.

Starts a :class:`~zarr_dask_utils.testing.multihost.MultiHostCluster` (needs root): a scheduler
host, four worker hosts and an S3 host running the latency rig (``--latency``, default 20 ms
± 2 ms per request, ``--s3-servers`` moto processes).  Then:

1. **Scale-out.** Builds one S3 store (``--chunks-n`` chunks of 256 KiB, float32) with the
   rig unthrottled, then with 1, 2 and 4 worker processes (one per worker host, 1 thread each,
   workers added between rows) times ``check_data_integrity(deep=True)`` and
   ``rechunk_array`` S3 → S3 to a fresh target, after an untimed warm-up.  Prints MB/s per
   worker count and the ratio to one worker.
2. **Metadata growth.** Builds hierarchies of 100, 1,000 and 10,000 arrays
   (``build_wide_hierarchy``, metadata only) on the same S3 host and times
   ``validate_metadata`` and ``walk_hierarchy`` (``zdu validate`` / ``zdu info``) on the
   4-worker cluster; prints seconds per 1,000 arrays and the growth exponent *k* of a
   log-log fit ``t ~ N^k`` (1.0 = linear).

Every row checks its result (all chunks decoded, rechunk target equal to the source, all
arrays found); exit 1 if a check fails.  Speed never fails the run.  The load average is
printed with the numbers (the machine may be shared).

Run::

    sudo .venv/bin/python benchmarks/bench_scaleout.py            # ~3-4 min on 2 cores
    sudo .venv/bin/python benchmarks/bench_scaleout.py --quick    # smoke run, ~1 min
    sudo .venv/bin/python benchmarks/bench_scaleout.py --json     # one JSON document
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CHUNK = (1, 256, 256)  # float32: 256 KiB


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def build_source(mh: Any, url: str, n_chunks: int) -> np.ndarray:
    """Write the scale-out array (rig unthrottled); return its data."""
    import zarr

    from zarr_dask_utils import open_store

    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, size=(n_chunks, *CHUNK[1:])).astype("f4")
    before = mh.configure_s3(latency=0.0, jitter=0.0)
    try:
        store = open_store(url, storage_options=mh.storage_options(), read_only=False)
        arr = zarr.create_array(store, shape=data.shape, chunks=CHUNK, dtype="f4")
        arr[:] = data
    finally:
        mh.configure_s3(**before)
    return data


def scale_out(mh: Any, bucket: str, n_chunks: int, counts: list[int], repeat: int) -> list[dict]:
    """Deep scan and rechunk with 1, 2, 4 ... workers; one row per worker count."""
    import zarr

    from zarr_dask_utils import check_data_integrity, open_store, rechunk_array

    so = mh.storage_options()
    src = f"s3://{bucket}/scale.zarr"
    data = build_source(mh, src, n_chunks)
    rows = []
    hosts = [name for name in mh.hosts if name.startswith("worker")]
    with mh.client() as client:
        for count in counts:
            while sum(len(mh.worker_addresses(h)) for h in hosts) < count:
                idle = min(hosts, key=lambda h: len(mh.worker_addresses(h)))
                mh.start_workers(idle)
            client.wait_for_workers(count)
            check_data_integrity(src, storage_options=so, client=client, progress=False)
            scan_s, report = _timed(
                lambda: check_data_integrity(
                    src, deep=True, storage_options=so, client=client, progress=False
                ),
                repeat,
            )
            runs = iter(range(repeat))

            def rechunk(count: int = count, runs: Any = runs) -> Any:
                dst = f"s3://{bucket}/out-{count}-{next(runs)}.zarr"
                rechunk_array(
                    src,
                    (n_chunks, 64, 64),
                    dst,
                    max_mem="64MiB",
                    storage_options=so,
                    target_storage_options=so,
                    client=client,
                    progress=False,
                )
                return dst

            rechunk_s, dst = _timed(rechunk, repeat)
            out = zarr.open_array(open_store(dst, storage_options=so), mode="r")[:]
            rows.append(
                {
                    "workers": count,
                    "scan_s": scan_s,
                    "scan_MBps": data.nbytes / scan_s / 1e6,
                    "rechunk_s": rechunk_s,
                    "rechunk_MBps": data.nbytes / rechunk_s / 1e6,
                    "ok": bool(report.ok and report.chunks_decoded == n_chunks)
                    and bool(np.array_equal(out, data)),
                }
            )
            _print_row(rows[-1], rows[0])
    return rows


def _print_row(row: dict, first: dict) -> None:
    print(
        f"  {row['workers']:>7d}  {row['scan_s']:7.2f} s {row['scan_MBps']:7.1f} MB/s "
        f"x{first['scan_s'] / row['scan_s']:4.2f}   {row['rechunk_s']:7.2f} s "
        f"{row['rechunk_MBps']:7.1f} MB/s x{first['rechunk_s'] / row['rechunk_s']:4.2f}"
        f"  {'ok' if row['ok'] else 'WRONG RESULT'}",
        flush=True,
    )


def metadata_growth(mh: Any, bucket: str, sizes: list[int], repeat: int) -> dict[str, Any]:
    """validate/walk on hierarchies of each size; rows and the log-log growth exponents."""
    from zarr_dask_utils import validate_metadata, walk_hierarchy
    from zarr_dask_utils.testing.builders import build_wide_hierarchy

    so = mh.storage_options()
    rows = []
    with mh.client() as client:
        for n in sizes:
            url = f"s3://{bucket}/wide-{n}.zarr"
            before = mh.configure_s3(latency=0.0, jitter=0.0)
            try:
                build_wide_hierarchy(url, n_arrays=n, storage_options=so, write_chunks=False)
            finally:
                mh.configure_s3(**before)
            validate_s, report = _timed(
                lambda url=url: validate_metadata(
                    url, storage_options=so, client=client, progress=False
                ),
                repeat,
            )
            walk_s, tree = _timed(
                lambda url=url: walk_hierarchy(
                    url, storage_options=so, client=client, progress=False
                ),
                repeat,
            )
            arrays = len(tree.arrays)
            rows.append(
                {
                    "arrays": n,
                    "validate_s": validate_s,
                    "info_s": walk_s,
                    "ok": report.arrays == n and arrays == n,
                }
            )
            print(
                f"  {n:>7,d}  validate {validate_s:7.2f} s ({validate_s / n * 1000:6.2f} s/1k)"
                f"   info {walk_s:7.2f} s ({walk_s / n * 1000:6.2f} s/1k)"
                f"  {'ok' if rows[-1]['ok'] else 'WRONG RESULT'}",
                flush=True,
            )
    logn = np.log([r["arrays"] for r in rows])
    exponents = {
        op: float(np.polyfit(logn, np.log([r[f"{op}_s"] for r in rows]), 1)[0])
        for op in ("validate", "info")
    }
    print(
        f"  growth exponent k (t ~ N^k, log-log fit): validate {exponents['validate']:.2f}, "
        f"info {exponents['info']:.2f}",
        flush=True,
    )
    return {"rows": rows, "exponents": exponents}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 and 2 workers")
    parser.add_argument("--latency", default="20ms", help="S3 first-byte delay (rig)")
    parser.add_argument("--s3-servers", type=int, default=2, help="moto processes behind the rig")
    parser.add_argument("--chunks-n", type=int, default=None, help="chunks of 256 KiB to scan")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row (best is shown)")
    parser.add_argument("--json", action="store_true", help="print one JSON document at the end")
    args = parser.parse_args(argv)

    from zarr_dask_utils.testing.multihost import MultiHostCluster, namespaces_unavailable

    reason = namespaces_unavailable()
    if reason is not None:
        print(f"bench_scaleout: needs network namespaces: {reason}", file=sys.stderr)
        return 2
    counts = [1, 2] if args.quick else [1, 2, 4]
    sizes = [10, 30, 100] if args.quick else [100, 1_000, 10_000]
    n_chunks = args.chunks_n or (8 if args.quick else 128)
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="zdu-scaleout-") as work,
        MultiHostCluster(
            Path(work),
            worker_hosts=max(counts),
            workers_per_host=0,
            latency=args.latency,
            s3_servers=args.s3_servers,
        ) as mh,
    ):
        bucket = mh.make_bucket()
        print(
            f"scale-out: {n_chunks} chunks of 256 KiB ({n_chunks / 4:.0f} MiB) on S3 behind "
            f"{args.latency} per request; 1 thread per worker, one worker per host",
            flush=True,
        )
        print("  workers     deep scan            ratio     rechunk S3->S3        ratio")
        scale = scale_out(mh, bucket, n_chunks, counts, args.repeat)
        print(f"metadata growth on the {max(counts)}-worker cluster (S3 behind {args.latency}):")
        growth = metadata_growth(mh, bucket, sizes, args.repeat)
    load = os.getloadavg()[0]
    print(f"load average after: {load:.2f}", flush=True)
    ok = all(r["ok"] for r in scale) and all(r["ok"] for r in growth["rows"])
    if args.json:
        print(json.dumps({"scale_out": scale, "metadata": growth, "load": load, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the hosts are torn down
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
