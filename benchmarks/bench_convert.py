"""netCDF-4 → Zarr: ``netcdf_to_zarr`` on a LocalCluster vs xarray eager vs xarray + Dask threads.

Writes ``--files`` compressed netCDF-4 files (zlib level 4 + shuffle, float32, smooth field plus
quantised noise) holding ``--size`` bytes of data in total (the issue asks for 0.5 GB:
``--size 512MiB``), then times, each into a fresh target:

- ``ours``: ``netcdf_to_zarr`` on a ``LocalCluster`` of ``--workers`` x 1 thread processes
  (verification off: the peers do not verify either); ``ours-verified``: the same with every
  region read back and compared (the default up to 2 GiB);
- ``xarray-eager``: ``xr.open_dataset(f).load()`` per file, ``xr.concat``, ``to_zarr``;
- ``xarray-dask-threads``: ``xr.open_mfdataset(chunks={}).to_zarr()`` on Dask's threads;
- ``ideal``: (time to decode every file single-threaded + time to encode the values with the
  codec ours chose, single-threaded: blosc's own threads off) / cores.

Prints seconds, MB/s, the ratios ours / ideal (goal ≤ 1.2) and ours / xarray + Dask threads,
CPU seconds of ours (workers + client) against the ideal's (a ratio other load hardly moves),
peak worker memory of ours (``MemorySampler``), and the load average before and after.

Run:  .venv/bin/python benchmarks/bench_convert.py [--size 512MiB] [--files 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from dask.utils import format_bytes, parse_bytes


def write_inputs(directory: Path, size: int, files: int) -> list[str]:
    """``files`` netCDF-4 files of ``size`` bytes of float32 data in total, along ``time``."""
    import netCDF4

    ny, nx = 180, 360
    steps = max(1, size // (files * ny * nx * 4))
    rng = np.random.default_rng(0)
    base = np.add.outer(np.sin(np.linspace(0, 3, ny)), np.cos(np.linspace(0, 6, nx))) * 20 + 280
    paths = []
    for i in range(files):
        path = directory / f"part-{i:03d}.nc"
        with netCDF4.Dataset(path, "w") as nc:
            nc.createDimension("time", None)
            nc.createDimension("lat", ny)
            nc.createDimension("lon", nx)
            t = nc.createVariable("time", "f8", ("time",))
            t.units = "hours since 2000-01-01"
            t[:] = np.arange(i * steps, (i + 1) * steps)
            v = nc.createVariable(
                "t2m", "f4", ("time", "lat", "lon"), zlib=True, complevel=4, shuffle=True,
                chunksizes=(1, ny, nx),
            )  # fmt: skip
            for s in range(0, steps, 16):
                n = min(16, steps - s)
                noise = np.round(rng.standard_normal((n, ny, nx)) * 8) / 8
                v[s : s + n] = (base + noise).astype("f4")
        paths.append(str(path))
    return paths


def timed(func):  # type: ignore[no-untyped-def]
    """Seconds one call of *func* takes, and its result."""
    t0 = time.perf_counter()
    out = func()
    return time.perf_counter() - t0, out


def ideal_seconds(
    paths: list[str], compressor: str, cores: int
) -> tuple[float, float, float, float]:
    """(decode s, encode s, ideal s, CPU s): one-thread decode of the files + encode, / cores."""
    import netCDF4
    import numcodecs

    from zarr_dask_utils._core.compressors import compressors_for

    (codec,) = compressors_for(compressor, 2)  # numcodecs object: encode in this thread
    numcodecs.blosc.use_threads = False  # one core: blosc's own threads would use both
    decode = encode = 0.0
    cpu = time.process_time()
    for p in paths:
        with netCDF4.Dataset(p) as nc:
            var = nc["t2m"]
            var.set_auto_maskandscale(False)
            t0 = time.perf_counter()
            data = var[:]
            decode += time.perf_counter() - t0
        t0 = time.perf_counter()
        for block in np.array_split(data, max(1, data.shape[0] // 16)):
            codec.encode(np.ascontiguousarray(block))
        encode += time.perf_counter() - t0
    return decode, encode, (decode + encode) / cores, time.process_time() - cpu


def main() -> None:
    """Run the comparison and print a table and JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="128MiB", help="data bytes in the files (issue: 512MiB)")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()

    import dask
    import xarray as xr
    from distributed import Client, LocalCluster
    from distributed.diagnostics import MemorySampler

    from zarr_dask_utils import netcdf_to_zarr

    size = int(parse_bytes(args.size))
    work = Path(args.dir or tempfile.mkdtemp(prefix="zdu-bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    paths = write_inputs(work, size, args.files)
    nbytes = sum(os.path.getsize(p) for p in paths)
    results: dict[str, float] = {}

    def fresh(name: str) -> str:
        out = work / name
        shutil.rmtree(out, ignore_errors=True)
        return str(out)

    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        netcdf_to_zarr(paths[:1], fresh("warm.zarr"), client=client, progress=False)  # imports
        sampler = MemorySampler()
        workers_cpu, client_cpu = client.run(time.process_time), time.process_time()
        with sampler.sample("ours", client=client, measure="process"):
            results["ours"], report = timed(
                lambda: netcdf_to_zarr(
                    paths, fresh("ours.zarr"), client=client, progress=False, verify=False
                )
            )
        client_cpu = time.process_time() - client_cpu  # CPU seconds: robust to other load
        workers_cpu = sum(t - workers_cpu[w] for w, t in client.run(time.process_time).items())
        peak = float(sampler.to_pandas().max().iloc[0])
        results["ours-verified"], _ = timed(  # the default for jobs up to 2 GiB
            lambda: netcdf_to_zarr(
                paths, fresh("verified.zarr"), client=client, progress=False, verify=True
            )
        )
        engine_line = f"reader: {report.reader}\n  engine: {report.engine}"
        row = next(v for v in report.variables if v["path"] == "t2m")
        compressor = row["compressor"]
        layout_line = (
            f"regions: {report.regions_written} of {tuple(row['region'])} "
            f"(chunks {tuple(row['chunks'])}, netCDF chunks one step)"
        )

    with xr.set_options(use_new_combine_kwarg_defaults=True):

        def eager() -> None:
            parts = [xr.open_dataset(p).load() for p in paths]
            xr.concat(parts, dim="time").to_zarr(fresh("eager.zarr"), consolidated=False)

        results["xarray-eager"], _ = timed(eager)
        with dask.config.set(scheduler="threads"):
            results["xarray-dask-threads"], _ = timed(
                lambda: xr.open_mfdataset(paths, chunks={}).to_zarr(
                    fresh("threads.zarr"), consolidated=False
                )
            )
    decode, encode, results["ideal"], ideal_cpu = ideal_seconds(paths, compressor, args.workers)
    cpu = {"ours-workers": workers_cpu, "ours-client": client_cpu, "ideal": ideal_cpu}
    load_after = os.getloadavg()

    print(
        f"data {format_bytes(size)} in {args.files} netCDF-4 files ({format_bytes(nbytes)} "
        f"on disk); workers {args.workers}x1; load before {load_before}, after {load_after}"
    )
    for name, sec in results.items():
        print(f"  {name:22s} {sec:7.2f} s  {size / sec / 1e6:8.1f} MB/s")
    print(f"  ideal = (decode {decode:.2f} s + encode {encode:.2f} s) / {args.workers} cores")
    print(f"  {engine_line}")
    print(f"  {layout_line}")
    print(f"  ours / ideal               {results['ours'] / results['ideal']:.2f}x  (goal <= 1.2)")
    print(
        f"  CPU s: ours workers {workers_cpu:.2f} + client {client_cpu:.2f}, ideal "
        f"{ideal_cpu:.2f}: ours / ideal {(workers_cpu + client_cpu) / ideal_cpu:.2f}x"
    )
    ratio = results["ours"] / results["xarray-dask-threads"]
    print(f"  ours / xarray+dask threads {ratio:.2f}x")
    print(f"  ours / xarray eager        {results['ours'] / results['xarray-eager']:.2f}x")
    print(f"  peak worker memory (ours)  {format_bytes(int(peak))}")
    print(f"  size ratio target/source   {report.size_ratio:.3f} ({compressor})")
    ratios = {
        "ours/ideal": results["ours"] / results["ideal"],
        "ours/xarray-dask-threads": ratio,
        "ours/xarray-eager": results["ours"] / results["xarray-eager"],
    }
    print(
        json.dumps(
            {
                "seconds": results,
                "cpu": cpu,
                "ratios": ratios,
                "load": [load_before, load_after],
                "peak": peak,
                "regions": report.regions_written,
            }
        )
    )
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
