"""The graph every data-aware feature starts with: sizes, documents and inventory, on workers.

One task lists the store with object sizes
(:func:`~zarr_dask_utils._core.storage.listing.list_sizes_task`), a few tasks read every
metadata document concurrently from that listing, and one task builds the chunk inventory next
to the listing, so a listing of millions of objects never travels to the client.  ``zdu check``
and ``zdu doctor`` both build on it.
"""

from __future__ import annotations

from collections.abc import Mapping

from dask.delayed import Delayed, delayed

from zarr_dask_utils._core.compute.hierarchy_graph import read_documents_graph
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.pure.inventory import Inventory, build_inventory
from zarr_dask_utils._core.pure.keys import parse_document
from zarr_dask_utils._core.storage.listing import list_sizes_task
from zarr_dask_utils._core.storage.locations import Location

__all__ = ["build_inventory_graph", "inventory_task"]


def drop_prefix_task(sizes: Mapping[str, int], prefix: str | None) -> dict[str, int]:
    """Worker task: the listing without the objects under *prefix* (our own backups).

    Usually nothing is under it: one search of the joined keys says so without a Python step
    per key (a key with a line break can only make it take the exact filter below).
    """
    if not prefix:
        return dict(sizes)
    skip = prefix.rstrip("/") + "/"
    joined = "\n".join(sizes)
    if not joined.startswith(skip) and f"\n{skip}" not in joined:
        return dict(sizes)
    return {k: v for k, v in sizes.items() if not k.startswith(skip)}


def inventory_task(sizes: Mapping[str, int], raw: Mapping[str, bytes | None]) -> Inventory:
    """Worker task: the inventory, built next to the listing (only it goes to the client)."""
    docs = {k: parse_document(v)[0] for k, v in raw.items()}
    return build_inventory(docs, sizes)


def build_inventory_graph(
    location: Location, *, exclude_prefix: str | None = None, nparts: int = 4
) -> tuple[Delayed, Delayed, Delayed]:
    """Build (not run) the listing, document and inventory tasks for *location*.

    Parameters
    ----------
    location
        The hierarchy's root.
    exclude_prefix
        Objects under this prefix are neither read nor inventoried (default: the metadata
        backups zarr-dask-utils keeps inside stores).
    nparts
        Tasks that read the documents (each with ``io.concurrency`` requests in flight).

    Returns
    -------
    sizes, documents, inventory
        Delayed ``{key: size}`` (keep it on the cluster), ``{key: raw bytes}`` of every
        metadata document, and the :class:`~zarr_dask_utils._core.pure.inventory.Inventory`.
    """
    if exclude_prefix is None:
        exclude_prefix = str(get_option("metadata.backup-prefix"))
    listed = delayed(list_sizes_task, pure=False)(
        location, dask_key_name=task_name("list-sizes", location)
    )
    sizes = delayed(drop_prefix_task, pure=False)(
        listed, exclude_prefix, dask_key_name=task_name("drop-prefix", location, exclude_prefix)
    )
    raw = read_documents_graph(location, sizes, nparts=nparts)
    inventory = delayed(inventory_task, pure=False)(
        sizes, raw, dask_key_name=task_name("inventory", location)
    )
    return sizes, raw, inventory
