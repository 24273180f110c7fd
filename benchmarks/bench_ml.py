"""Training-data loaders over zarr: samples/s, peak memory and randomness (issue 17).

Writes ``t2m(time, y, x)`` float32 with 64 KiB samples (128 x 128) in chunks of ``--chunk``
time steps (zstd, zarr 3) on local disk and, unless ``--no-s3``, on the S3 latency rig (moto
processes behind 20 ms ± 2 ms per request), then reads batches of ``--batch`` with:

- ``naive``: a map-style dataset whose ``__getitem__`` reads ``array[i]`` (a whole chunk
  decoded per sample), torch ``RandomSampler``, no workers;
- ``xbatcher``: ``xbatcher.BatchGenerator`` over ``xarray.open_zarr`` (batches in storage
  order: it does not shuffle);
- ``chunk-aligned``: ``array[i:i + batch]`` in storage order (the chunk-aware peers' speed
  without sample shuffling);
- ``ours k=K w=W``: :func:`zarr_dask_utils.ml.to_torch_dataloader` with ``buffer_chunks=K``
  and ``W`` fork workers (chunk-aware shuffle);
- ``ours dask k=4`` (``--client``): the same with ``client=`` (a 2-worker LocalCluster).

Each row reports samples/s (first batch included: worker start-up counts), the peak PSS
growth of the process and its children over the run, and the randomness of its sample order
(:func:`~zarr_dask_utils.ml.mixing.chunk_mixing`: 1 = mixes chunks like a full shuffle,
0 = chunk by chunk).  Then the ratios against the issue's goals: ≥ 15x naive with
sample-level shuffle, ≥ 1.0x the chunk-aligned peer.  The load average is printed with the
numbers (the machine is shared).

``--modes [--step-ms N ...]``: only the mode section (``ml_modes.py``): which of no workers,
2 DataLoader workers and ``client=`` wins for a training process pinned to one core with a
simulated training step of N ms, readers on the other core.

Run: ``.venv/bin/python benchmarks/bench_ml.py [--quick] [--no-s3] [--client] [--json out]``
or ``.venv/bin/python benchmarks/bench_ml.py --modes --step-ms 6 [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import psutil
import zarr

from zarr_dask_utils.ml import to_torch_dataloader
from zarr_dask_utils.ml.mixing import chunk_mixing
from zarr_dask_utils.ml.sampler import ChunkShuffleSampler, chunk_groups

SIDE = 128  # 128 x 128 float32 = 64 KiB per sample


class PeakRSS:
    """Peak proportional memory (PSS) of this process and its children, every 20 ms."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self._now()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _now(self) -> int:
        total = 0
        for proc in (self.proc, *self.proc.children(recursive=True)):
            with contextlib.suppress(psutil.Error):  # PSS: shared pages count once in all
                total += proc.memory_full_info().pss
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._now())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def write(url: str, n: int, chunk: int, storage_options: dict[str, Any] | None) -> None:
    """The benchmark array: smooth fields with noise (zstd compresses them ~1.1-1.3x)."""
    from zarr_dask_utils import open_store

    store = open_store(url, storage_options=storage_options, read_only=False)
    root = zarr.open_group(store, mode="w")
    arr = root.create_array(
        "t2m",
        shape=(n, SIDE, SIDE),
        chunks=(chunk, SIDE, SIDE),
        dtype="f4",
        dimension_names=("time", "y", "x"),
    )
    rng = np.random.default_rng(0)
    base = np.sin(np.linspace(0, 6, SIDE))[:, None] * np.cos(np.linspace(0, 4, SIDE))[None, :]
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = base[None] * 10 + rng.normal(0, 1, (stop - start, SIDE, SIDE))
        arr[start:stop] = block.astype("f4")
    for name in ("time",):
        coord = root.create_array(
            name, shape=(n,), chunks=(n,), dtype="i8", dimension_names=("time",)
        )
        coord[:] = np.arange(n)


def timed(batches: Iterable[Any], limit: int) -> tuple[float, int]:
    """Samples per second over the first *limit* samples of *batches*."""
    start = time.perf_counter()
    seen = 0
    for batch in batches:
        seen += len(batch)
        if seen >= limit:
            break
    return seen / (time.perf_counter() - start), seen


def naive_batches(arr: zarr.Array[Any], batch: int, seed: int) -> Iterable[Any]:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    class PerSample:
        def __len__(self) -> int:
            return arr.shape[0]

        def __getitem__(self, i: int) -> Any:
            return torch.from_numpy(arr[i])

    ds = PerSample()
    sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
    return DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=0)  # type: ignore[arg-type]


def xbatcher_batches(url: str, options: dict[str, Any] | None, batch: int) -> Iterable[Any]:
    import xarray as xr
    import xbatcher

    ds = xr.open_zarr(url, storage_options=options, consolidated=False, chunks=None)
    gen = xbatcher.BatchGenerator(
        ds["t2m"], input_dims={"y": SIDE, "x": SIDE}, batch_dims={"time": batch}, preload_batch=True
    )
    return (b.values for b in gen)


def aligned_batches(arr: zarr.Array[Any], batch: int) -> Iterable[Any]:
    import torch

    return (torch.from_numpy(arr[i : i + batch]) for i in range(0, arr.shape[0], batch))


def run_case(
    name: str, make: Callable[[], Iterable[Any]], limit: int, order_score: float
) -> dict[str, Any]:
    with PeakRSS() as mem:
        rate, seen = timed(make(), limit)
    row = {
        "case": name,
        "samples_per_s": round(rate, 1),
        "samples": seen,
        "peak_mib": round(mem.growth_mib, 1),
        "randomness": order_score,
    }
    print(
        f"  {name:<22} {rate:>9.0f}/s  {seen:>6} samples  peak +{mem.growth_mib:>7.1f} MiB"
        f"  randomness {order_score:.3f}",
        flush=True,
    )
    return row


def bench_store(
    where: str, url: str, options: dict[str, Any] | None, args: argparse.Namespace, client: Any
) -> list[dict[str, Any]]:
    from zarr_dask_utils import open_store

    n, chunk, batch = args.samples, args.chunk, args.batch
    arr = zarr.open_array(open_store(url, storage_options=options), path="t2m", mode="r")
    chunk_of = np.arange(n) // chunk
    full = chunk_mixing(np.random.default_rng(0).permutation(n), chunk_of, batch).randomness
    groups = chunk_groups(n, chunk)
    print(
        f"{where}: {n} samples of 64 KiB, chunks of {chunk} ({chunk * 64 // 1024} MiB), "
        f"batch {batch}; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = [
        run_case("naive", lambda: naive_batches(arr, batch, 0), args.naive_samples, full),
        run_case("xbatcher", lambda: xbatcher_batches(url, options, batch), n, 0.0),
        run_case("chunk-aligned", lambda: aligned_batches(arr, batch), n, 0.0),
    ]
    for k in args.k:
        score = chunk_mixing(
            ChunkShuffleSampler(groups, buffer_chunks=k).epoch_order(0), chunk_of, batch
        ).randomness
        for workers in args.workers:
            rows.append(
                run_case(
                    f"ours k={k} w={workers}",
                    lambda k=k, workers=workers: to_torch_dataloader(
                        url,
                        sample_dim="time",
                        variables="t2m",
                        batch_size=batch,
                        buffer_chunks=k,
                        num_workers=workers,
                        storage_options=options,
                        multiprocessing_context="fork" if workers else None,
                    ),
                    n,
                    score,
                )
            )
    if client is not None:
        score = chunk_mixing(
            ChunkShuffleSampler(groups, buffer_chunks=4).epoch_order(0), chunk_of, batch
        ).randomness
        rows.append(
            run_case(
                "ours dask k=4",
                lambda: to_torch_dataloader(
                    url,
                    sample_dim="time",
                    variables="t2m",
                    batch_size=batch,
                    buffer_chunks=4,
                    storage_options=options,
                    client=client,
                    max_in_flight=8,
                ),
                n,
                score,
            )
        )
    for row in rows:
        row["where"] = where
    ratios(where, rows)
    return rows


def ratios(where: str, rows: list[dict[str, Any]]) -> None:
    by = {r["case"]: r["samples_per_s"] for r in rows}
    ours = {c: v for c, v in by.items() if c.startswith("ours")}
    best = max(ours, key=ours.__getitem__)
    print(
        f"  {where} goals: best of ours ({best}) = {by[best] / by['naive']:.1f}x naive "
        f"(goal >= 15x), {by[best] / by['chunk-aligned']:.2f}x chunk-aligned (goal >= 1.0x)"
    )
    for case in sorted(ours):
        print(
            f"    {case:<20} {by[case] / by['naive']:>6.1f}x naive  "
            f"{by[case] / by['chunk-aligned']:>5.2f}x chunk-aligned"
        )


def modes_main(args: argparse.Namespace) -> None:
    """``--modes``: pin, then the mode section on local disk (and the S3 rig unless --no-s3)."""
    import ml_modes

    cores = ml_modes.split_cores()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        stores: list[tuple[str, str, dict[str, Any] | None, int]] = []
        if "local" in args.mode_stores:
            stores.append(("local", os.path.join(tmp, "bench.zarr"), None, args.samples))
            write(stores[0][1], args.samples, args.chunk, None)
        if (
            "s3" in args.mode_stores and not args.no_s3
        ):  # the rig (the "remote" store) keeps every core: started unpinned
            from s3server import S3Rig

            rig = stack.enter_context(S3Rig(latency=0.020, jitter=0.002, servers=2))
            n = args.s3_samples or max(args.chunk, args.samples // 2)
            url = f"s3://{rig.make_bucket()}/bench.zarr"
            with rig.unthrottled():
                write(url, n, args.chunk, rig.storage_options)
            stores.append(("s3 (rig, 20 ms)", url, rig.storage_options, n))
        ml_modes.pin(cores[0])  # every thread of this process, before any reader starts
        for where, url, options, n in stores:
            print(
                f"modes, {where}: {n} samples of 64 KiB, chunks of {args.chunk}, batch "
                f"{args.batch}, k=4, {args.mode_epochs} epoch(s) per run",
                flush=True,
            )
            found = ml_modes.run_modes(
                url, options, args.batch, args.step_ms, args.repeats, args.mode_epochs, cores
            )
            rows += [{"where": where, **row} for row in found]
    print(f"load average at end: {os.getloadavg()}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"modes": rows, "load_end": os.getloadavg()}, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=64, help="time steps per chunk")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--naive-samples", type=int, default=320, help="naive is slow: fewer")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--quick", action="store_true", help="512 samples, 160 naive")
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--s3-samples", type=int, default=None, help="default: --samples / 2")
    parser.add_argument("--s3-naive-samples", type=int, default=64, help="a 4 MiB GET each")
    parser.add_argument("--client", action="store_true", help="also the client= mode")
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument(
        "--modes",
        action="store_true",
        help="only the mode section (ml_modes.py): training process pinned to one core, readers "
        "on the others; no workers / 2 DataLoader workers / client=, local store, k=4",
    )
    parser.add_argument(
        "--step-ms", type=float, nargs="+", default=[6.0], help="simulated training step(s), ms"
    )
    parser.add_argument("--repeats", type=int, default=5, help="--modes: interleaved repeats")
    parser.add_argument("--mode-epochs", type=int, default=2, help="--modes: epochs per run")
    parser.add_argument(
        "--mode-stores", nargs="+", default=["local", "s3"], choices=["local", "s3"]
    )
    args = parser.parse_args()
    if args.modes:
        modes_main(args)
        return
    if args.quick:
        args.samples, args.naive_samples = 512, 160
    print(f"load average at start: {os.getloadavg()}", flush=True)
    client = None
    if args.client:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        )
        client = Client(cluster)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = os.path.join(tmp, "bench.zarr")
        write(url, args.samples, args.chunk, None)
        rows += bench_store("local", url, None, args, client)
    if not args.no_s3:
        from s3server import S3Rig

        full = args.samples
        args.samples = args.s3_samples or max(args.chunk, full // 2)
        args.naive_samples = args.s3_naive_samples
        with S3Rig(latency=0.020, jitter=0.002, servers=2) as rig:
            bucket = rig.make_bucket()
            url = f"s3://{bucket}/bench.zarr"
            with rig.unthrottled():
                write(url, args.samples, args.chunk, rig.storage_options)
            rows += bench_store("s3 (rig, 20 ms)", url, rig.storage_options, args, client)
    print(f"load average at end: {os.getloadavg()}", flush=True)
    if client is not None:
        client.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "load_end": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
