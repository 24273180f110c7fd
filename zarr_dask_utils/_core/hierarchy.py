"""The hierarchy: which metadata documents a store holds, read concurrently on the cluster.

The graph is: one listing task (a flat, paginated listing of the store) whose result stays
on the cluster, then ``nparts`` tasks that each read their share of the metadata documents
with many requests in flight.  Only the small documents come back to the client.  Pure
helpers turn documents into :class:`NodeInfo` summaries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dask.delayed import Delayed, delayed
from zarr.storage import LocalStore

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.listing import KeyListing, walk_local
from zarr_dask_utils._core.locations import Location
from zarr_dask_utils._core.storeio import join_key, list_keys, read_keys, storage_errors

__all__ = [
    "CONSOLIDATED_V2",
    "GROUP_V2",
    "ARRAY_V2",
    "ATTRS_V2",
    "METADATA_NAMES",
    "ZARR_JSON",
    "NodeInfo",
    "build_read_graph",
    "read_documents_graph",
    "is_metadata_key",
    "list_store_task",
    "node_path",
    "nodes_from_documents",
    "parse_document",
    "read_documents_task",
    "split_key",
    "unreadable_task",
]

ZARR_JSON = "zarr.json"
GROUP_V2 = ".zgroup"
ARRAY_V2 = ".zarray"
ATTRS_V2 = ".zattrs"
CONSOLIDATED_V2 = ".zmetadata"
METADATA_NAMES = frozenset({ZARR_JSON, GROUP_V2, ARRAY_V2, ATTRS_V2, CONSOLIDATED_V2})


def split_key(key: str) -> tuple[str, str]:
    """Split ``"a/b/.zarray"`` into the node path ``"a/b"`` and the name ``".zarray"``."""
    parent, _, name = key.rpartition("/")
    return parent, name


def node_path(key: str) -> str:
    """The node path a metadata key belongs to (``""`` for the root)."""
    return split_key(key)[0]


def is_metadata_key(key: str) -> bool:
    """``True`` for ``zarr.json``, ``.zgroup``, ``.zarray``, ``.zattrs`` and ``.zmetadata``."""
    return split_key(key)[1] in METADATA_NAMES


def parse_document(raw: bytes | None) -> tuple[Any, str | None]:
    """Parse a JSON document: ``(value, None)`` or ``(None, error message)``.

    Never raises for bad bytes: invalid UTF-8, invalid JSON, an empty document and JSON nested
    deeper than Python's recursion limit (``[[[[…``, which ``json.loads`` refuses with a
    ``RecursionError`` after at most that many levels, whatever the document's size) are all
    reported as "not valid JSON".
    """
    if raw is None:
        return None, "missing"
    if not raw.strip():
        return None, "not valid JSON (it is empty: 0 bytes of JSON)"
    try:
        return json.loads(raw), None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not valid JSON ({err})"
    except RecursionError:
        return None, f"not valid JSON (nested too deeply to parse; {len(raw):,} bytes)"


# --- worker tasks -------------------------------------------------------------------------


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
    if exclude_prefix:
        skip = exclude_prefix.rstrip("/") + "/"
        keys = [k for k in keys if not k.startswith(skip)]
        unreadable = {k: v for k, v in unreadable.items() if not k.startswith(skip)}
    return KeyListing(keys, unreadable)


def unreadable_task(listing: KeyListing) -> dict[str, str]:
    """Worker task: what a listing could not read (``{path: reason}``, small)."""
    return dict(getattr(listing, "unreadable", {}))


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
    from zarr_dask_utils._core.graph import task_name

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
    from zarr_dask_utils._core.graph import task_name

    listing = delayed(list_store_task, pure=False)(
        location, exclude_prefix, dask_key_name=task_name("list", location, exclude_prefix)
    )
    return listing, read_documents_graph(location, listing, nparts=nparts)


# --- pure summaries ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What one group or array is: the facts ``zdu info`` prints.

    ``chunks`` is the read/write chunk (inner chunk when sharded), ``shards`` the stored
    object's shape (``None`` when not sharded).
    """

    path: str
    node_type: str
    zarr_format: int
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    chunks: tuple[int, ...] | None = None
    shards: tuple[int, ...] | None = None
    codecs: tuple[str, ...] = ()
    fill_value: Any = None
    dimension_names: tuple[str | None, ...] | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        from zarr_dask_utils._core.reports import json_safe

        return {name: json_safe(getattr(self, name)) for name in self.__slots__}

    def describe(self) -> str:
        """One line: ``/a/b  array  (100, 200) float32  chunks (10, 200)  zstd``."""
        where = "/" + self.path
        if self.node_type != "array":
            return f"{where}  group (v{self.zarr_format})  attrs: {len(self.attributes)}"
        shard = f"  shards {self.shards}" if self.shards else ""
        codecs = ", ".join(self.codecs) or "uncompressed"
        return (
            f"{where}  array (v{self.zarr_format})  {self.shape} {self.dtype}  "
            f"chunks {self.chunks}{shard}  [{codecs}]  fill {self.fill_value!r}"
        )


def _ints(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, list | tuple) and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


def _codec_names_v3(codecs: Iterable[Any]) -> tuple[str, ...]:
    names = []
    for codec in codecs:
        if isinstance(codec, str):
            names.append(codec)
        elif isinstance(codec, Mapping):
            names.append(str(codec.get("name")))
    return tuple(names)


def _node_v3(path: str, doc: Mapping[str, Any]) -> NodeInfo:
    attrs = doc.get("attributes") or {}
    if doc.get("node_type") != "array":
        return NodeInfo(path, "group", 3, attributes=attrs)
    grid = (doc.get("chunk_grid") or {}).get("configuration", {}).get("chunk_shape")
    codecs = list(doc.get("codecs") or [])
    chunks, shards = _ints(grid), None
    if codecs and isinstance(codecs[0], Mapping) and codecs[0].get("name") == "sharding_indexed":
        config = codecs[0].get("configuration", {})
        shards, chunks = chunks, _ints(config.get("chunk_shape"))
        codecs = list(config.get("codecs") or [])
    names = tuple(n for n in _codec_names_v3(codecs) if n != "bytes")
    dims = doc.get("dimension_names")
    return NodeInfo(
        path,
        "array",
        3,
        shape=_ints(doc.get("shape")),
        dtype=str(doc.get("data_type")),
        chunks=chunks,
        shards=shards,
        codecs=names,
        fill_value=doc.get("fill_value"),
        dimension_names=tuple(dims) if isinstance(dims, list) else None,
        attributes=attrs,
    )


def _node_v2(path: str, doc: Mapping[str, Any], attrs: Mapping[str, Any]) -> NodeInfo:
    codecs: list[str] = []
    for f in doc.get("filters") or []:
        if isinstance(f, Mapping):
            codecs.append(str(f.get("id")))
    compressor = doc.get("compressor")
    if isinstance(compressor, Mapping):
        name = str(compressor.get("id"))
        if "cname" in compressor:
            name += f"-{compressor['cname']}"
        codecs.append(name)
    dims = attrs.get("_ARRAY_DIMENSIONS") if isinstance(attrs, Mapping) else None
    return NodeInfo(
        path,
        "array",
        2,
        shape=_ints(doc.get("shape")),
        dtype=str(doc.get("dtype")),
        chunks=_ints(doc.get("chunks")),
        codecs=tuple(codecs),
        fill_value=doc.get("fill_value"),
        dimension_names=tuple(dims) if isinstance(dims, list) else None,
        attributes=attrs,
    )


def nodes_from_documents(docs: Mapping[str, bytes | None]) -> list[NodeInfo]:
    """Summarise every parsable node document (both formats), sorted by path.

    Unparsable documents are skipped here; :func:`zarr_dask_utils.validate_metadata` reports
    them.
    """
    parsed = {k: parse_document(v)[0] for k, v in docs.items()}
    nodes: list[NodeInfo] = []
    for key, doc in parsed.items():
        path, name = split_key(key)
        if not isinstance(doc, Mapping):
            continue
        if name == ZARR_JSON:
            nodes.append(_node_v3(path, doc))
        elif name == ARRAY_V2:
            attrs = parsed.get(join_key(path, ATTRS_V2))
            nodes.append(_node_v2(path, doc, attrs if isinstance(attrs, Mapping) else {}))
        elif name == GROUP_V2:
            attrs = parsed.get(join_key(path, ATTRS_V2))
            nodes.append(
                NodeInfo(path, "group", 2, attributes=attrs if isinstance(attrs, Mapping) else {})
            )
    return sorted(nodes, key=lambda n: (n.path, n.zarr_format))
