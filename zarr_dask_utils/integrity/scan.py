"""Check the data of a hierarchy: chunk inventory from one listing, and a deep decode scan.

Graph 1 (always): one listing with sizes on a worker, the metadata documents read from it,
and the inventory built next to the listing; only the documents and the small inventory
reach the client.  Graph 2 (``deep=True``): batches of about ``integrity.batch-bytes``
uncompressed bytes, planned from the metadata, each decoding its objects with zarr's codec
pipeline; results are reduced in a tree.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from dask.delayed import Delayed, delayed
from dask.utils import parse_bytes
from distributed import Client

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.graph import run_graph, task_name
from zarr_dask_utils._core.hierarchy import (
    ARRAY_V2,
    ZARR_JSON,
    parse_document,
    split_key,
)
from zarr_dask_utils._core.inventory import Inventory, itemsize_of
from zarr_dask_utils._core.inventory_graph import build_inventory_graph
from zarr_dask_utils._core.locations import Location, StoreLike, resolve_location
from zarr_dask_utils._core.probe import probe_location
from zarr_dask_utils._core.reports import sort_findings
from zarr_dask_utils._core.storeio import storage_errors
from zarr_dask_utils.integrity.decode import (
    DecodeResult,
    blosc_threads,
    decode_objects,
    grid_of,
    open_array,
)
from zarr_dask_utils.integrity.findings import decode_findings, metadata_findings
from zarr_dask_utils.integrity.plan import (
    MISSING_NOTE,
    MissingPolicy,
    inventory_findings,
    plan_batches,
)
from zarr_dask_utils.integrity.reports import IntegrityReport

__all__ = ["check_data_integrity", "scan_batch_task"]

logger = logging.getLogger(__name__)

Work = tuple[tuple[str, int, Sequence[int]], ...]  # (array path, zarr format, grid indices)


# --- worker tasks ---------------------------------------------------------------------------


def scan_batch_task(
    location: Location,
    work: Work,
    stats: bool,
    concurrency: int,
    nthreads: int | None,
) -> DecodeResult:
    """Worker task: decode every object of *work*; returns bad keys, counts and statistics."""
    result = DecodeResult()
    with storage_errors(location.display), blosc_threads(nthreads):
        store = location.open_store()
        for path, fmt, indices in work:
            try:
                array = open_array(store, location.path, path, fmt)
                grid = grid_of(array, path)
            except Exception as err:
                result.unreadable[path] = f"{type(err).__name__}: {err}"
                continue
            decode_objects(
                array,
                grid,
                list(indices),
                result=result,
                key_prefix=path,
                concurrency=concurrency,
                stats=stats,
            )
    return result


def merge_results(*parts: DecodeResult) -> DecodeResult:
    """Tree-reduction step: fold several task results into one."""
    total = DecodeResult()
    for part in parts:
        total.merge(part)
    return total


def reduce_tree(parts: list[Delayed], op: str, token: Any, split_every: int = 8) -> Delayed:
    """Combine delayed :class:`DecodeResult` objects *split_every* at a time."""
    level = 0
    if not parts:
        return delayed(DecodeResult)()
    while len(parts) > 1:
        parts = [
            delayed(merge_results, pure=False)(
                *parts[i : i + split_every],
                dask_key_name=task_name(f"{op}-reduce", token, level, i),
            )
            for i in range(0, len(parts), split_every)
        ]
        level += 1
    return parts[0]


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
    location: Location, *, op: str, client: Client | None, progress: bool | None
) -> tuple[dict[str, Any], dict[str, str], Inventory, str]:
    """Graph 1: one listing with sizes, the documents, the inventory beside the listing."""
    backup = str(get_option("metadata.backup-prefix"))
    _, raw, inv = build_inventory_graph(location, exclude_prefix=backup)
    result = run_graph([raw, inv], location=location, op=op, client=client, progress=progress)
    raw_docs, inventory = result
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
    return docs, broken, inventory, result.engine


def array_work(inv: Inventory, docs: Mapping[str, Any], batch_bytes: int) -> list[Work]:
    """Batches of every array's objects for the deep scan."""
    sizes: dict[str, tuple[int, int]] = {}
    formats: dict[str, int] = {}
    for path, arr in inv.arrays.items():
        name = ARRAY_V2 if arr.zarr_format == 2 else ZARR_JSON
        doc = docs.get(f"{path}/{name}" if path else name, {})
        itemsize = itemsize_of(name, doc) or 8
        sizes[path] = (arr.expected, math.prod(arr.grid.chunks) * itemsize)
        formats[path] = arr.zarr_format
    return [
        tuple((s.path, formats[s.path], range(s.start, s.stop)) for s in batch)
        for batch in plan_batches(sizes, batch_bytes)
    ]


def scan_graph(location: Location, work: list[Work], *, op: str, stats: bool) -> Delayed:
    """Graph 2: one task per batch of work, reduced in a tree."""
    concurrency = int(get_option("io.concurrency"))
    nthreads = get_option("integrity.blosc-threads")
    tasks = [
        delayed(scan_batch_task, pure=False)(
            location,
            w,
            stats,
            concurrency,
            nthreads,
            dask_key_name=task_name(f"{op}-decode", location, i, len(work)),
        )
        for i, w in enumerate(work)
    ]
    return reduce_tree(tasks, op, (location, len(work)))


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
    counts chunks that are not stored.  Deep: every stored object is decoded by zarr's own
    codec pipeline on the cluster (many per task); each failure is reported with its key and
    reason (``chunk-decode-error``, ``chunk-wrong-size``, ``chunk-checksum-mismatch``).

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
    location = resolve_location(store, storage_options=storage_options)
    probe = probe_location(location)
    docs, broken, inv, engine = read_inventory(
        location, op="check", client=client, progress=progress
    )
    findings = metadata_findings(docs, broken)
    findings += inventory_findings(inv, missing_chunks=missing_chunks)
    invalid = {split_key(f.location)[0] for f in findings if f.code == "array-metadata-invalid"}
    notes = [MISSING_NOTE] if any(a.missing for a in inv.arrays.values()) else []
    decoded = DecodeResult()
    seconds = 0.0
    if deep:
        for path in invalid:
            inv.arrays.pop(path, None)
        batch = parse_bytes(str(get_option("integrity.batch-bytes")))
        work = array_work(inv, docs, batch)
        start = time.perf_counter()
        result = run_graph(
            [scan_graph(location, work, op="check", stats=nan_check)],
            location=location,
            op="check",
            client=client,
            progress=progress,
        )
        seconds = time.perf_counter() - start
        decoded = result[0]
        findings += decode_findings(decoded)
        logger.debug("deep scan of %s: %d tasks in %.1f s", location.display, len(work), seconds)
    else:
        notes.append("shallow check: chunks were not decoded (use deep=True / --deep)")
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
