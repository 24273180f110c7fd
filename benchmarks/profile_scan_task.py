"""Per-step cost of one deep-scan task inside a Dask worker (issue 13): where a chunk's µs go.

Writes a 1-D float32 blosc-zstd store per chunk size (64 MiB each), starts
``LocalCluster(2x1)`` and runs, in ONE worker task, every step of
:func:`~zarr_dask_utils.integrity.scan_tasks.scan_batch_task` on its own over all the chunks
(min of ``--repeat`` runs, interleaved; wall and this thread's CPU time, which
other processes' load inflates less): building the keys, reading the files
(``stream_objects``), decoding pre-read bytes with and without
:func:`~zarr_dask_utils._core.decoding.scratch.keep_scratch_memory`, the bookkeeping, and the
whole task with and without it (and with neither it nor ``heap_allocations``)::

    python benchmarks/profile_scan_task.py                    # 64 KiB and 256 KiB chunks
    python benchmarks/profile_scan_task.py --chunks 64KiB,1MiB --repeat 9
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from dask.utils import format_bytes, parse_bytes
from distributed import Client, LocalCluster

sys.path.insert(0, str(Path(__file__).parent))
from bench_local_speed import BLOSC, make_data


def steps(path: str, repeat: int) -> dict[str, tuple[float, float]]:
    """Worker side: µs per chunk of each step, wall and thread CPU time (min of *repeat*)."""
    import zarr_dask_utils.integrity.scan_tasks as st
    from zarr_dask_utils._core.decoding.direct_decoder import DirectDecoder, direct_chain
    from zarr_dask_utils._core.decoding.pipeline_decoder import DecodeResult, grid_of, open_array
    from zarr_dask_utils._core.decoding.scratch import keep_scratch_memory
    from zarr_dask_utils._core.storage.heap import heap_allocations
    from zarr_dask_utils._core.storage.locations import resolve_location
    from zarr_dask_utils._core.storage.objectstream import StreamSettings, stream_objects

    loc = resolve_location(path)
    store = loc.open_store()
    array = open_array(store, "", "", None)
    grid, chain = grid_of(array, ""), direct_chain(array)
    assert chain is not None
    n = grid.nchunks
    keys = [grid.key(grid.coords(i)) for i in range(n)]
    blobs = [bytes(v) for v in stream_objects(store, keys)]  # type: ignore[arg-type]
    settings = StreamSettings.from_config()
    heap = settings.heap_threshold or 0
    work = (("", array.metadata.zarr_format, range(n)),)
    original = st.keep_scratch_memory

    def decode(keep: bool) -> None:
        decoder = DirectDecoder(chain)
        with heap_allocations(heap), keep_scratch_memory(2 * heap if keep else None):
            for blob in blobs:
                decoder.decode(memoryview(blob))

    def decompress_only() -> None:  # the decode limit's loop: numcodecs alone, no checks
        from numcodecs import blosc

        out = np.empty(chain.nbytes, dtype=np.uint8)
        with heap_allocations(heap), keep_scratch_memory(2 * heap):
            for blob in blobs:
                blosc.decompress(blob, out)

    def bookkeeping() -> None:
        result = DecodeResult()
        for blob in blobs:
            result.raw_bytes += len(blob)
            result.decoded += 1
            result.decoded_bytes += chain.nbytes

    def task(keep: bool, heap_on: bool = True) -> None:
        st.keep_scratch_memory = original if keep else lambda limit: contextlib.nullcontext(False)
        s = settings if heap_on else dataclasses.replace(settings, heap_threshold=None)
        try:
            st.scan_batch_task(loc, work, False, s, 1, True)
        finally:
            st.keep_scratch_memory = original

    cases: dict[str, Callable[[], Any]] = {
        "keys": lambda: [grid.key(grid.coords(i)) for i in range(n)],
        "read (stream_objects)": lambda: sum(map(len, stream_objects(store, keys))),  # type: ignore[arg-type]
        "decode, trim at 64 KiB (before)": lambda: decode(False),
        "decode, scratch kept (after)": lambda: decode(True),
        "blosc.decompress only, scratch kept": decompress_only,
        "bookkeeping": bookkeeping,
        "whole task, neither": lambda: task(False, heap_on=False),
        "whole task, heap only (before)": lambda: task(False),
        "whole task, scratch kept (after)": lambda: task(True),
    }
    best = dict.fromkeys(cases, float("inf"))
    cpu = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for name, fn in cases.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn()
            cpu[name] = min(cpu[name], time.thread_time() - start_cpu)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: (1e6 * best[name] / n, 1e6 * cpu[name] / n) for name in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", default="64KiB,256KiB")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zdu-scan-steps-"))
    try:
        flat = np.concatenate([make_data((64, 256, 256), "compressible").reshape(-1)] * 4)
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            Client(cluster) as client,
        ):
            worker = next(iter(client.scheduler_info()["workers"]))
            for cb in (parse_bytes(c) for c in args.chunks.split(",")):
                path = str(work / f"s-{cb}.zarr")
                zarr.create_array(
                    path, shape=flat.shape, chunks=(cb // 4,), dtype="f4", compressors=BLOSC
                )[:] = flat
                load = os.getloadavg()[0]
                fut = client.submit(steps, path, args.repeat, workers=[worker], pure=False)
                print(f"{format_bytes(cb)} chunks x {flat.nbytes // cb}, load {load:.1f}:")
                for name, (us, cpu) in fut.result().items():
                    print(f"  {name:34s} {us:8.1f} us/chunk wall {cpu:8.1f} us/chunk CPU")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
