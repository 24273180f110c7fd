"""Repeated reads of a zarr array on the S3 latency rig: caches side by side (issue 15, part 3).

On an :class:`~zarr_dask_utils.testing.s3rig.S3Rig` (moto behind 20 ms ± 2 ms per request) it
writes one float32 array (``--rows`` x 1024, chunks 256 x 256: 256 KiB each, compressed by
zarr's default zstd, so a bit smaller) and reads it with two access patterns:

- ``twice``: the whole array, twice (the same chunks again);
- ``window``: a sliding window of 4 chunk rows moved one chunk row at a time (each chunk is
  read up to 4 times, by overlapping requests).

through each of these stores:

- ``no cache``: zarr's ``FsspecStore`` on s3fs;
- ``smart memory``: :func:`smart_caching` (memory LRU, 1 GiB);
- ``smart disk``: :func:`smart_caching` with ``cache_size=0`` and a disk tier (every hit is a
  file read);
- ``smart memory mc=1``: ``smart memory`` with s3fs ``max_concurrency=1``, which drops the HEAD
  s3fs sends before each whole-object GET (see ``optimize_s3_access``);
- ``zarr CacheStore``: ``zarr.experimental.cache_store.CacheStore`` (zarr 3.1.6) with a
  ``MemoryStore`` as cache and ``max_size`` 1 GiB;
- ``fsspec simplecache``: ``simplecache::s3://…`` (whole files copied to a local folder);
- ``fsspec blockcache``: ``blockcache::s3://…`` (blocks of files cached in a local folder).

Every (store, pattern) runs in a fresh Python process, so its peak RSS (``ru_maxrss``, mostly
the imports and one read's arrays) is its own, and "RSS held" is what the reads left resident
(the in-memory caches); the time is measured inside that process around the reads (opening
the array included).
The rig counts the requests and body bytes it served to that process.  Each row checks its
result against the array's checksum.  The load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from s3server import S3Rig

CHUNK = 256
COLS = 1024
VARIANTS = (
    "no cache",
    "smart memory",
    "smart disk",
    "smart memory mc=1",
    "zarr CacheStore",
    "fsspec simplecache",
    "fsspec blockcache",
)
PATTERNS = ("twice", "window")


def build(rig: S3Rig, url: str, rows: int) -> float:
    """Write the array (unthrottled); return its checksum."""
    import zarr

    data = np.random.default_rng(0).random((rows, COLS), dtype="f4")
    with rig.unthrottled():
        store = zarr.storage.FsspecStore.from_url(url, storage_options=rig.storage_options)
        arr = zarr.create_array(store, shape=data.shape, chunks=(CHUNK, CHUNK), dtype="f4")
        arr[:] = data
    return float(data.sum(dtype="f8"))


# --- the child process: one store, one pattern -------------------------------------------------


def open_variant(variant: str, url: str, options: dict[str, Any], tmp: str) -> Any:
    """The zarr store for *variant* (see the module docstring)."""
    import zarr

    from zarr_dask_utils import smart_caching

    if variant == "no cache":
        return zarr.storage.FsspecStore.from_url(url, storage_options=options, read_only=True)
    if variant == "smart memory":
        return smart_caching(url, storage_options=options, cache_size="1GiB")
    if variant == "smart memory mc=1":  # s3fs without its HEAD before every GET
        tuned = {**options, "max_concurrency": 1}
        return smart_caching(url, storage_options=tuned, cache_size="1GiB")
    if variant == "smart disk":
        return smart_caching(
            url, storage_options=options, cache_size=0, disk_cache=tmp, disk_cache_size="1GiB"
        )
    if variant == "zarr CacheStore":
        from zarr.experimental.cache_store import CacheStore

        inner = zarr.storage.FsspecStore.from_url(url, storage_options=options, read_only=True)
        return CacheStore(inner, cache_store=zarr.storage.MemoryStore(), max_size=2**30)
    protocol = variant.split()[-1]  # simplecache / blockcache
    chained = {"s3": options, protocol: {"cache_storage": tmp}}
    return zarr.storage.FsspecStore.from_url(
        f"{protocol}::{url}", storage_options=chained, read_only=True
    )


def read(arr: Any, pattern: str) -> float:
    """Run *pattern* on *arr*; return the sum of everything read (float64)."""
    total = 0.0
    rows = arr.shape[0]
    if pattern == "twice":
        for _ in range(2):
            total += float(arr[:].sum(dtype="f8"))
        return total
    for start in range(0, rows - 4 * CHUNK + 1, CHUNK):
        total += float(arr[start : start + 4 * CHUNK].sum(dtype="f8"))
    return total


def child(variant: str, pattern: str, url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Open, read, measure: the numbers of one row."""
    import zarr

    with tempfile.TemporaryDirectory(prefix="zdu-bench-cache-") as tmp:
        store = open_variant(variant, url, options, tmp)
        before = _rss()
        start = time.perf_counter()
        arr = zarr.open_array(store, mode="r")
        total = read(arr, pattern)
        seconds = time.perf_counter() - start
        held = _rss() - before  # what the reads left behind: the cache, in memory
        stats = store.stats().to_dict() if hasattr(store, "stats") else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"seconds": seconds, "total": total, "peak_rss": peak, "rss_held": held, "cache": stats}


def _rss() -> int:
    """Resident set size of this process now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- the parent: rig, rows, table ----------------------------------------------------------------


def run_row(rig: S3Rig, variant: str, pattern: str, url: str) -> dict[str, Any]:
    rig.reset_stats()
    args = [sys.executable, __file__, "--child", variant, pattern, url]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    payload = json.dumps(rig.storage_options)
    done = subprocess.run(
        args, input=payload, capture_output=True, text=True, env=env, check=False, timeout=900
    )
    if done.returncode:
        raise RuntimeError(f"{variant} / {pattern} failed:\n{done.stderr}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    stats = rig.stats()
    row.update(variant=variant, pattern=pattern, requests=stats.total, bytes=stats.bytes_served)
    row["gets"] = stats["GET"]
    return row


def expected_total(pattern: str, checksum: float, rows: int) -> float:
    if pattern == "twice":
        return 2 * checksum
    return float("nan")  # checked against the no-cache row instead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4096, help="array rows (multiple of 256)")
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--bandwidth", default=None, help="per-connection rate, e.g. 100MB")
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    load = os.getloadavg()
    with S3Rig(
        latency=args.latency, jitter=0.002, bandwidth=args.bandwidth, servers=args.servers
    ) as rig:
        url = f"s3://{rig.make_bucket()}/bench.zarr"
        checksum = build(rig, url, args.rows)
        rows = []
        for pattern in PATTERNS:
            for variant in VARIANTS:
                row = run_row(rig, variant, pattern, url)
                rows.append(row)
                print(f"  {pattern:6} {variant:20} {row['seconds']:7.2f} s", flush=True)
    load_after = os.getloadavg()

    chunks = (args.rows // CHUNK) * (COLS // CHUNK)
    print(
        f"\nS3 rig: {args.latency * 1000:.0f} ms ± 2 ms per request, bandwidth "
        f"{args.bandwidth or 'unlimited'}, {args.servers} servers; array {args.rows} x {COLS} "
        f"f4, {chunks} chunks of 256 KiB"
    )
    print(f"load average before {load[0]:.2f} / after {load_after[0]:.2f} (2 cores, shared)\n")
    header = (
        f"{'pattern':7} {'store':20} {'time s':>7} {'x no-cache':>10} {'requests':>8} "
        f"{'GETs':>5} {'MB fetched':>10} {'peak RSS MB':>11} {'RSS held MB':>11} "
        f"{'hit ratio':>9}  ok"
    )
    print(header)
    print("-" * len(header))
    for pattern in PATTERNS:
        base = next(r for r in rows if r["pattern"] == pattern and r["variant"] == "no cache")
        want = expected_total(pattern, checksum, args.rows)
        if want != want:  # NaN: compare with the uncached read
            want = base["total"]
        for r in (r for r in rows if r["pattern"] == pattern):
            ok = abs(r["total"] - want) <= 1e-6 * abs(want)
            ratio = base["seconds"] / r["seconds"]
            hit = f"{r['cache']['hit_ratio']:.0%}" if r["cache"] else "-"
            print(
                f"{pattern:7} {r['variant']:20} {r['seconds']:7.2f} {ratio:9.1f}x "
                f"{r['requests']:8d} {r['gets']:5d} {r['bytes'] / 1e6:10.1f} "
                f"{r['peak_rss'] / 1e6:11.0f} {r['rss_held'] / 1e6:11.1f} {hit:>9}  "
                f"{'yes' if ok else 'NO'}"
            )
    if args.json:
        args.json.write_text(json.dumps({"load": [load, load_after], "rows": rows}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, variant, pattern, url = sys.argv
        result = child(variant, pattern, url, json.loads(sys.stdin.read()))
        print(json.dumps(result))
    else:
        main()
