"""List a store with the size of every object, in one pass where the backend allows it.

Local directories are walked with ``os.scandir`` (sizes come with the listing), fsspec
stores (S3, GCS, …) use one recursive ``find(detail=True)``, and any other zarr store falls
back to its key listing plus concurrent ``getsize`` calls.
"""

from __future__ import annotations

import os
from pathlib import Path

from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from zarr_dask_utils._core.locations import Location
from zarr_dask_utils._core.storeio import concurrent_map, list_keys, storage_errors

__all__ = ["list_sizes", "list_sizes_task"]


def _walk(root: Path, base: Path, out: dict[str, int]) -> None:
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _walk(Path(entry.path), base, out)
            elif entry.is_file():
                out[Path(entry.path).relative_to(base).as_posix()] = entry.stat().st_size


def list_sizes(store: Store, prefix: str = "", *, concurrency: int = 64) -> dict[str, int]:
    """Every key under *prefix* with its size in bytes, sorted by key.

    Parameters
    ----------
    store
        Any zarr store.
    prefix
        Node path to list below (``""``: the whole store); keys stay relative to the store.
    concurrency
        ``getsize`` requests in flight for stores that cannot list sizes.
    """
    prefix = prefix.strip("/")
    out: dict[str, int] = {}
    if isinstance(store, LocalStore):
        base = Path(store.root)
        start = base / prefix if prefix else base
        if start.is_dir():
            _walk(start, base, out)
    elif isinstance(store, FsspecStore):
        store.fs.invalidate_cache()
        root = f"{store.path}/{prefix}" if prefix else store.path
        found = sync(store.fs._find(root, detail=True, withdirs=False))
        strip = store.path.rstrip("/") + "/"
        for path, info in found.items():
            if info.get("type", "file") != "directory":
                out[path.removeprefix(strip)] = int(info.get("size") or 0)
    else:
        keys = list_keys(store, prefix)
        sizes = sync(concurrent_map([(k,) for k in keys], store.getsize, limit=concurrency))
        out = dict(zip(keys, (int(s) for s in sizes), strict=True))
    return dict(sorted(out.items()))


def list_sizes_task(location: Location) -> dict[str, int]:
    """Worker task: ``{key: size}`` below the location's node path (keys relative to it)."""
    with storage_errors(location.display):
        sizes = list_sizes(location.open_store(), location.path)
    strip = location.path.strip("/")
    if strip:
        sizes = {k[len(strip) + 1 :]: v for k, v in sizes.items() if k.startswith(strip + "/")}
    return sizes
