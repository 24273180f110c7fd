"""Rechunk jobs: which arrays to copy, their target metadata, and the copy task itself.

The target's metadata documents are built in a private ``MemoryStore`` by zarr itself (so they
are exactly what zarr would write) and kept aside: tasks open the target arrays from the
metadata *object*, without any document in the store, and the documents are written last.
A half-written target therefore holds chunks but no ``zarr.json`` / ``.zarray``: no reader
can mistake it for a complete array.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import zarr
from zarr.storage import MemoryStore, StorePath

from zarr_dask_utils._core.compressors import compressors_for
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.decoding.block_reader import read_selection
from zarr_dask_utils._core.errors import InvalidOptionError, MetadataInvalidError
from zarr_dask_utils._core.pure.keys import is_metadata_key, join_key, parse_document
from zarr_dask_utils._core.storage.heap import heap_allocations
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.storeio import list_keys, read_keys, storage_errors, write_keys
from zarr_dask_utils.info import open_node
from zarr_dask_utils.optimize.chunkspec import ArrayAxes, check_chunk_spec
from zarr_dask_utils.optimize.plan import RechunkPlan, normalize_chunks

__all__ = [
    "ArrayJob",
    "build_target_documents",
    "check_requests",
    "chunks_for",
    "copy_blocks_task",
    "dimension_names_of",
    "open_from_metadata",
    "open_source",
    "source_nodes",
    "write_target_documents",
]

ChunkSpec = Sequence[int | None] | Mapping[str, Any] | None


@dataclass(frozen=True)
class ArrayJob:
    """One array to copy: where it is, its metadata on each side, and its plan."""

    path: str
    source_metadata: Any
    target_metadata: Any
    temp_metadata: Any
    plan: RechunkPlan


def dimension_names_of(arr: zarr.Array[Any]) -> tuple[str | None, ...] | None:
    """Axis names from ``dimension_names`` (v3) or the ``_ARRAY_DIMENSIONS`` attribute (v2)."""
    names = getattr(arr.metadata, "dimension_names", None)
    if names is None:
        dims = arr.attrs.get("_ARRAY_DIMENSIONS")
        if isinstance(dims, list) and len(dims) == arr.ndim:
            names = tuple(dims)
    return tuple(names) if names is not None else None


#: zarr-python's warnings about the format 2 documents the Rust zarrs writes beside zarr.json:
#: zarr reads the zarr.json, as zdu does (``validate`` reports them as ``v2-document-shadowed``)
_SHADOWED_V2 = (
    r"(Object at (.*/)?\.z(attrs|group|array|metadata) is not recognized"
    r"|Both zarr\.json .* Zarr v3 will be used)"
)


def source_nodes(
    node: zarr.Group | zarr.Array[Any],
) -> tuple[list[tuple[str, zarr.Group]], list[tuple[str, zarr.Array[Any]]]]:
    """The groups and arrays below *node* (relative paths, ``""`` for *node* itself)."""
    if isinstance(node, zarr.Array):
        return [], [("", node)]
    groups: list[tuple[str, zarr.Group]] = [("", node)]
    arrays: list[tuple[str, zarr.Array[Any]]] = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _SHADOWED_V2, UserWarning)
        members = node.members(max_depth=None)
    for name, member in sorted(members, key=lambda m: m[0]):
        if isinstance(member, zarr.Array):
            arrays.append((name, member))
        else:
            groups.append((name, member))
    return groups, arrays


def open_source(
    location: Location,
) -> tuple[zarr.Group | zarr.Array[Any], list[tuple[str, zarr.Group]], list[tuple[str, Any]]]:
    """Open the source node and list its groups and arrays (see :func:`source_nodes`).

    Raises
    ------
    MetadataInvalidError
        A metadata document is not valid JSON; the message names it and the store.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _SHADOWED_V2, UserWarning)
            node = open_node(location)
        return (node, *source_nodes(node))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        bad = _invalid_documents(location)
        if not bad:
            raise
        where = f"{location.display}/{bad[0][0]}"
        more = f" (and {len(bad) - 1} more: {', '.join(k for k, _ in bad[1:4])})" if bad[1:] else ""
        raise MetadataInvalidError(
            f"The metadata document {where!r} is {bad[0][1]}{more}, so its node cannot be "
            f"opened and nothing was written. Run `zdu validate {location.display}` to see "
            f"every problem, and `zdu repair {location.display} --apply` to restore documents "
            "from the consolidated metadata when possible."
        ) from err


def _invalid_documents(location: Location) -> list[tuple[str, str]]:
    """``(key relative to the location, reason)`` of every metadata document that won't parse."""
    store = location.open_store()
    prefix = location.path.strip("/")
    with storage_errors(location.display):
        keys = [k for k in list_keys(store, prefix) if is_metadata_key(k)]
        raw = read_keys(store, keys)
    out = []
    for key, content in raw.items():
        _, reason = parse_document(content)
        if reason is not None and content is not None:
            out.append((key[len(prefix) + 1 :] if prefix else key, reason))
    return sorted(out, key=lambda kr: (kr[0].count("/"), kr[0]))


def chunks_for(
    spec: ChunkSpec, path: str, arr: zarr.Array[Any], current: Sequence[int], *, single: bool
) -> tuple[int, ...]:
    """Resolve the user's chunk request for the array at *path*.

    A mapping keyed by array path picks that array's request; a mapping of dimension names
    applies to every array with those axes; a tuple applies to the single array, or to every
    array of the group with as many axes.
    """
    names = dimension_names_of(arr)
    if isinstance(spec, Mapping) and isinstance(spec.get(path), Mapping | tuple | list):
        spec = spec[path]  # keyed by array path (a dimension name maps to an int)
    elif (
        isinstance(spec, Mapping)
        and not single
        and all(isinstance(v, Mapping | tuple | list) for v in spec.values())
    ):
        spec = None  # a per-array mapping that does not name this array: keep its chunks
    if spec is not None and not isinstance(spec, Mapping) and not single and len(spec) != arr.ndim:
        spec = None
    return normalize_chunks(spec, arr.shape, current, names)


def check_requests(
    arrays: Sequence[tuple[str, zarr.Array[Any]]],
    target_chunks: ChunkSpec,
    target_shards: ChunkSpec,
    *,
    single: bool,
) -> tuple[str, ...]:
    """Refuse chunk/shard requests that fit no array (see :func:`check_chunk_spec`).

    Returns the paths of the arrays the chunk request applies to (the others keep theirs).
    """
    axes = [ArrayAxes(path, arr.ndim, dimension_names_of(arr)) for path, arr in arrays]
    check_chunk_spec(target_shards, axes, single=single, what="shards")
    return check_chunk_spec(target_chunks, axes, single=single)


def _codec_options(arr: zarr.Array[Any], zarr_format: int, compressors: Any) -> dict[str, Any]:
    same = arr.metadata.zarr_format == zarr_format
    options: dict[str, Any] = {}
    if isinstance(compressors, str):  # a name: "zstd:3", "blosc-zstd", "none", …
        options["compressors"] = compressors_for(compressors, zarr_format)
    elif compressors is not None:
        options["compressors"] = compressors
    elif same:
        options["compressors"] = arr.compressors or None
    if same:
        options["filters"] = arr.filters or None
        if zarr_format == 3:
            options["serializer"] = arr.serializer
    return options


def build_target_documents(
    groups: Sequence[tuple[str, zarr.Group]],
    arrays: Sequence[tuple[str, zarr.Array[Any]]],
    chunks: Mapping[str, tuple[int, ...]],
    shards: Mapping[str, tuple[int, ...] | None],
    *,
    zarr_format: Literal[2, 3],
    compressors: Any = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Create the target hierarchy in memory; return ``(metadata per array, documents)``.

    Attributes, fill values, dimension names (``dimension_names`` in format 3,
    ``_ARRAY_DIMENSIONS`` in format 2) and, within one format, codecs are kept.
    """
    mem = MemoryStore()
    for path, group in groups:
        zarr.create_group(
            mem, path=path, zarr_format=zarr_format, attributes=dict(group.attrs), overwrite=True
        )
    metadata: dict[str, Any] = {}
    for path, arr in arrays:
        attrs = dict(arr.attrs)
        names = dimension_names_of(arr)
        extra: dict[str, Any] = {}
        if zarr_format == 3:
            attrs.pop("_ARRAY_DIMENSIONS", None)
            extra["dimension_names"] = names
        elif names is not None and all(isinstance(n, str) for n in names):
            attrs["_ARRAY_DIMENSIONS"] = list(names)
        if shards.get(path) is not None:
            if zarr_format == 2:
                raise InvalidOptionError(
                    "Shards were requested for a zarr format 2 target, and only format 3 has "
                    "shards. Pass zarr_format=3, or drop target_shards."
                )
            extra["shards"] = shards[path]
        fill = arr.fill_value
        if arr.metadata.zarr_format != zarr_format and names is not None:
            fill = _convert_cf_fill(attrs, fill, arr.dtype, zarr_format)
        if zarr_format == 3 and fill is None:
            fill = 0
        with storage_errors(f"target metadata of {path or '/'}"):
            created = zarr.create_array(
                mem,
                name=path or None,
                shape=arr.shape,
                dtype=arr.dtype,
                chunks=chunks[path],
                fill_value=fill,
                attributes=attrs,
                zarr_format=zarr_format,
                overwrite=True,
                **_codec_options(arr, zarr_format, compressors),
                **extra,
            )
        metadata[path] = created.metadata
    docs = {k: bytes(v.to_bytes()) for k, v in mem._store_dict.items()}
    return metadata, docs


def _convert_cf_fill(attrs: dict[str, Any], fill: Any, dtype: Any, zarr_format: int) -> Any:
    """Keep xarray's missing-value mask across formats.

    xarray masks with the zarr ``fill_value`` in format 2 but with a ``_FillValue``
    attribute (floats base64-encoded) in format 3; convert one into the other.
    """
    kind = np.dtype(dtype).kind if isinstance(dtype, np.dtype) else ""
    if zarr_format == 3 and fill is not None and "_FillValue" not in attrs:
        if kind == "f":
            attrs["_FillValue"] = base64.standard_b64encode(struct.pack("<d", float(fill))).decode()
        elif kind in "iub":
            attrs["_FillValue"] = bool(fill) if kind == "b" else int(fill)
    elif zarr_format == 2:
        if "_FillValue" not in attrs:
            # format 3 needs a fill value and defaults to 0, which xarray ignores; in format
            # 2 xarray would mask it, so a default 0 becomes null (explicit fills are kept)
            default = kind != "" and kind in "iufb" and fill is not None and fill == 0
            return None if default else fill
        raw = attrs.pop("_FillValue")
        if kind == "f" and isinstance(raw, str):
            return struct.unpack("<d", base64.standard_b64decode(raw))[0]
        return raw
    return fill


def write_target_documents(location: Location, documents: Mapping[str, bytes]) -> None:
    """Write metadata documents deepest first, the root's last (its presence means done)."""
    store = location.open_store()
    keys = sorted(documents, key=lambda k: (-k.count("/"), k))
    root = [k for k in keys if "/" not in k]
    rest = [k for k in keys if "/" in k]
    rest_docs = {join_key(location.path, k): documents[k] for k in rest}
    if rest_docs:
        write_keys(store, rest_docs)
    # attributes before the node document in format 2, so .zarray/.zgroup is the last write
    for key in sorted(root, key=lambda k: (k != ".zattrs", k)):
        write_keys(store, {join_key(location.path, key): documents[key]})


def open_from_metadata(location: Location, path: str, metadata: Any) -> zarr.Array[Any]:
    """A zarr array at *path* of *location* from a metadata object (no document read)."""
    store = location.open_store()
    return zarr.Array(zarr.AsyncArray(metadata, StorePath(store, join_key(location.path, path))))


def copy_blocks_task(
    source: Location,
    source_path: str,
    source_metadata: Any,
    target: Location,
    target_path: str,
    target_metadata: Any,
    regions: Sequence[tuple[tuple[int, int], ...]],
    done_keys: Sequence[str | None],
    marker: Location | None,
    *dependencies: Any,
) -> dict[str, int]:
    """Copy blocks (each aligned to the target's stored objects) and mark each one done.

    Runs on a worker; reads ``source[region]`` and writes ``target[region]`` for each region,
    then (for resumable runs) writes an empty ``done`` key in the marker location.
    """
    src = open_from_metadata(source, source_path, source_metadata)
    dst = open_from_metadata(target, target_path, target_metadata)
    written = 0
    # in worker processes (MALLOC_TRIM_THRESHOLD_ set) every chunk-sized codec buffer would
    # be a fresh, zeroed mmap: measured 1.7x the CPU of a block copy (benchmarks/README.md)
    with storage_errors(target.display), heap_allocations(_heap_threshold()):
        for region, done in zip(regions, done_keys, strict=True):
            selection = tuple(slice(a, b) for a, b in region)
            # a selection of slices reads an array (zarr types it as array or scalar)
            data = cast(
                "np.ndarray[Any, Any]",
                read_selection(src, selection, source.display, source_path),
            )
            dst[selection] = data
            written += int(data.nbytes)
            del data
            if marker is not None and done is not None:
                write_keys(marker.open_store(), {join_key(marker.path, done): b""})
    return {"blocks": len(regions), "bytes": written}


def _heap_threshold() -> int | None:
    """``integrity.heap-threshold`` in bytes (``None``: leave malloc alone)."""
    from dask.utils import parse_bytes

    value = get_option("integrity.heap-threshold")
    return None if value is None else int(parse_bytes(str(value)))


def block_bytes(plan: RechunkPlan) -> int:
    """Largest block any stage of *plan* holds in memory."""
    return max(math.prod(s.block) * plan.itemsize for s in plan.stages)
