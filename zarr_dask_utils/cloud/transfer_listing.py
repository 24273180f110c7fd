"""Worker task: list a location's objects with their size and version (ETag or mtime).

The version lets a resumed copy tell an object that changed on the source since the first
run: object stores give an ETag with the listing (one s3fs ``find(detail=True)``, or one
obstore listing under ``zdu_engine="obstore"``), local files
their modification time in nanoseconds; other stores (zip, memory) give none and a change
is then seen by size only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from zarr_dask_utils._core.storage.listing import list_sizes
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.storeio import storage_errors
from zarr_dask_utils.cloud.transfer_plan import ObjectInfo

__all__ = ["list_objects_task"]


def _etag(info: dict[str, object]) -> str | None:
    for name in ("ETag", "etag", "e_tag"):
        value = info.get(name)
        if value:
            return str(value).strip('"')
    return None


def _fsspec_objects(store: FsspecStore, prefix: str) -> dict[str, ObjectInfo]:
    store.fs.invalidate_cache()
    root = f"{store.path}/{prefix}" if prefix else store.path
    try:
        found = sync(store.fs._find(root, detail=True, withdirs=False))
    except FileNotFoundError:
        return {}
    strip = store.path.rstrip("/") + "/"
    return {
        path.removeprefix(strip): (int(info.get("size") or 0), _etag(info))
        for path, info in found.items()
        if info.get("type", "file") != "directory"
    }


def _obstore_objects(store: Any, prefix: str) -> dict[str, ObjectInfo]:
    """One obstore listing with sizes and ETags (zarr's listing would need a HEAD per key)."""

    async def collect() -> dict[str, ObjectInfo]:
        return {
            str(meta["path"]): (int(meta["size"]), meta.get("e_tag"))
            async for meta in store._list(f"{prefix}/" if prefix else None)
        }

    return dict(sync(collect()))


def _local_objects(store: LocalStore, prefix: str) -> dict[str, ObjectInfo]:
    sizes = list_sizes(store, prefix)
    root = os.fspath(Path(store.root))
    out: dict[str, ObjectInfo] = {}
    for key, size in sizes.items():
        try:
            mtime = os.stat(os.path.join(root, key)).st_mtime_ns
        except OSError:  # vanished since the listing
            continue
        out[key] = (size, str(mtime))
    return out


def list_objects_task(location: Location) -> dict[str, ObjectInfo]:
    """``{key: (size, version)}`` of every object below the location's node path.

    Keys are relative to the node path.  A location that does not exist yet lists empty.
    """
    prefix = location.path.strip("/")
    with storage_errors(location.display):
        store = location.open_store()
        if type(store) is FsspecStore:
            found = _fsspec_objects(store, prefix)
        elif type(store).__name__ == "ObjectStore":  # zarr's obstore-backed store
            found = _obstore_objects(store, prefix)
        elif type(store) is LocalStore:
            found = _local_objects(store, prefix) if Path(store.root).exists() else {}
        else:
            found = {k: (v, None) for k, v in list_sizes(store, prefix).items()}
    if prefix:
        cut = len(prefix) + 1
        found = {k[cut:]: v for k, v in found.items() if k.startswith(prefix + "/")}
    return dict(sorted(found.items()))
