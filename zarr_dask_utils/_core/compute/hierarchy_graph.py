"""The hierarchy graph: which metadata documents a store holds, read concurrently on the cluster.

The graph is: one listing task (a flat, paginated listing of the store) whose result stays
on the cluster, then ``nparts`` tasks that each read their share of the metadata documents
with many requests in flight.  Only the small documents come back to the client.  The pure
vocabulary (key names, :func:`parse_document`) lives in :mod:`zarr_dask_utils._core.pure.keys`,
node summaries in :mod:`zarr_dask_utils._core.pure.nodes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dask.delayed import Delayed, delayed
from zarr.storage import LocalStore

from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.pure.keys import METADATA_NAMES, is_metadata_key, join_key
from zarr_dask_utils._core.storage.listing import KeyListing, walk_local
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.storeio import list_keys, read_keys, storage_errors

__all__ = [
    "build_read_graph",
    "excluded_task",
    "list_store_task",
    "read_documents_graph",
    "read_documents_task",
    "unreadable_task",
]


def list_store_task(location: Location, exclude_prefix: str | None = None) -> KeyListing:
    """List every key below the location's node path (relative to it), sorted.

    Local folders are walked strictly: folders that cannot be listed and symbolic links that
    loop or are broken are kept in the listing's ``unreadable`` (never skipped silently).
    """
    unreadable: dict[str, str] = {}
    with storage_errors(location.display):
        store = location.open_store()
        if isinstance(store, LocalStore):
            sizes, unreadable = walk_local(
                Path(store.root), location.path.strip("/"), open_names=METADATA_NAMES
            )
            keys = list(sizes)
        else:
            keys = list_keys(store, location.path)
    strip = location.path.strip("/")
    if strip:
        keys = [k[len(strip) + 1 :] for k in keys if k.startswith(strip + "/")]
        unreadable = {k[len(strip) + 1 :]: v for k, v in unreadable.items()}
    excluded = 0
    if exclude_prefix:
        skip = exclude_prefix.rstrip("/") + "/"
        kept = [k for k in keys if not k.startswith(skip)]
        excluded, keys = len(keys) - len(kept), kept
        unreadable = {k: v for k, v in unreadable.items() if not k.startswith(skip)}
    return KeyListing(keys, unreadable, excluded)


def unreadable_task(listing: KeyListing) -> dict[str, str]:
    """Worker task: what a listing could not read (``{path: reason}``, small)."""
    return dict(getattr(listing, "unreadable", {}))


def excluded_task(listing: KeyListing) -> int:
    """Worker task: how many keys the listing left out (legacy in-store backups)."""
    return int(getattr(listing, "excluded", 0))


def read_documents_task(
    location: Location, listing: list[str], part: int, nparts: int, concurrency: int
) -> dict[str, bytes | None]:
    """Read this task's share (every ``nparts``-th) of the listing's metadata documents."""
    mine = [k for k in listing if is_metadata_key(k)][part::nparts]
    if not mine:
        return {}
    with storage_errors(location.display):
        store = location.open_store()
        raw = read_keys(store, [join_key(location.path, k) for k in mine], concurrency=concurrency)
    return dict(zip(mine, raw.values(), strict=True))


def _merge(*parts: Mapping[str, bytes | None]) -> dict[str, bytes | None]:
    merged: dict[str, bytes | None] = {}
    for part in parts:
        merged.update(part)
    return dict(sorted(merged.items()))


def read_documents_graph(location: Location, listing: Delayed, *, nparts: int = 4) -> Delayed:
    """Delayed ``{key: raw bytes}`` of every metadata document named by a delayed *listing*.

    *listing* is any delayed iterable of keys (a key list, or a ``{key: size}`` mapping);
    *nparts* tasks read a share each, with ``io.concurrency`` requests in flight, and one
    task merges them.
    """
    concurrency = int(get_option("io.concurrency"))
    parts = [
        delayed(read_documents_task, pure=False)(
            location,
            listing,
            i,
            nparts,
            concurrency,
            dask_key_name=task_name("read-metadata", location, listing.key, i, nparts),
        )
        for i in range(nparts)
    ]
    return delayed(_merge, pure=False)(
        *parts, dask_key_name=task_name("merge-metadata", location, listing.key)
    )


def build_read_graph(
    location: Location, *, nparts: int = 4, exclude_prefix: str | None = None
) -> tuple[Delayed, Delayed]:
    """Build the listing task and the document-reading tasks.

    Returns
    -------
    listing, documents
        Delayed list of every key (keep it on the cluster), and Delayed ``{key: bytes}`` of
        every metadata document.
    """
    listing = delayed(list_store_task, pure=False)(
        location, exclude_prefix, dask_key_name=task_name("list", location, exclude_prefix)
    )
    return listing, read_documents_graph(location, listing, nparts=nparts)
