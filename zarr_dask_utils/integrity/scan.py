"""Check the data of a hierarchy: chunk inventory from one listing, and a deep decode scan.

The inventory (always): one listing with sizes on a worker, the metadata documents read
from it, and the inventory built next to the listing; only the documents and the small
inventory reach the client.  The decode scan (``deep=True``): batches of about
``integrity.batch-bytes`` uncompressed bytes, each decoding its objects with numcodecs
directly (:mod:`~zarr_dask_utils._core.decoding.direct_decoder`) or, for other codec
chains, with zarr's pipeline; results are reduced in a tree.  When the client knows the arrays
without a listing (a root array, consolidated metadata) both run in one graph, re-planned if
the stored documents differ.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dask.base import annotate
from dask.delayed import Delayed
from dask.utils import parse_bytes
from distributed import Client

from zarr_dask_utils._core.checks.codecs import unavailable_codecs
from zarr_dask_utils._core.compute.inventory_graph import build_inventory_graph
from zarr_dask_utils._core.compute.operation import Operation, operation
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.decoding.pipeline_decoder import DecodeResult
from zarr_dask_utils._core.pure.chunkgrid import grid_from_document
from zarr_dask_utils._core.pure.inventory import Inventory, array_documents, itemsize_of
from zarr_dask_utils._core.pure.keys import (
    ARRAY_V2,
    CONSOLIDATED_V2,
    ZARR_JSON,
    join_key,
    parse_document,
    split_key,
)
from zarr_dask_utils._core.pure.naming import option_text
from zarr_dask_utils._core.pure.partition import largest_first, plan_batches, two_rounds
from zarr_dask_utils._core.pure.reports import sort_findings
from zarr_dask_utils._core.storage.draft_v3 import check_no_nested_draft_v3
from zarr_dask_utils._core.storage.locations import Location, StoreLike
from zarr_dask_utils._core.storage.probe import Probe
from zarr_dask_utils._core.storage.storeio import read_keys, storage_errors
from zarr_dask_utils.integrity.findings import decode_findings, metadata_findings
from zarr_dask_utils.integrity.misread import misread_findings
from zarr_dask_utils.integrity.plan import MISSING_NOTE, MissingPolicy, inventory_findings
from zarr_dask_utils.integrity.reports import IntegrityReport
from zarr_dask_utils.integrity.scan_tasks import (
    Work,
    ask_for_processes,
    merge_results,
    run_scan,
    scan_batch_task,
    scan_graph,
)

__all__ = [
    "ask_for_processes",
    "check_data_integrity",
    "merge_results",
    "run_scan",
    "scan_batch_task",
    "scan_graph",
]

logger = logging.getLogger(__name__)

# --- helpers ----------------------------------------------------------------------------------


def array_summaries(inv: Inventory, stats: Mapping[str, Any] | None) -> tuple[dict[str, Any], ...]:
    """Per-array summary dicts, with value statistics when a NaN check ran."""
    out = []
    for path in sorted(inv.arrays):
        summary = inv.arrays[path].summary()
        if stats is not None and path in stats:
            s = stats[path]
            summary.update(nan=s.nan, inf=s.inf, min=s.min, max=s.max)
        out.append(summary)
    return tuple(out)


def read_inventory(
    op: Operation,
    *,
    also: Sequence[Delayed] = (),
    nparts: int = 4,
) -> tuple[dict[str, Any], dict[str, str], Inventory, str, DecodeResult]:
    """One listing with sizes, the documents, the inventory beside the listing.

    Runs one graph of *op* on its ``source`` location.  *also* (decode tasks planned without
    the listing) run in the same graph; their merged result is returned last (an empty
    :class:`DecodeResult` without them).  *nparts* tasks read the documents.
    """
    location = op.locations["source"]
    backup = str(get_option("metadata.backup-prefix"))
    # the listing chain first: short tasks that would otherwise wait behind decode batches
    with annotate(priority=100):
        _, raw, inv = build_inventory_graph(location, exclude_prefix=backup, nparts=nparts)
    result = op.run([raw, inv, *also])
    raw_docs, inventory = result[0], result[1]
    check_no_nested_draft_v3(raw_docs, location.display)  # draft v3 below the root: refuse
    decoded = merge_results(*result[2:])
    docs: dict[str, Any] = {}
    broken: dict[str, str] = {}
    for key, value in raw_docs.items():
        if key.startswith(backup.rstrip("/") + "/"):
            continue
        doc, error = parse_document(value)
        if error is None:
            docs[key] = doc
        elif value is not None:
            broken[key] = error
    return docs, broken, inventory, result.engine, decoded


def decode_layout(name: str, doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """What decoding an array's objects depends on: grid, data type and codecs (no attributes)."""
    grid = grid_from_document("", name, doc)
    codecs: tuple[Any, ...]
    if name == ARRAY_V2:
        codecs = (doc.get("dtype"), doc.get("compressor"), doc.get("filters"), doc.get("order"))
    else:
        codecs = (doc.get("data_type"), doc.get("codecs"))
    return (name, grid, repr(codecs))


def chunk_sizes(
    arrays: Mapping[str, tuple[str, Mapping[str, Any]]],
) -> dict[str, tuple[int, int]]:
    """Per array with a known grid: ``(number of chunks, uncompressed bytes of one chunk)``."""
    sizes: dict[str, tuple[int, int]] = {}
    for path, (name, doc) in arrays.items():
        grid = grid_from_document(path, name, doc)
        if grid is not None:
            sizes[path] = (grid.nchunks, math.prod(grid.chunks) * (itemsize_of(name, doc) or 8))
    return sizes


def array_work(
    arrays: Mapping[str, tuple[str, Mapping[str, Any]]], batch_bytes: int, parallelism: int = 1
) -> list[Work]:
    """Batches of every array's objects for the deep scan, planned from the array documents.

    *parallelism* (the cluster's threads) evens the batches out, see :func:`plan_batches`,
    with at least two rounds per thread on small scans (:func:`two_rounds`); batches come
    largest first, the order :func:`scan_graph` gives them as priorities.
    """
    sizes = chunk_sizes(arrays)
    formats = {path: 2 if arrays[path][0] == ARRAY_V2 else 3 for path in sizes}
    total = sum(n * per for n, per in sizes.values())
    per_batch = two_rounds(total, batch_bytes, parallelism)
    batches = largest_first(plan_batches(sizes, per_batch, parallelism), sizes)
    return [
        tuple((s.path, formats[s.path], range(s.start, s.stop)) for s in batch) for batch in batches
    ]


def known_arrays(
    location: Location, probe: Probe
) -> dict[str, tuple[str, Mapping[str, Any]]] | None:
    """The array documents the client learns without a listing, or ``None``.

    The root array's own document, or every array of the consolidated metadata (``zarr.json``
    of a format 3 group, ``.zmetadata`` of a format 2 group).  The deep scan plans from these
    while the listing runs, and re-plans if the documents actually stored differ (stale
    consolidated metadata).  The root documents come from *probe*; only ``.zmetadata`` is read.
    """
    root = parse_document(probe.documents.get(ZARR_JSON))[0]
    if isinstance(root, Mapping):
        if root.get("node_type") == "array":
            return {"": (ZARR_JSON, root)}
        consolidated = root.get("consolidated_metadata")
        if isinstance(consolidated, Mapping) and isinstance(consolidated.get("metadata"), Mapping):
            listed = {f"{p}/{ZARR_JSON}": d for p, d in consolidated["metadata"].items()}
            return array_documents(listed)
        return None
    v2_array = parse_document(probe.documents.get(ARRAY_V2))[0]
    if isinstance(v2_array, Mapping):
        return {"": (ARRAY_V2, v2_array)}
    key = join_key(location.path, CONSOLIDATED_V2)
    with storage_errors(location.display):
        v2_consolidated = parse_document(read_keys(location.open_store(), [key])[key])[0]
    if isinstance(v2_consolidated, Mapping) and isinstance(
        v2_consolidated.get("metadata"), Mapping
    ):
        return array_documents(v2_consolidated["metadata"])
    return None


def same_layouts(
    planned: Mapping[str, tuple[str, Mapping[str, Any]]],
    actual: Mapping[str, tuple[str, Mapping[str, Any]]],
) -> bool:
    """``True`` when a plan made from *planned* decodes exactly the arrays of *actual*."""
    if set(planned) != set(actual):
        return False
    return all(decode_layout(*planned[p]) == decode_layout(*actual[p]) for p in actual)


def _run_check(
    op: Operation, *, deep: bool, nan_check: bool
) -> tuple[dict[str, Any], dict[str, str], Inventory, str, DecodeResult, float]:
    """The graphs of a check: inventory, and (deep) the decode scan, in one when possible."""
    location, probe = op.locations["source"], op.probes["source"]
    batch = parse_bytes(str(get_option("integrity.batch-bytes")))
    planned = known_arrays(location, probe) if deep else None
    if planned is not None:  # an array whose codec is not installed is not decoded at all
        planned = {p: d for p, d in planned.items() if not unavailable_codecs(d[1])}
        ask_for_processes(op, chunk_sizes(planned))  # before op.threads starts the client
    threads = op.threads
    start = time.perf_counter()
    tree: list[Delayed] = []
    if planned is not None:  # decode while the listing runs, in the same graph
        work = array_work(planned, batch, threads)
        tree = scan_graph(location, work, op=op.name, stats=nan_check)
    # a few known arrays: one task reads the documents (each task is a scheduling round trip)
    per_task = int(get_option("io.documents-per-task"))
    nparts = 4 if planned is None else max(1, min(4, -(-2 * len(planned) // per_task)))
    docs, broken, inv, engine, decoded = read_inventory(op, also=tree, nparts=nparts)
    if not deep:
        return docs, broken, inv, engine, DecodeResult(), 0.0
    invalid = {
        split_key(f.location)[0]
        for f in metadata_findings(docs, broken)
        if f.code in ("array-metadata-invalid", "codec-unavailable")
    }
    arrays = {p: d for p, d in array_documents(docs).items() if p not in invalid}
    if planned is None or not same_layouts(planned, arrays):
        if planned is not None:
            logger.info("the consolidated metadata of %s is stale: re-planning", location.display)
        work = array_work(arrays, batch, threads)
        decoded, _ = run_scan(op, work, stats=nan_check)
    for path in invalid:
        decoded.unreadable.pop(path, None)
    seconds = time.perf_counter() - start
    logger.debug("deep scan of %s in %.2f s", location.display, seconds)
    return docs, broken, inv, engine, decoded, seconds


# --- public API -----------------------------------------------------------------------------


def check_data_integrity(
    store: StoreLike,
    *,
    deep: bool = False,
    nan_check: bool = False,
    missing_chunks: MissingPolicy = "info",
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> IntegrityReport:
    """Check a hierarchy's chunk data; with ``deep=True`` decode every chunk.

    Shallow: zarr parses every array document, and a chunk inventory from one listing finds
    chunk keys outside the grid, malformed keys, zero-byte and impossibly small or large
    objects, ``<key>.<uuid>.partial`` leftovers of interrupted writes, stray objects, and
    counts chunks that are not stored.  Deep: every stored object is decoded on the cluster
    (many per task; numcodecs directly for plain codec chains, zarr's own pipeline for the
    others, with the same findings); each failure is reported with its key and reason
    (``chunk-decode-error``, ``chunk-wrong-size``, ``chunk-checksum-mismatch``).

    A chunk that is not stored reads as the fill value, so a *deleted* chunk cannot be told
    from one never written by decoding: missing chunks are ``info`` unless
    ``missing_chunks="error"``; a manifest (:func:`create_manifest`) catches deletions.

    Parameters
    ----------
    store
        A path, URL, zarr Store/Group/Array or fsspec mapper.
    deep
        Decode every stored chunk.
    nan_check
        With ``deep``, also count NaN/Inf and the value range of every array.
    missing_chunks
        Severity of the ``chunks-missing`` finding: ``"info"``, ``"warning"`` or ``"error"``.
    storage_options
        fsspec options for URLs.
    client
        Dask client (default: the current one, a configured scheduler or an embedded cluster).
    progress
        Show a progress bar (``None``: when interactive).

    Returns
    -------
    IntegrityReport

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import check_data_integrity
    >>> store = zarr.storage.MemoryStore()
    >>> zarr.create_array(store, shape=(4,), chunks=(2,), dtype="i4")[:] = 1
    >>> check_data_integrity(store, deep=True, progress=False).ok
    True
    """
    if missing_chunks not in ("info", "warning", "error"):
        from zarr_dask_utils._core.errors import InvalidOptionError

        raise InvalidOptionError(
            f"missing_chunks={missing_chunks!r} is not one of 'info', 'warning', 'error'."
        )
    with operation("check", client=client, progress=progress) as op:  # both graphs: one client
        location = op.open(store, storage_options=storage_options)
        probe = op.probes["source"]
        docs, broken, inv, engine, decoded, seconds = _run_check(op, deep=deep, nan_check=nan_check)
    findings = metadata_findings(docs, broken)
    findings += misread_findings(location, docs)
    findings += inventory_findings(inv, missing_chunks=missing_chunks)
    notes = [MISSING_NOTE] if any(a.missing for a in inv.arrays.values()) else []
    if deep:
        findings += decode_findings(decoded)
    else:
        notes.append(f"shallow check: chunks were not decoded (use {option_text('deep', True)})")
    return IntegrityReport(
        location=location.display,
        engine=engine,
        findings=sort_findings(findings),
        zarr_format=probe.zarr_format,
        deep=deep,
        objects=inv.objects,
        stored_bytes=inv.total_bytes,
        arrays=array_summaries(inv, decoded.stats if nan_check else None),
        chunks_decoded=decoded.decoded,
        bytes_decoded=decoded.decoded_bytes,
        seconds=seconds,
        notes=tuple(notes),
    )
