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
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from itertools import product
from operator import contains
from typing import Any

import numpy as np

from zarr_dask_utils._core.pure.chunkgrid import ArrayGrid, grid_from_document, is_partial_key
from zarr_dask_utils._core.pure.keys import ARRAY_V2, METADATA_NAMES, ZARR_JSON, split_key

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


def _folder_owner(folder: str, owners: set[str], known: dict[str, str | None]) -> str | None:
    """The deepest of *owners* that is *folder* or one of the folders above it, up to ``""``.

    Climbs until a folder whose owner is *known*, an owner or the root, then remembers the
    answer for every folder it passed.
    """
    passed: list[str] = []
    while True:
        if folder in known:
            owner = known[folder]
            break
        passed.append(folder)
        if folder in owners:
            owner = folder
            break
        if not folder:
            owner = None
            break
        folder = folder.rpartition("/")[0]
    for seen in passed:
        known[seen] = owner
    return owner


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
        sizes = {k: v for k, v in sizes.items() if not k.startswith(skip)}
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
    inv.objects = len(sizes)
    inv.total_bytes = sum(sizes.values())
    groups = _group_by_array(inv, sizes, set(grids))
    for path, arr in inv.arrays.items():
        keys, found = groups[path]
        arr.missing_keys = _first_missing(arr, _classify_array(arr, keys, found))
    return inv


def _group_by_array(
    inv: Inventory, sizes: Mapping[str, int], arrays: set[str]
) -> dict[str, tuple[list[str], list[int]]]:
    """Keys and sizes per array; count the metadata documents and the keys outside arrays.

    The owner of a key depends only on its parent folder, so it is looked up once per folder
    (a few hundred for a grid of thousands of chunks), not once per key, and a folder's owner
    from its parent's.
    """
    owners = arrays | set(inv.unusable)
    groups: dict[str, tuple[list[str], list[int]]] = {path: ([], []) for path in arrays}
    owner_of: dict[str, str | None] = {}
    for key, size in sizes.items():
        parent, _, name = key.rpartition("/")
        if name in METADATA_NAMES:
            inv.metadata_objects += 1
            continue
        try:
            owner = owner_of[parent]
        except KeyError:
            owner = _folder_owner(parent, owners, owner_of)
        if owner is None:
            (inv.partial if is_partial_key(key) else inv.unexpected).add(key)
        elif owner in groups:
            keys, found = groups[owner]
            keys.append(key)
            found.append(size)
        else:
            inv.unchecked += 1  # an array whose grid is unknown
    return groups


def _classify_array(arr: ArrayInventory, keys: list[str], sizes: list[int]) -> list[str]:
    """Classify one array's keys; the keys of its stored objects (in grid, well formed).

    Fast path for the common key (``c/0/1/2``, ``0.1.2``: one separator character): after a
    head (array path, prefix, separator) built once per array, one ``split`` and one set
    lookup per coordinate among the canonical numbers of that dimension.  Any other key
    (leading zeros, out of grid, malformed, partial, …) takes :func:`_reject`, the general
    rules, which give the same answer for every key the fast path accepts.
    """
    head = _head(arr)
    ok_keys: list[str] = []
    ok_sizes: list[int] = []
    if head is not None:
        checks: list[Container[str]] = [
            _Coordinate(n) if n > _MAX_NAMED else frozenset(map(str, range(n)))
            for n in arr.grid.grid
        ]
        sep, start, ndim = arr.grid.separator, len(head), len(checks)
        for key, size in zip(keys, sizes, strict=True):
            if key.startswith(head):
                parts = key[start:].split(sep)
                if len(parts) == ndim and all(map(contains, checks, parts)):
                    ok_keys.append(key)
                    ok_sizes.append(size)
                    continue
            if _reject(arr, key) is not None:
                ok_keys.append(key)
                ok_sizes.append(size)
    else:
        for key, size in zip(keys, sizes, strict=True):
            if _reject(arr, key) is not None:
                ok_keys.append(key)
                ok_sizes.append(size)
    _count_stored(arr, ok_keys, ok_sizes)
    return ok_keys


#: Dimensions up to this many objects are checked against a set of their numbers as text.
_MAX_NAMED = 4096


class _Coordinate:
    """``text in _Coordinate(n)``: *text* is ASCII digits for a number below *n*."""

    __slots__ = ("n",)

    def __init__(self, n: int):
        self.n = n

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str) or not text.isascii() or not text.isdigit():
            return False
        return int(text) < self.n


def _head(arr: ArrayInventory) -> str | None:
    """What every chunk key of *arr* starts with (path, prefix, separator).

    ``None`` when the fast path does not apply (a separator of several characters, 0-d).
    """
    grid = arr.grid
    if len(grid.separator) != 1 or not grid.grid:
        return None
    prefix = grid.prefix + grid.separator if grid.prefix else ""
    return f"{arr.path}/{prefix}" if arr.path else prefix


def _first_missing(arr: ArrayInventory, stored: list[str]) -> list[str]:
    """The first :data:`MAX_MISSING_LISTED` grid keys (C order) with no stored object.

    Stops after that many: it visits at most ``len(stored) + MAX_MISSING_LISTED`` positions.
    """
    found: list[str] = []
    if arr.missing <= 0:
        return found
    head = _head(arr)
    if head is not None:  # every stored key is head + digits and separators
        sep, start = arr.grid.separator, len(head)
        present = {tuple(map(int, key[start:].split(sep))) for key in stored}
    else:
        cut = len(arr.path) + 1 if arr.path else 0
        present = {arr.grid.parse(key[cut:]) for key in stored}  # type: ignore[misc]
    limit = min(MAX_MISSING_LISTED, arr.missing)
    for coords in product(*map(range, arr.grid.grid)):  # C order, as grid.coords(index)
        if coords not in present:
            rel = arr.grid.key(coords)
            found.append(f"{arr.path}/{rel}" if arr.path else rel)
            if len(found) >= limit:
                break
    return found


def _reject(arr: ArrayInventory, key: str) -> tuple[int, ...] | None:
    """List *key* if it is no stored object of the grid (partial, invalid, out of grid).

    Returns its grid coordinates otherwise.
    """
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
    return coords


def _count_stored(arr: ArrayInventory, keys: list[str], sizes: list[int]) -> None:
    """Count the stored objects (*keys*, *sizes*) of *arr*; list the zero-byte and odd-sized."""
    if not sizes:
        return
    smallest, largest = min(sizes), max(sizes)
    arr.present += len(sizes)
    arr.stored_bytes += sum(sizes)
    arr.min_size = smallest if arr.min_size is None else min(arr.min_size, smallest)
    arr.max_size = largest if arr.max_size is None else max(arr.max_size, largest)
    bounds = arr.expected_size
    if smallest > 0 and (bounds is None or (bounds[0] <= smallest and largest <= bounds[1])):
        return  # the common case: nothing to list
    for key, size in zip(keys, sizes, strict=True):
        if size == 0:
            arr.lists["zero_byte"].add(key)
        elif bounds is not None:
            if size < bounds[0]:
                arr.lists["too_small"].add(key)
            elif size > bounds[1]:
                arr.lists["too_large"].add(key)
