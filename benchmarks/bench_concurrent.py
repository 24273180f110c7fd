"""Benchmark: the cost of safe concurrent writes, against unprotected writes and hand-made locks.

On a ``LocalCluster(n_workers=--workers, threads_per_worker=1, processes=True)`` and a local
zarr array of ``--writes`` chunks of ``--chunk`` x ``--chunk`` float32, each scenario submits
``--writes`` write tasks at once (one region each) and is timed ``--repeat`` times (median):

aligned (each task writes exactly one chunk: no read-modify-write)
  a. plain ``array[region] = data``
  b. ``synchronized_write`` (plans the keys, sees the region is aligned, takes no lock)
  c. ``SafeZarrStore``, no ``writing()`` block (every ``set`` takes the key's cluster lock)

unaligned (each task writes a region shifted by half a chunk: 2 or 4 chunks partly)
  d. plain ``array[region] = data`` (UNSAFE: loses updates; the fastest possible)
  e. hand-made peer: ``distributed.MultiLock`` over the touched chunk keys, then plain write
  f. ``synchronized_write`` (per-key leases in sorted order + fenced writes)
  g. ``SafeZarrStore`` with ``writing(keys)`` (the same locks, through the store wrapper)

It prints a table, the ratios to the plain write of the same shape, and checks that the
protected unaligned scenarios lost no update (exit 1 otherwise).

Run ``python benchmarks/bench_concurrent.py --help``; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zarr


def _regions(n: int, chunk: int, cols: int, shift: int) -> list[tuple[slice, slice]]:
    """*n* regions of chunk x chunk on a grid of *cols* chunks per row, shifted by *shift*."""
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        out.append((slice(r * chunk, (r + 1) * chunk), slice(c * chunk, (c + 1) * chunk)))
    if shift:
        # each task writes a chunk-sized region straddling two columns of chunks
        out = [
            (rs, slice(cs.start + shift, cs.stop + shift))
            for rs, cs in out
            if cs.stop + shift <= cols * chunk
        ]
    return out


def _value(region: tuple[slice, slice]) -> float:
    return float(region[0].start * 100_003 + region[1].start + 1)


def task_plain(array: Any, region: Any) -> int:
    """Unprotected write."""
    rows, cols = (s.stop - s.start for s in region)
    array[region] = np.full((rows, cols), _value(region), "f4")
    return 0


def task_sync(array: Any, region: Any) -> int:
    """synchronized_write."""
    from zarr_dask_utils import synchronized_write

    rows, cols = (s.stop - s.start for s in region)
    return len(
        synchronized_write(array, region, np.full((rows, cols), _value(region), "f4")).locked
    )


def task_multilock(array: Any, region: Any) -> int:
    """Peer: distributed.MultiLock over the touched chunk keys (no lease), then plain write."""
    from distributed import MultiLock

    from zarr_dask_utils.concurrent.write import plan_array_region

    plan = plan_array_region(array, region)
    with MultiLock([f"bench/{k}" for k in plan.partial_keys]):
        task_plain(array, region)
    return len(plan.partial_keys)


def task_safe_store(array: Any, region: Any) -> int:
    """SafeZarrStore: writing(keys) around a plain write of the wrapped array."""
    from zarr_dask_utils import SafeZarrStore
    from zarr_dask_utils.concurrent.write import plan_array_region

    safe = SafeZarrStore(array.store_path.store)
    target = zarr.open_array(safe, path=array.path, mode="r+")
    plan = plan_array_region(array, region)
    if plan.aligned:  # whole chunks: plain sets, each serialised by the key's cluster lock
        task_plain(target, region)
    else:
        with safe.writing(plan.partial_keys):
            task_plain(target, region)
    return len(plan.partial_keys)


def _time(
    client: Any, fn: Callable[..., int], array: Any, regions: list[Any], repeat: int
) -> float:
    runs = []
    for _ in range(repeat):
        array[:] = 0
        start = time.perf_counter()
        futures = [client.submit(fn, array, r, pure=False) for r in regions]
        client.gather(futures)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _lost(array: Any, regions: list[Any]) -> int:
    """Regions whose value was overwritten by a stale read-modify-write (order-insensitive).

    Neighbouring unaligned regions overlap only in a chunk, not in elements, so every element
    of each region must hold that region's value.
    """
    data = array[:]
    return sum(not np.all(data[r] == _value(r)) for r in regions)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--writes", type=int, default=96, help="write tasks per scenario")
    parser.add_argument("--chunk", type=int, default=256, help="chunk edge (float32 elements)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    cols = 8
    rows = -(-args.writes // cols)
    shape = (rows * args.chunk, cols * args.chunk)
    aligned = _regions(args.writes, args.chunk, cols, 0)
    # half-chunk shift: every region touches 2 chunks partly, most chunks are shared by two
    unaligned = _regions(args.writes, args.chunk, cols, args.chunk // 2)
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        array = zarr.create_array(
            f"{tmp}/bench.zarr",
            shape=shape,
            chunks=(args.chunk, args.chunk),
            dtype="f4",
            fill_value=0,
        )
        client.submit(task_sync, array, aligned[0]).result()  # warm imports on the workers
        client.run(lambda: __import__("zarr_dask_utils"))
        rows_out = []
        for label, fn, regions in (
            ("a. aligned: plain write", task_plain, aligned),
            ("b. aligned: synchronized_write", task_sync, aligned),
            ("c. aligned: SafeZarrStore", task_safe_store, aligned),
            ("d. unaligned: plain write (UNSAFE)", task_plain, unaligned),
            ("e. unaligned: MultiLock + plain (peer)", task_multilock, unaligned),
            ("f. unaligned: synchronized_write", task_sync, unaligned),
            ("g. unaligned: SafeZarrStore", task_safe_store, unaligned),
        ):
            seconds = _time(client, fn, array, regions, args.repeat)
            lost = _lost(array, regions)
            rows_out.append((label, seconds, lost, len(regions)))

    base = {"aligned": rows_out[0][1], "unaligned": rows_out[3][1]}
    print(
        f"{args.writes} writes of {args.chunk}x{args.chunk} float32 on "
        f"{args.workers} worker processes, median of {args.repeat}\n"
    )
    print(f"{'scenario':42s} {'seconds':>8s} {'vs plain':>9s} {'lost regions':>13s}")
    for label, seconds, lost, n in rows_out:
        kind = "aligned" if "aligned:" in label and "unaligned" not in label else "unaligned"
        print(f"{label:42s} {seconds:8.3f} {seconds / base[kind]:8.2f}x {lost:>6d} of {n}")
    failed = any(lost for label, _, lost, _ in rows_out if "UNSAFE" not in label)
    if failed:
        print("\nERROR: a protected scenario lost updates", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
