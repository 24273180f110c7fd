"""``analyze_chunks``: read costs of access patterns for the current chunks, and better chunks.

Metadata only: shapes, chunks, shards and dimension names come from
:func:`~zarr_dask_utils.walk_hierarchy` (one Dask graph reading the documents); no chunk is
read.  The arithmetic lives in the pure, shared :mod:`~zarr_dask_utils._core.pure.access_patterns`,
:mod:`~zarr_dask_utils._core.pure.cost_model` and :mod:`~zarr_dask_utils._core.pure.chunk_choice`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from dask.utils import parse_bytes
from distributed import Client

from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.pure.access_patterns import resolve_patterns
from zarr_dask_utils._core.pure.chunk_choice import consistent_chunks, recommend_chunks
from zarr_dask_utils._core.pure.cost_model import CostParams, pattern_cost
from zarr_dask_utils._core.pure.keys import is_metadata_key, node_path
from zarr_dask_utils._core.pure.nodes import NodeInfo
from zarr_dask_utils._core.pure.reports import Finding, sort_findings
from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils.info import HierarchyReport, walk_hierarchy
from zarr_dask_utils.optimize.reports import ChunkAnalysisReport

__all__ = ["analyze_chunks", "dims_of"]


def dims_of(node: NodeInfo) -> tuple[str | None, ...]:
    """Axis names from ``dimension_names`` or ``_ARRAY_DIMENSIONS``, else ``None`` per axis."""
    ndim = len(node.shape or ())
    if node.dimension_names and len(node.dimension_names) == ndim:
        return tuple(node.dimension_names)
    dims = node.attributes.get("_ARRAY_DIMENSIONS") if node.attributes else None
    if isinstance(dims, list) and len(dims) == ndim:
        return tuple(dims)
    return (None,) * ndim


def _bytes(value: int | str | None, key: str) -> int:
    value = get_option(key, value)
    return int(parse_bytes(value) if isinstance(value, str) else value)


#: Variable-length data types (v3 names; v2 spells them ``|O``): costed with the pointer numpy
#: holds per element, so the v2 and v3 copies of the same data get the same analysis.
_VARIABLE_LENGTH = frozenset({"string", "variable_length_bytes", "variable_length_utf8", "|O"})
_POINTER_SIZE = int(np.dtype("O").itemsize)


def _itemsize(dtype: str | None) -> int | None:
    if dtype in _VARIABLE_LENGTH:
        return _POINTER_SIZE
    try:
        return int(np.dtype(dtype).itemsize) if dtype else None
    except (TypeError, ValueError, SyntaxError):
        return None


def _skip_reason(node: NodeInfo, unreadable: set[str], itemsize: int | None) -> str | None:
    """Why *node* gets no costs nor advice (``None``: it is analysed)."""
    if node.path in unreadable:
        return "zarr cannot read its metadata (see the finding at its document)"
    if not node.shape:
        return "it is a scalar (0-d) array: one element, nothing to chunk"
    if itemsize is None:
        return f"the element size of its data type {node.dtype!r} is unknown to the cost model"
    if node.chunks is None:
        return "its chunk grid is not a regular grid the cost model knows"
    return None


def _skipped_findings(skipped: Sequence[Mapping[str, str]]) -> list[Finding]:
    """One finding per array left out of the analysis, with the reason."""
    return [
        Finding(
            "info" if s["reason"].startswith(("zarr cannot", "it is a scalar")) else "warning",
            "array-not-analyzed",
            s["path"],
            f"not analysed: {s['reason']}",
        )
        for s in skipped
    ]


def _array_rows(
    hierarchy: HierarchyReport,
    access_pattern: Any,
    cost_params: CostParams,
    lo: int,
    hi: int,
    shard: int,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, str]]]:
    """Costs now and a recommendation per readable array; the patterns seen; the skipped."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    pattern_rows: dict[str, Any] = {}
    # a node zarr cannot read (negative shape, unknown dtype, …) gets no costs nor advice
    unreadable = {node_path(f.location) for f in hierarchy.findings if is_metadata_key(f.location)}
    for node in hierarchy.arrays:
        itemsize = _itemsize(node.dtype)
        reason = _skip_reason(node, unreadable, itemsize)
        if reason is not None or itemsize is None or not node.shape or node.chunks is None:
            skipped.append({"path": node.path, "reason": reason or "not analysable"})
            continue
        dims = dims_of(node)
        patterns = resolve_patterns(
            access_pattern, node.shape, dims, strict=len(hierarchy.arrays) == 1
        )
        for p in patterns:
            pattern_rows.setdefault(p.name, {"name": p.name, "weight": p.weight})
        current = tuple(
            pattern_cost(p, node.chunks, itemsize, cost_params, shards=node.shards)
            for p in patterns
        )
        rec = recommend_chunks(
            node.shape,
            itemsize,
            patterns,
            current=node.chunks,
            min_bytes=lo,
            max_bytes=hi,
            params=cost_params,
            zarr_format=node.zarr_format,
            shard_bytes=shard,
            dims=dims,
        )
        rows.append(
            {
                "path": node.path,
                "shape": list(node.shape),
                "dtype": node.dtype,
                "dims": list(dims),
                "nbytes": math.prod(node.shape) * itemsize,
                "itemsize": itemsize,
                "chunks": list(node.chunks),
                "shards": list(node.shards) if node.shards else None,
                "zarr_format": node.zarr_format,
                "current": [c.to_dict() for c in current],
                "recommended_chunks": list(rec.chunks),
                "recommended_shards": list(rec.shards) if rec.shards else None,
                "recommended": [c.to_dict() for c in rec.costs],
                "reasoning": rec.reasoning
                + (
                    f"; variable-length elements ({node.dtype}): costed at {itemsize} bytes per "
                    "element (the pointer numpy holds), stored sizes vary"
                    if node.dtype in _VARIABLE_LENGTH
                    else ""
                ),
                "_patterns": patterns,
                "_shards": rec.shards,
            }
        )
    return rows, pattern_rows, skipped


def _align_shared_dimensions(rows: list[dict[str, Any]], cost_params: CostParams) -> None:
    """Give arrays sharing a dimension one chunk size along it (rows updated in place)."""
    aligned = consistent_chunks(
        [{**r, "chunks": r["recommended_chunks"]} for r in rows if any(r["dims"])]
    )
    for r in rows:
        new = aligned.get(r["path"])
        if new is not None and list(new) != r["recommended_chunks"]:
            shards = r["_shards"]
            if shards and any(s % c for s, c in zip(shards, new, strict=True)):
                shards = None
                r["recommended_shards"] = None
            r["recommended_chunks"] = list(new)
            r["recommended"] = [
                pattern_cost(p, new, r["itemsize"], cost_params, shards=shards).to_dict()
                for p in r["_patterns"]
            ]
            r["reasoning"] += "; aligned with arrays sharing its dimensions"
        del r["_patterns"], r["_shards"]


def _mismatch_findings(rows: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """A warning per array whose recommendation is predicted at least twice as fast."""
    findings = []
    for r in rows:
        now = sum(c["seconds"] * c["weight"] for c in r["current"])
        then = sum(c["seconds"] * c["weight"] for c in r["recommended"])
        if then > 0 and now / then >= 2 and r["recommended_chunks"] != r["chunks"]:
            chunks = ",".join(str(c) for c in r["recommended_chunks"])
            findings.append(
                Finding(
                    "warning",
                    "chunking-mismatch",
                    r["path"],
                    f"For the given access pattern(s) chunks {tuple(r['chunks'])} are predicted "
                    f"{now / then:.1f}x slower than {tuple(r['recommended_chunks'])}.",
                    f"zdu rechunk SRC DST --chunks {chunks} --max-mem 256MiB",
                )
            )
    return findings


def analyze_chunks(
    store: StoreLike,
    access_pattern: Any = "sequential",
    *,
    min_chunk_bytes: int | str | None = None,
    max_chunk_bytes: int | str | None = None,
    shard_bytes: int | str | None = None,
    params: CostParams | Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> ChunkAnalysisReport:
    """Analyse every array's chunking for access patterns and recommend better chunks.

    Parameters
    ----------
    store
        Path, URL, zarr Store/Group/Array (format 2 or 3).
    access_pattern
        ``"sequential"``, ``"time-series"``, ``"spatial"``, ``"random"``, a list of them, a
        mapping name → weight, or a list of selections (tuples of slices/ints or mappings of
        dimension name → slice/int), each optionally ``(selection, weight)``.
    min_chunk_bytes, max_chunk_bytes
        Size bounds of a recommended chunk (default ``optimize.min-chunk`` / ``max-chunk``).
    shard_bytes
        Target size of a recommended shard for format 3 (``0``: never recommend shards).
    params
        Cost-model parameters (:class:`~zarr_dask_utils._core.pure.cost_model.CostParams` or a
        mapping of its fields); defaults describe an object store.
    storage_options, client, progress
        As for :func:`~zarr_dask_utils.walk_hierarchy`.

    Returns
    -------
    ChunkAnalysisReport
        Per array: costs per pattern now and with the recommendation, the recommended chunks
        (and shards) and why; arrays sharing a dimension get the same chunk size along it.

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import analyze_chunks
    >>> a = zarr.create_array(zarr.storage.MemoryStore(), shape=(100, 50), chunks=(1, 50),
    ...                       dtype="f4", dimension_names=("time", "x"))
    >>> r = analyze_chunks(a, "time-series", min_chunk_bytes=400, progress=False)
    >>> r.recommended("")[0]
    100
    """
    lo = _bytes(min_chunk_bytes, "optimize.min-chunk")
    hi = _bytes(max_chunk_bytes, "optimize.max-chunk")
    shard = _bytes(shard_bytes, "optimize.shard-size")
    cost_params = params if isinstance(params, CostParams) else CostParams(**dict(params or {}))
    with operation("analyze", client=client, progress=progress) as op:
        location = op.open(store, storage_options=storage_options, probe=False)
        # the walk (nested: this operation's client) probes the location, then reads it
        hierarchy = walk_hierarchy(location, client=client, progress=progress)
    rows, pattern_rows, skipped = _array_rows(hierarchy, access_pattern, cost_params, lo, hi, shard)
    _align_shared_dimensions(rows, cost_params)
    findings = list(hierarchy.findings) + _mismatch_findings(rows) + _skipped_findings(skipped)
    return ChunkAnalysisReport(
        location=hierarchy.location,
        engine=hierarchy.engine,
        findings=sort_findings(findings),
        arrays=tuple(rows),
        skipped=tuple(skipped),
        patterns=tuple(pattern_rows.values()),
        bounds={
            "min_chunk_bytes": lo,
            "max_chunk_bytes": hi,
            "shard_bytes": shard,
            "params": cost_params.to_dict(),
        },
    )
