"""Metadata differences between two hierarchies (pure), for :func:`compare_stores`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from zarr_dask_utils._core.pure.nodes import NodeInfo
from zarr_dask_utils._core.pure.reports import Finding

__all__ = ["metadata_differences"]

_IGNORED_ATTRS = frozenset({"_ARRAY_DIMENSIONS"})  # format 2 spelling of dimension names


def _dtype(text: str | None) -> Any:
    try:
        return np.dtype(text) if text else None
    except TypeError:
        return text


def _fill(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return "NaN"
    return value


def _attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k not in _IGNORED_ATTRS}


def _layout(node: NodeInfo) -> str:
    shards = f" shards {node.shards}" if node.shards else ""
    return f"format {node.zarr_format} chunks {node.chunks}{shards} {list(node.codecs)}"


def metadata_differences(
    a: Mapping[str, NodeInfo], b: Mapping[str, NodeInfo]
) -> tuple[list[Finding], list[str]]:
    """Findings for nodes, attributes and array metadata that differ; comparable array paths.

    An array is comparable (its chunk data can be compared) when both sides hold it with
    the same shape and dtype.  Chunking and codecs may differ (a rechunked or converted
    copy): that is an ``info`` finding.
    """
    found: list[Finding] = []
    comparable: list[str] = []
    for path in sorted(set(a) | set(b)):
        where = path or "/"
        if path not in b:
            found.append(
                Finding(
                    "error",
                    "node-missing",
                    path,
                    f"{where} exists in the first store only",
                    "copy it",
                )
            )
            continue
        if path not in a:
            found.append(
                Finding(
                    "error", "node-extra", path, f"{where} exists in the second store only", None
                )
            )
            continue
        na, nb = a[path], b[path]
        if na.node_type != nb.node_type:
            found.append(
                Finding(
                    "error",
                    "node-type-differs",
                    path,
                    f"{na.node_type} in the first store, {nb.node_type} in the second",
                )
            )
            continue
        attrs_a, attrs_b = _attrs(na.attributes), _attrs(nb.attributes)
        if attrs_a != attrs_b:
            keys = sorted(
                k for k in set(attrs_a) | set(attrs_b) if attrs_a.get(k) != attrs_b.get(k)
            )
            found.append(
                Finding(
                    "warning",
                    "attributes-differ",
                    path,
                    f"attributes differ: {', '.join(keys)}",
                    "copy the attributes from the first store",
                )
            )
        if na.node_type != "array":
            continue
        dims_a, dims_b = na.dimension_names, nb.dimension_names
        if dims_a and dims_b and tuple(dims_a) != tuple(dims_b):
            found.append(
                Finding(
                    "warning",
                    "dimension-names-differ",
                    path,
                    f"dimension names ({_dims(dims_a)}) vs ({_dims(dims_b)})",
                )
            )
        if na.shape != nb.shape:
            found.append(
                Finding(
                    "error",
                    "shape-differs",
                    path,
                    f"shape {na.shape} vs {nb.shape}; chunk data not compared",
                )
            )
            continue
        if _dtype(na.dtype) != _dtype(nb.dtype):
            found.append(
                Finding(
                    "error",
                    "dtype-differs",
                    path,
                    f"dtype {na.dtype} vs {nb.dtype}; chunk data not compared",
                )
            )
            continue
        if _fill(na.fill_value) != _fill(nb.fill_value):
            found.append(
                Finding(
                    "warning",
                    "fill-value-differs",
                    path,
                    f"fill value {na.fill_value!r} vs {nb.fill_value!r}: chunks that are not "
                    "stored read differently",
                )
            )
        if (na.chunks, na.shards, na.codecs, na.zarr_format) != (
            nb.chunks,
            nb.shards,
            nb.codecs,
            nb.zarr_format,
        ):
            found.append(
                Finding(
                    "info",
                    "encoding-differs",
                    path,
                    f"stored differently ({_layout(na)} vs {_layout(nb)}): values are compared "
                    "after decoding",
                )
            )
        comparable.append(path)
    return found, comparable


def _dims(names: tuple[str | None, ...]) -> str:
    """Dimension names to show: ``unnamed`` for a missing one, never ``None``."""
    return ", ".join("unnamed" if n is None else str(n) for n in names)
