"""Damage chunk data in real stores, through zarr's Store API (local, S3, memory, zip).

Every function takes the store first (anything :func:`zarr_dask_utils.open_store` takes),
then a key or array path relative to it, and changes stored bytes the way bit rot, a failed
copy or an interrupted writer would.  The integrity checks are tested against these.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from zarr_dask_utils._core.pure.chunkgrid import grid_from_document
from zarr_dask_utils._core.pure.keys import ARRAY_V2, ZARR_JSON, is_metadata_key, join_key
from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils._core.storage.storeio import delete_keys, list_keys, read_keys, write_keys
from zarr_dask_utils.testing.builders import writable_store

__all__ = [
    "add_junk_key",
    "add_partial_leftover",
    "chunk_keys",
    "delete_chunk",
    "flip_byte",
    "set_array_shape",
    "truncate_chunk",
    "zero_byte_chunk",
]


def _existing(
    store: StoreLike, key: str, storage_options: Mapping[str, Any] | None
) -> tuple[Any, str, bytes]:
    zstore, prefix = writable_store(store, storage_options)
    full = join_key(prefix, key)
    value = read_keys(zstore, [full])[full]
    if value is None:
        raise FileNotFoundError(f"No key {key!r} in the store {zstore!r}.")
    return zstore, full, value


def _array_document(zstore: Any, prefix: str, path: str) -> tuple[str, dict[str, Any]]:
    for name in (ZARR_JSON, ARRAY_V2):
        key = join_key(join_key(prefix, path), name) if path else join_key(prefix, name)
        raw = read_keys(zstore, [key])[key]
        if raw is not None:
            doc = json.loads(raw)
            if name == ARRAY_V2 or doc.get("node_type") == "array":
                return key, doc
    raise FileNotFoundError(f"No array at {path!r} in the store {zstore!r}.")


def chunk_keys(
    store: StoreLike, array_path: str, *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """The stored chunk (or shard) keys of the array at *array_path*, relative to the store."""
    zstore, prefix = writable_store(store, storage_options)
    key, doc = _array_document(zstore, prefix, array_path)
    grid = grid_from_document(array_path, PurePosixPath(key).name, doc)
    assert grid is not None
    base = join_key(prefix, array_path) if array_path else prefix
    out = []
    for full in list_keys(zstore, base):
        rel = full[len(base) + 1 :] if base else full
        coords = grid.parse(rel)
        if not is_metadata_key(full) and coords is not None and grid.in_grid(coords):
            out.append(join_key(array_path, rel))
    return sorted(out)


def truncate_chunk(
    store: StoreLike,
    key: str,
    *,
    keep: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> int:
    """Keep only the first *keep* bytes (default: half) of the object at *key*; return *keep*."""
    zstore, full, value = _existing(store, key, storage_options)
    keep = len(value) // 2 if keep is None else keep
    write_keys(zstore, {full: value[:keep]})
    return keep


def flip_byte(
    store: StoreLike,
    key: str,
    *,
    offset: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> int:
    """Invert every bit of one byte (default: the middle one) of *key*; return the offset.

    The size stays the same: only a hash (a manifest), a checksum codec or a comparison
    with a copy can notice; decoding often does not.
    """
    zstore, full, value = _existing(store, key, storage_options)
    offset = len(value) // 2 if offset is None else offset % len(value)
    data = bytearray(value)
    data[offset] ^= 0xFF
    write_keys(zstore, {full: bytes(data)})
    return offset


def delete_chunk(
    store: StoreLike, key: str, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Delete the chunk at *key* (it must exist); zarr then reads it as the fill value."""
    zstore, full, _ = _existing(store, key, storage_options)
    delete_keys(zstore, [full])


def zero_byte_chunk(
    store: StoreLike, key: str, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Replace the chunk at *key* (it must exist) by an empty object."""
    zstore, full, _ = _existing(store, key, storage_options)
    write_keys(zstore, {full: b""})


def add_junk_key(
    store: StoreLike,
    key: str,
    data: bytes = b"not zarr data\n",
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Write an object zarr does not know about (e.g. ``"t2m/notes.txt"``); return its key."""
    zstore, prefix = writable_store(store, storage_options)
    write_keys(zstore, {join_key(prefix, key): data})
    return key


def add_partial_leftover(
    store: StoreLike,
    key: str,
    *,
    data: bytes = b"half-written",
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Leave a temporary file as an interrupted zarr ``LocalStore`` write would.

    zarr writes ``path.with_suffix(".<uuid hex>.partial")`` and renames it when complete;
    this writes that name next to *key* and returns it (relative to the store).
    """
    zstore, prefix = writable_store(store, storage_options)
    leftover = str(PurePosixPath(key).with_suffix(f".{uuid.uuid4().hex}.partial"))
    write_keys(zstore, {join_key(prefix, leftover): data})
    return leftover


def set_array_shape(
    store: StoreLike,
    array_path: str,
    shape: Sequence[int],
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[int, ...]:
    """Rewrite only the ``shape`` of an array's metadata (chunks stay); return the old shape.

    Shrinking leaves chunks outside the grid; growing leaves grid positions without chunks.
    """
    zstore, prefix = writable_store(store, storage_options)
    key, doc = _array_document(zstore, prefix, array_path)
    old = tuple(doc["shape"])
    doc["shape"] = list(shape)
    write_keys(zstore, {key: json.dumps(doc, indent=2).encode()})
    return old
