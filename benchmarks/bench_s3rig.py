"""Copying from S3 to local disk on the latency rig: the clients side by side (issue 15, part 0).

Builds, on an :class:`~zarr_dask_utils.testing.s3rig.S3Rig` (moto processes behind 20 ms ± 2 ms
per request, optional per-connection rate limit), a store of two uncompressed arrays:
``small`` (``--small`` chunks of 57 KiB) and ``large`` (``--large`` chunks of 14 MB), then
copies every object of each array to local disk with:

- ``s3fs cat_file``: one object after another (a fresh s3fs: HEAD + GET per object);
- ``s3fs get``: ``fs.get(prefix, dir, recursive=True)`` (one listing, then batched GETs);
- ``zarr copy``: ``dst[:] = src[:]`` into a local zarr array (zarr's own concurrency);
- ``zarr copy, mc=1``: the same with s3fs ``max_concurrency=1`` (no HEAD before GET);
- ``s3fs async N``: one listing, then ``_cat_file`` with N requests in flight (``mc=1``);
- ``obstore N``: one listing, then ``get_async`` with N requests in flight (if installed).

Each row checks the copy byte for byte against the source and shows the requests the rig
served (GET/HEAD/LIST), objects/s and MB/s, and the ratio to the sequential ``cat_file`` row.
The load average is printed with the numbers (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from s3server import S3Rig

SMALL_CHUNK = 57 * 1024 // 8  # float64 elements: 57 KiB
LARGE_CHUNK = 14_000_000 // 8  # 14 MB


def build(rig: S3Rig, bucket: str, n_small: int, n_large: int) -> dict[str, str]:
    """Write both arrays (unthrottled); return the md5 of every object by key."""
    import zarr

    url = f"s3://{bucket}/store.zarr"
    expected: dict[str, str] = {}
    rng = np.random.default_rng(0)
    with rig.unthrottled():
        store = zarr.storage.FsspecStore.from_url(url, storage_options=rig.storage_options)
        for name, n, chunk in (("small", n_small, SMALL_CHUNK), ("large", n_large, LARGE_CHUNK)):
            arr = zarr.create_array(
                store, name=name, shape=(n * chunk,), chunks=(chunk,), dtype="f8", compressors=None
            )
            for start in range(0, n, 50):  # bounded memory
                stop = min(n, start + 50)
                block = rng.random((stop - start) * chunk)
                arr[start * chunk : stop * chunk] = block
                for i in range(start, stop):
                    data = block[(i - start) * chunk : (i - start + 1) * chunk].tobytes()
                    expected[f"store.zarr/{name}/c/{i}"] = hashlib.md5(data).hexdigest()
        fs = _fs(rig)
        for name in ("small", "large"):
            key = f"store.zarr/{name}/zarr.json"
            expected[key] = hashlib.md5(fs.cat_file(f"{bucket}/{key}")).hexdigest()
    return expected


def _fs(rig: S3Rig, **kwargs: Any) -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **rig.storage_options, **kwargs)


# --- the clients -------------------------------------------------------------------------------


def seq_cat(rig: S3Rig, bucket: str, keys: list[str], out: Path) -> None:
    fs = _fs(rig)
    for key in keys:
        _write(out, key, fs.cat_file(f"{bucket}/{key}"))


def fs_get(rig: S3Rig, bucket: str, keys: list[str], out: Path) -> None:
    prefix = _array_prefix(keys)
    _fs(rig).get(f"{bucket}/{prefix}/", str(out / prefix) + "/", recursive=True)


def zarr_copy(rig: S3Rig, bucket: str, keys: list[str], out: Path, **s3fs_kwargs: Any) -> None:
    import zarr

    name = keys[0].split("/")[1]
    options = {**rig.storage_options, "skip_instance_cache": True, **s3fs_kwargs}
    src = zarr.open_array(
        zarr.storage.FsspecStore.from_url(
            f"s3://{bucket}/store.zarr/{name}", storage_options=options, read_only=True
        ),
        mode="r",
    )
    dst = zarr.create_array(
        zarr.storage.LocalStore(out / "store.zarr" / name),
        shape=src.shape,
        chunks=src.chunks,
        dtype=src.dtype,
        compressors=None,
    )
    dst[:] = src[:]


async def _in_flight(keys: list[str], n: int, get: Callable[[str], Any], out: Path) -> None:
    sem = asyncio.Semaphore(n)

    async def one(key: str) -> None:
        async with sem:
            data = await get(key)
        _write(out, key, data)

    await asyncio.gather(*(one(k) for k in keys))


def s3fs_async(rig: S3Rig, bucket: str, keys: list[str], out: Path, n: int) -> None:
    async def run() -> None:
        fs = _fs(rig, asynchronous=True, max_concurrency=1)
        session = await fs.set_session()
        prefix = _array_prefix(keys)
        listed = [p.split("/", 1)[1] for p in await fs._find(f"{bucket}/{prefix}")]

        async def get(key: str) -> bytes:
            return bytes(await fs._cat_file(f"{bucket}/{key}"))

        await _in_flight(listed, n, get, out)
        await session.close()

    asyncio.run(run())


def obstore_get(rig: S3Rig, bucket: str, keys: list[str], out: Path, n: int) -> None:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=rig.endpoint_url,
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
        client_options={"allow_http": True},
    )

    async def run() -> None:
        prefix = _array_prefix(keys)
        listed = [m["path"] for batch in obstore.list(store, prefix=prefix) for m in batch]

        async def get(key: str) -> bytes:
            return bytes(await (await obstore.get_async(store, key)).bytes_async())

        await _in_flight(listed, n, get, out)

    asyncio.run(run())


def _array_prefix(keys: list[str]) -> str:
    return "/".join(keys[0].split("/")[:2])  # store.zarr/<array>


def _write(out: Path, key: str, data: bytes) -> None:
    path = out / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --- one row -------------------------------------------------------------------------------------


def verify(
    out: Path, keys: list[str], expected: dict[str, str], zarr_layout: bool
) -> tuple[bool, int]:
    """Did every object arrive with the right bytes, and how many bytes arrived.

    zarr rows write their own ``zarr.json``: only their chunks are compared.
    """
    ok, nbytes = True, 0
    for key in keys:
        path = out / key
        if not path.is_file():
            ok = False
            continue
        data = path.read_bytes()
        nbytes += len(data)
        if not (zarr_layout and key.endswith("zarr.json")):
            ok = ok and hashlib.md5(data).hexdigest() == expected[key]
    return ok, nbytes


def run_row(
    rig: S3Rig,
    label: str,
    fn: Callable[[Path], None],
    keys: list[str],
    expected: dict[str, str],
    zarr_layout: bool = False,
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-s3rig-"))
    try:
        rig.reset_stats()
        load = os.getloadavg()[0]
        start = time.perf_counter()
        fn(tmp)
        seconds = time.perf_counter() - start
        stats = rig.stats()
        ok, nbytes = verify(tmp, keys, expected, zarr_layout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "case": label,
        "objects": len(keys),
        "seconds": round(seconds, 3),
        "objects_per_s": round(len(keys) / seconds, 1),
        "mb_per_s": round(nbytes / seconds / 1e6, 1),
        "requests": {k: stats[k] for k in ("GET", "HEAD", "LIST")},
        "identical": ok,
        "load1": round(load, 2),
    }


def cases(args: argparse.Namespace) -> list[tuple[str, Callable[..., None], dict[str, Any], bool]]:
    rows: list[tuple[str, Callable[..., None], dict[str, Any], bool]] = [
        ("s3fs cat_file, sequential", seq_cat, {}, False),
        ("s3fs get(recursive=True)", fs_get, {}, False),
        ("zarr dst[:] = src[:]", zarr_copy, {}, True),
        ("zarr copy, s3fs mc=1", zarr_copy, {"max_concurrency": 1}, True),
    ]
    for n in args.in_flight:
        rows.append((f"s3fs async, {n} in flight", s3fs_async, {"n": n}, False))
    try:
        import obstore  # noqa: F401

        for n in args.in_flight:
            rows.append((f"obstore, {n} in flight", obstore_get, {"n": n}, False))
    except ImportError:
        print("obstore not installed: its rows are skipped (pip install obstore)")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000, help="57 KiB chunks")
    parser.add_argument("--large", type=int, default=40, help="14 MB chunks")
    parser.add_argument("--quick", action="store_true", help="300 small and 6 large chunks")
    parser.add_argument("--servers", type=int, default=4, help="moto processes")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--jitter-ms", type=float, default=2.0)
    parser.add_argument("--bandwidth", default=None, help="per connection, e.g. 100MB")
    parser.add_argument(
        "--in-flight", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64]
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.small, args.large = 300, 6
    rig = S3Rig(
        latency=args.latency_ms / 1000,
        jitter=args.jitter_ms / 1000,
        bandwidth=args.bandwidth,
        servers=args.servers,
    )
    results: dict[str, list[dict[str, Any]]] = {}
    with rig:
        bucket = rig.make_bucket("zdu-bench-rig")
        expected = build(rig, bucket, args.small, args.large)
        for name in ("small", "large"):
            keys = sorted(k for k in expected if k.startswith(f"store.zarr/{name}/"))
            results[name] = [
                run_row(
                    rig,
                    label,
                    lambda out, f=fn, kw=kw, k=keys: f(rig, bucket, k, out, **kw),
                    keys,
                    expected,
                    zarr_layout,
                )
                for label, fn, kw, zarr_layout in cases(args)
            ]
    settings = {
        "servers": args.servers,
        "latency_ms": args.latency_ms,
        "jitter_ms": args.jitter_ms,
        "bandwidth": args.bandwidth,
        "small": args.small + 1,
        "large": args.large + 1,
    }
    if args.json:
        print(json.dumps({"settings": settings, "results": results}, indent=2))
    else:
        print_table(settings, results)
    ok = all(r["identical"] for rows in results.values() for r in rows)
    return 0 if ok else 1


def print_table(settings: dict[str, Any], results: dict[str, list[dict[str, Any]]]) -> None:
    print(f"rig: {settings}")
    for name, rows in results.items():
        base = rows[0]
        unit = "objects_per_s" if name == "small" else "mb_per_s"
        print(f"\n{name}: {rows[0]['objects']} objects")
        print(
            f"{'case':30} {'s':>7} {'obj/s':>8} {'MB/s':>7} {'GET':>5} {'HEAD':>5} {'LIST':>5} "
            f"{'x seq':>6} {'same':>5} {'load':>5}"
        )
        for r in rows:
            q = r["requests"]
            print(
                f"{r['case']:30} {r['seconds']:7.2f} {r['objects_per_s']:8.1f} "
                f"{r['mb_per_s']:7.1f} "
                f"{q['GET']:5d} {q['HEAD']:5d} {q['LIST']:5d} {r[unit] / base[unit]:6.2f} "
                f"{'yes' if r['identical'] else 'NO':>5} {r['load1']:5.2f}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
