"""``diagnose_zarr_store`` (``zdu doctor``): facts, sizes and findings for a whole store.

One Dask graph lists the store with object sizes on a worker, reads every metadata document
concurrently, and builds the chunk inventory next to the listing, so only small per-array
counts travel to the client (a store of 100,000+ objects never crosses the network as a
listing).  The pure rules in :mod:`~zarr_dask_utils.debug.diagnose_rules` turn the facts into
findings, and the shared metadata checks (:mod:`zarr_dask_utils._core.checks`) add every
``validate_metadata`` finding from the same documents and listing (no second graph).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask.delayed import delayed
from distributed import Client

from zarr_dask_utils._core.checks.hierarchy import (
    check_documents,
    chunk_check_task,
    consolidated_status,
)
from zarr_dask_utils._core.checks.zip_advice import advice_for_zip
from zarr_dask_utils._core.compute.inventory_graph import build_inventory_graph
from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.pure.inventory import Inventory
from zarr_dask_utils._core.pure.nodes import NodeInfo, nodes_from_documents
from zarr_dask_utils._core.pure.reports import Report, sort_findings
from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils.debug.diagnose_rules import (
    ArrayDiagnosis,
    array_findings,
    dimension_findings,
    human_bytes,
    limits_from,
    store_findings,
)

__all__ = ["DiagnosisReport", "diagnose_zarr_store"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DiagnosisReport(Report):
    """What ``zdu doctor`` found: store facts, one :class:`ArrayDiagnosis` per array, findings."""

    zarr_format: int
    consolidated: str
    groups: int
    arrays: tuple[ArrayDiagnosis, ...] = ()
    objects: int = 0
    total_bytes: int = 0
    title = "Diagnosis"

    def summary_lines(self) -> Sequence[str]:
        """Store facts, then one line per array."""
        head = (
            f"zarr format {self.zarr_format}: {self.groups} group(s), {len(self.arrays)} "
            f"array(s); {self.objects} object(s), {human_bytes(self.total_bytes)}; "
            f"consolidated metadata: {self.consolidated}"
        )
        return [head, *(a.describe() for a in self.arrays)]


def _counts(inv: Inventory) -> dict[str, tuple[int, int, int, tuple[str, ...]]]:
    return {
        path: (a.expected, a.present, a.stored_bytes, tuple(a.missing_keys))
        for path, a in inv.arrays.items()
    }


def _itemsize(dtype: str | None) -> int | None:
    try:
        dt = np.dtype(dtype) if dtype else None
    except TypeError:
        return None
    return None if dt is None or dt.hasobject or dt.itemsize == 0 else int(dt.itemsize)


def _diagnosis(
    node: NodeInfo, counts: Mapping[str, tuple[int, int, int, tuple[str, ...]]]
) -> ArrayDiagnosis:
    expected, present, stored, missing_keys = counts.get(node.path, (0, 0, 0, ()))
    return ArrayDiagnosis(
        path=node.path,
        zarr_format=node.zarr_format,
        shape=node.shape or (),
        dtype=str(node.dtype),
        chunks=node.chunks or (),
        shards=node.shards,
        codecs=node.codecs,
        fill_value=node.fill_value,
        dimension_names=node.dimension_names,
        itemsize=_itemsize(node.dtype),
        objects_expected=expected,
        objects_present=present,
        stored_bytes=stored,
        missing_keys=missing_keys,
    )


def diagnose_zarr_store(
    store: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> DiagnosisReport:
    """Diagnose a store: sizes, chunking, compression, sparsity, layout and metadata.

    Parameters
    ----------
    store
        A path, URL, zarr Store/Group/Array or fsspec mapper.
    storage_options
        fsspec options for URLs.
    client
        Dask client (default: current, configured, or an embedded LocalCluster).
    progress
        Show a progress bar (``None``: only when a human watches).

    Returns
    -------
    DiagnosisReport
        Per array: shape, dtype, chunk and shard shape, uncompressed chunk size, mean stored
        object size, objects expected vs present, compression ratio, codecs, fill value;
        per store: object count, total bytes, consolidated status; then findings (chunks too
        small/large, too many objects, chunking against the obvious access pattern,
        uncompressed data, format 2 stores that sharding would help, dimension mismatches,
        and every :func:`~zarr_dask_utils.validate_metadata` finding).

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import diagnose_zarr_store
    >>> g = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    >>> a = g.create_array("t", shape=(1000,), chunks=(10,), dtype="f4", compressors=None)
    >>> a[:] = 1.0
    >>> sorted({f.code for f in diagnose_zarr_store(g, progress=False).findings})
    ['chunks-too-small', 'consolidated-missing', 'uncompressed']
    """
    with operation("doctor", client=client, progress=progress) as op:
        location = op.open(store, storage_options=storage_options)
        probe = op.probes["source"]
        sizes, raw, inventory = build_inventory_graph(location)
        keys = delayed(chunk_check_task, pure=False)(
            sizes, raw, probe.zarr_format, dask_key_name=task_name("check-chunk-keys", location)
        )
        result = op.run([raw, inventory, keys])
    documents, inv, (key_findings, _) = result
    # every validate_metadata check, on the documents and listing this graph already has
    parsed, findings = check_documents(documents, probe.zarr_format, where=location.display)
    findings += key_findings
    limits = limits_from(get_option("doctor") or {})
    nodes = nodes_from_documents(documents)
    counts = _counts(inv)
    arrays = tuple(_diagnosis(n, counts) for n in nodes if n.node_type == "array")
    for arr in arrays:
        findings += array_findings(arr, limits)
    findings += dimension_findings(arrays)
    findings += store_findings(inv.objects, limits)
    if location.kind == "zip":  # zdu does not write into a zip: advice for a copy
        findings = advice_for_zip(findings, location.path)
    return DiagnosisReport(
        location=location.display,
        engine=result.engine,
        findings=sort_findings(findings),
        zarr_format=probe.zarr_format,
        consolidated=consolidated_status(parsed, findings),
        groups=sum(n.node_type == "group" for n in nodes),
        arrays=arrays,
        objects=inv.objects,
        total_bytes=inv.total_bytes,
    )
