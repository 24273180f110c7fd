"""What each node of a hierarchy is, summarised from its metadata documents (pure).

:class:`NodeInfo` is the fact sheet ``zdu info`` prints; :func:`nodes_from_documents` builds
them from the raw documents a graph read (both formats), without I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zarr_dask_utils._core.pure.keys import (
    ARRAY_V2,
    ATTRS_V2,
    GROUP_V2,
    ZARR_JSON,
    join_key,
    parse_document,
    shadowed_v2_documents,
    split_key,
)
from zarr_dask_utils._core.pure.reports import json_safe

__all__ = ["NodeInfo", "nodes_from_documents"]


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
    them.  A node with both ``zarr.json`` and ``.zarray``/``.zgroup`` is one node, read as
    zarr-python 3 reads it (see :func:`~zarr_dask_utils._core.pure.keys.shadowed_v2_documents`).
    """
    present = [k for k, v in docs.items() if v is not None]
    hidden = {k for keys in shadowed_v2_documents(present).values() for k in keys}
    if ZARR_JSON not in present and (GROUP_V2 in present or ARRAY_V2 in present):
        # a format 2 hierarchy reads its children's .zarray/.zgroup, never their zarr.json
        v2_paths = {split_key(k)[0] for k in present if split_key(k)[1] in (ARRAY_V2, GROUP_V2)}
        hidden = {join_key(p, ZARR_JSON) for p in v2_paths}
    parsed = {k: parse_document(v)[0] for k, v in docs.items() if k not in hidden}
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
