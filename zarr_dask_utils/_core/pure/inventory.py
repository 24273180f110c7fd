"""Chunk inventory (pure): classify every listed object against the arrays' chunk grids.

Input: the parsed metadata documents and the listing with sizes (``{key: size}``), both
relative to the hierarchy root.  Output: an :class:`Inventory` holding, per array, how many
chunk objects the grid expects and how many are stored, and the keys that are out of the
grid, malformed, zero-byte, impossibly small or large, or temporary files of interrupted
writers; plus the objects outside every array.  Key lists are capped (counts are exact), so
an inventory stays small even for a store with millions of objects: build it on the worker
that holds the listing and send only the inventory to the client.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zarr_dask_utils._core.pure.chunkgrid import ArrayGrid, grid_from_document, is_partial_key
from zarr_dask_utils._core.pure.keys import ARRAY_V2, ZARR_JSON, is_metadata_key, split_key

__all__ = [
    "KEY_CLASSES",
    "ArrayInventory",
    "Inventory",
    "KeyList",
    "array_documents",
    "build_inventory",
    "itemsize_of",
    "size_bounds",
]

#: Classes of objects an inventory lists (besides the stored chunks it counts).
KEY_CLASSES = ("out_of_grid", "invalid", "partial", "zero_byte", "too_small", "too_large")
MAX_LISTED = 100
#: Grid positions with no stored object named per array (the first ones in C order).
MAX_MISSING_LISTED = 10


@dataclass
class KeyList:
    """An exact count and the first :data:`MAX_LISTED` keys."""

    count: int = 0
    keys: list[str] = field(default_factory=list)

    def add(self, key: str) -> None:
        """Count *key* and remember it while there is room."""
        self.count += 1
        if len(self.keys) < MAX_LISTED:
            self.keys.append(key)


@dataclass
class ArrayInventory:
    """What the listing holds for one array (keys relative to the hierarchy root)."""

    path: str
    zarr_format: int
    grid: ArrayGrid
    present: int = 0
    stored_bytes: int = 0
    min_size: int | None = None
    max_size: int | None = None
    expected_size: tuple[int, int] | None = None  # (smallest, largest) plausible object
    lists: dict[str, KeyList] = field(default_factory=lambda: {c: KeyList() for c in KEY_CLASSES})
    #: The first :data:`MAX_MISSING_LISTED` keys (from the root, C order) not stored.
    missing_keys: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        """Objects the full grid has (shards when sharded)."""
        return self.grid.nchunks

    @property
    def missing(self) -> int:
        """Grid positions with no stored object (read as fill value)."""
        return self.expected - self.present

    def summary(self) -> dict[str, Any]:
        """Small JSON-safe summary (counts only)."""
        return {
            "path": self.path,
            "zarr_format": self.zarr_format,
            "expected": self.expected,
            "present": self.present,
            "missing": self.missing,
            "missing_keys": list(self.missing_keys),
            "stored_bytes": self.stored_bytes,
            "min_size": self.min_size,
            "max_size": self.max_size,
            **{c: kl.count for c, kl in self.lists.items()},
        }


@dataclass
class Inventory:
    """Per-array inventories plus the objects outside every array."""

    arrays: dict[str, ArrayInventory] = field(default_factory=dict)
    unexpected: KeyList = field(default_factory=KeyList)
    partial: KeyList = field(default_factory=KeyList)  # temporary files outside arrays
    unusable: list[str] = field(default_factory=list)  # arrays whose grid is unknown
    unchecked: int = 0  # objects inside arrays whose grid is unknown
    metadata_objects: int = 0
    objects: int = 0
    total_bytes: int = 0


def itemsize_of(name: str, doc: Mapping[str, Any]) -> int | None:
    """Bytes per element of an array document's dtype (``None``: unknown or variable)."""
    dtype = doc.get("dtype") if name == ARRAY_V2 else doc.get("data_type")
    if not isinstance(dtype, str):
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return None
    return None if dt.hasobject or dt.itemsize == 0 else dt.itemsize


def _codec_names(name: str, doc: Mapping[str, Any]) -> list[str] | None:
    if name == ARRAY_V2:
        names = [str(f.get("id")) for f in doc.get("filters") or [] if isinstance(f, Mapping)]
        comp = doc.get("compressor")
        return [*names, str(comp.get("id"))] if isinstance(comp, Mapping) else names
    codecs = doc.get("codecs")
    if not isinstance(codecs, list):
        return None
    return [str(c.get("name")) if isinstance(c, Mapping) else str(c) for c in codecs]


def size_bounds(name: str, doc: Mapping[str, Any], grid: ArrayGrid) -> tuple[int, int] | None:
    """Smallest and largest plausible size of one stored object, or ``None`` if unknown.

    Without compression the size is exact (``+ 4`` for a crc32c checksum); with compression
    anything from 1 byte up to the raw size plus generous codec overhead is plausible.
    """
    itemsize = itemsize_of(name, doc)
    codecs = _codec_names(name, doc)
    if itemsize is None or codecs is None:
        return None
    nbytes = math.prod(grid.chunks) * itemsize
    inner = math.prod(grid.chunks) // math.prod(grid.inner) if grid.inner else 1
    if set(codecs) <= {"bytes", "crc32c"} and codecs.count("crc32c") <= 1 and not grid.inner:
        exact = nbytes + 4 * codecs.count("crc32c")
        return exact, exact
    largest = nbytes + nbytes // 10 + 1024 * inner + 16 * inner + 64
    return (0 if grid.inner else 1), largest


def _owner(key: str, arrays: Iterable[str] | set[str]) -> str | None:
    parts = key.split("/")
    for i in range(len(parts) - 1, -1, -1):
        candidate = "/".join(parts[:i])
        if candidate in arrays:
            return candidate
    return None


def array_documents(docs: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Array path → (document name, parsed document) for every parsable array document."""
    found: dict[str, tuple[str, Any]] = {}
    for key, doc in docs.items():
        path, name = split_key(key)
        if not isinstance(doc, Mapping):
            continue
        if name == ARRAY_V2 or (name == ZARR_JSON and doc.get("node_type") == "array"):
            found[path] = (name, doc)
    return found


def build_inventory(
    docs: Mapping[str, Any],
    sizes: Mapping[str, int],
    *,
    ignore_prefix: str | None = None,
) -> Inventory:
    """Classify every listed object (see the module docstring).

    Parameters
    ----------
    docs
        Metadata key → parsed JSON document (unparsable ones are ``None`` and ignored).
    sizes
        Every listed key → its size in bytes.
    ignore_prefix
        Objects under this prefix (zarr-dask-utils' own backups) are not classified.
    """
    inv = Inventory()
    grids: dict[str, ArrayGrid] = {}
    skip = ignore_prefix.rstrip("/") + "/" if ignore_prefix else None
    if skip:
        docs = {k: v for k, v in docs.items() if not k.startswith(skip)}
    for path, (name, doc) in array_documents(docs).items():
        grid = grid_from_document(path, name, doc)
        if grid is None:
            inv.unusable.append(path)
            continue
        fmt = 2 if name == ARRAY_V2 else 3
        grids[path] = grid
        inv.arrays[path] = ArrayInventory(
            path, fmt, grid, expected_size=size_bounds(name, doc, grid)
        )
    unusable = set(inv.unusable)
    owners = set(grids) | unusable
    present: dict[str, set[tuple[int, ...]]] = {path: set() for path in grids}
    for key, size in sizes.items():
        if skip and key.startswith(skip):
            continue
        inv.objects += 1
        inv.total_bytes += size
        if is_metadata_key(key):
            inv.metadata_objects += 1
            continue
        owner = _owner(key, owners)
        if owner in unusable:
            inv.unchecked += 1
            continue
        if owner is None:
            (inv.partial if is_partial_key(key) else inv.unexpected).add(key)
            continue
        coords = _classify(inv.arrays[owner], key, size)
        if coords is not None:
            present[owner].add(coords)
    for path, arr in inv.arrays.items():
        arr.missing_keys = _first_missing(arr, present[path])
    return inv


def _first_missing(arr: ArrayInventory, present: set[tuple[int, ...]]) -> list[str]:
    """The first :data:`MAX_MISSING_LISTED` grid keys (C order) with no stored object.

    Stops after that many: it visits at most ``len(present) + MAX_MISSING_LISTED`` positions.
    """
    found: list[str] = []
    if arr.missing <= 0:
        return found
    for index in range(arr.expected):
        coords = arr.grid.coords(index)
        if coords not in present:
            rel = arr.grid.key(coords)
            found.append(f"{arr.path}/{rel}" if arr.path else rel)
            if len(found) >= min(MAX_MISSING_LISTED, arr.missing):
                break
    return found


def _classify(arr: ArrayInventory, key: str, size: int) -> tuple[int, ...] | None:
    """Count *key* in *arr*; its grid coordinates when it is a stored object of the grid."""
    rel = key[len(arr.path) + 1 :] if arr.path else key
    if is_partial_key(rel):
        arr.lists["partial"].add(key)
        return None
    coords = arr.grid.parse(rel)
    if coords is None:
        arr.lists["invalid"].add(key)
        return None
    if not arr.grid.in_grid(coords):
        arr.lists["out_of_grid"].add(key)
        return None
    arr.present += 1
    arr.stored_bytes += size
    arr.min_size = size if arr.min_size is None else min(arr.min_size, size)
    arr.max_size = size if arr.max_size is None else max(arr.max_size, size)
    if size == 0:
        arr.lists["zero_byte"].add(key)
    elif arr.expected_size is not None:
        low, high = arr.expected_size
        if size < low:
            arr.lists["too_small"].add(key)
        elif size > high:
            arr.lists["too_large"].add(key)
    return coords
