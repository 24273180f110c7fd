"""Compare two hierarchies: metadata and attributes, then every chunk in parallel.

Graph 1 reads both hierarchies' metadata documents on the cluster.  Graph 2 compares the
chunk data of every array both sides hold with the same shape and dtype.  When both sides
store identical array documents (same codecs, chunking and key encoding) it compares raw
bytes, in batches planned over the storage grid; raw bytes that differ are compared as values
too, so an equivalent encoding of the same numbers is not reported.  Otherwise (a rechunked
or converted copy) it compares decoded values, both sides read once as Dask arrays in blocks
of the first side's storage chunks (:mod:`~zarr_dask_utils.integrity.valuediff`).  NaN equals
NaN; ``rtol``/``atol`` set the tolerance.  A chunk that cannot be decoded, on either side and
in either mode, becomes a ``chunk-unreadable`` finding and the comparison goes on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from dask.delayed import Delayed, delayed
from dask.utils import parse_bytes
from distributed import Client

from zarr_dask_utils._core.compute.hierarchy_graph import build_read_graph
from zarr_dask_utils._core.compute.operation import Operation, operation
from zarr_dask_utils._core.compute.reduce import tree_reduce
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.decoding.block_reader import read_region
from zarr_dask_utils._core.decoding.pipeline_decoder import grid_of, open_array
from zarr_dask_utils._core.errors import ChunkUnreadableError
from zarr_dask_utils._core.pure.chunkgrid import grid_from_document
from zarr_dask_utils._core.pure.inventory import itemsize_of
from zarr_dask_utils._core.pure.keys import ARRAY_V2, ZARR_JSON, join_key, parse_document
from zarr_dask_utils._core.pure.nodes import NodeInfo, nodes_from_documents
from zarr_dask_utils._core.pure.partition import plan_batches
from zarr_dask_utils._core.pure.reports import Finding, sort_findings
from zarr_dask_utils._core.storage.draft_v3 import check_no_nested_draft_v3
from zarr_dask_utils._core.storage.locations import Location, StoreLike
from zarr_dask_utils._core.storage.objectstream import StreamSettings, stream_objects
from zarr_dask_utils._core.storage.storeio import storage_errors
from zarr_dask_utils.integrity.metadiff import metadata_differences
from zarr_dask_utils.integrity.reports import ComparisonReport
from zarr_dask_utils.integrity.tolerant_blocks import unreadable_reason
from zarr_dask_utils.integrity.valuediff import (
    ArrayDiff,
    compare_values,
    merge_diffs,
    value_diff_tasks,
)

__all__ = [
    "ArrayDiff",
    "ComparePlan",
    "compare_batch_task",
    "compare_stores",
    "compare_values",
    "comparison_graph",
    "plan_comparison",
    "same_bytes",
]

# (path, format a, format b, raw mode, grid indices)
CompareWork = tuple[tuple[str, int, int, bool, Sequence[int]], ...]


def same_bytes(a: memoryview | None, b: memoryview | None) -> bool:
    """``True`` when two stored objects hold the same bytes (two missing ones are equal)."""
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and bool(
        np.array_equal(np.frombuffer(a, dtype=np.uint8), np.frombuffer(b, dtype=np.uint8))
    )


def _read_both(
    arr_a: Any, arr_b: Any, region: tuple[slice, ...], key: str, loc_a: Location, loc_b: Location
) -> tuple[Any, Any, str]:
    """The chunk's values on both sides, or a reason naming the side(s) that cannot be read."""
    values, reasons = [], []
    for side, arr, loc in (("a", arr_a, loc_a), ("b", arr_b, loc_b)):
        try:
            values.append(read_region(arr, region, key, loc.display))
        except ChunkUnreadableError as err:
            reasons.append(unreadable_reason(err, side))
            values.append(None)
    return values[0], values[1], "; ".join(reasons)


def compare_batch_task(
    loc_a: Location,
    loc_b: Location,
    work: CompareWork,
    rtol: float,
    atol: float,
    settings: StreamSettings,
) -> dict[str, ArrayDiff]:
    """Worker task: compare the objects of *work* in both stores."""
    out: dict[str, ArrayDiff] = {}
    with storage_errors(f"{loc_a.display} / {loc_b.display}"):
        store_a, store_b = loc_a.open_store(), loc_b.open_store()
        for path, fmt_a, fmt_b, raw_mode, indices in work:
            arr_a = open_array(store_a, loc_a.path, path, fmt_a)
            arr_b = open_array(store_b, loc_b.path, path, fmt_b)
            grid = grid_of(arr_a, path)
            diff = out.setdefault(path, ArrayDiff())
            coords = [grid.coords(i) for i in indices]
            same: set[int] = set()
            if raw_mode:
                keys = [grid.key(c) for c in coords]
                depth = settings.depth(math.prod(grid.chunks) * arr_a.dtype.itemsize)
                streams = [
                    stream_objects(st, [join_key(arr.path, k) for k in keys], depth=depth)
                    for st, arr in ((store_a, arr_a), (store_b, arr_b))
                ]
                same = {
                    i for i, (va, vb) in enumerate(zip(*streams, strict=True)) if same_bytes(va, vb)
                }
            for i, c in enumerate(coords):
                key = join_key(path, grid.key(c))
                if i in same:
                    diff.record(key, 0, 0.0)
                    continue
                region = grid.region(c)  # same chunking on both sides: one chunk each
                x, y, reason = _read_both(arr_a, arr_b, region, key, loc_a, loc_b)
                if reason:  # a finding; the comparison goes on
                    diff.record_unreadable(key, reason)
                    continue
                n, gap = compare_values(x, y, rtol=rtol, atol=atol)
                diff.record(key, n, gap)
    return out


def _array_doc(docs: Mapping[str, Any], node: NodeInfo) -> tuple[str, Any]:
    name = ARRAY_V2 if node.zarr_format == 2 else ZARR_JSON
    return name, docs.get(join_key(node.path, name))


def _storage_doc(name: str, doc: Any) -> Any:
    """The parts of an array document that decide how chunks are stored (no attributes)."""
    if not isinstance(doc, Mapping):
        return None
    return {k: v for k, v in doc.items() if k not in ("attributes", "dimension_names")}


def _parse_all(raw: Mapping[str, bytes | None]) -> dict[str, Any]:
    return {k: parse_document(v)[0] for k, v in raw.items()}


@dataclass(frozen=True, slots=True)
class ComparePlan:
    """What the chunk comparison will do, decided from both sides' metadata documents.

    ``findings`` are the metadata differences; ``sizes`` the ``(objects, bytes per object)``
    of every array both sides hold with the same shape and dtype; ``modes`` its
    ``(format a, format b, raw bytes?)``: raw when both store identical array documents.
    """

    findings: list[Finding]
    sizes: dict[str, tuple[int, int]]
    modes: dict[str, tuple[int, int, bool]]

    @property
    def raw_sizes(self) -> dict[str, tuple[int, int]]:
        """The arrays compared by raw bytes (same codecs and chunking on both sides)."""
        return {p: v for p, v in self.sizes.items() if self.modes[p][2]}


def _read_documents(op: Operation) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """Graph 1: both hierarchies' metadata documents (raw bytes by key)."""
    backup = str(get_option("metadata.backup-prefix"))
    _, docs_a = build_read_graph(op.locations["source"], exclude_prefix=backup)
    _, docs_b = build_read_graph(op.locations["other"], exclude_prefix=backup)
    raw_a, raw_b = op.run([docs_a, docs_b])
    for raw, role in ((raw_a, "source"), (raw_b, "other")):
        check_no_nested_draft_v3(raw, op.locations[role].display)
    return raw_a, raw_b


def plan_comparison(raw_a: Mapping[str, Any], raw_b: Mapping[str, Any]) -> ComparePlan:
    """Metadata differences, and how each comparable array's chunks will be compared."""
    parsed_a, parsed_b = _parse_all(raw_a), _parse_all(raw_b)
    nodes_a = {n.path: n for n in nodes_from_documents(raw_a)}
    nodes_b = {n.path: n for n in nodes_from_documents(raw_b)}
    findings, comparable = metadata_differences(nodes_a, nodes_b)
    sizes: dict[str, tuple[int, int]] = {}
    modes: dict[str, tuple[int, int, bool]] = {}
    for path in comparable:
        name_a, doc_a = _array_doc(parsed_a, nodes_a[path])
        name_b, doc_b = _array_doc(parsed_b, nodes_b[path])
        grid = grid_from_document(path, name_a, doc_a)
        if grid is None:  # pragma: no cover - nodes_from_documents found its shape and chunks
            continue
        raw_mode = name_a == name_b and _storage_doc(name_a, doc_a) == _storage_doc(name_b, doc_b)
        sizes[path] = (grid.nchunks, math.prod(grid.chunks) * (itemsize_of(name_a, doc_a) or 8))
        modes[path] = (nodes_a[path].zarr_format, nodes_b[path].zarr_format, raw_mode)
    return ComparePlan(list(findings), sizes, modes)


def comparison_graph(
    loc_a: Location, loc_b: Location, plan: ComparePlan, *, rtol: float, atol: float
) -> list[Delayed]:
    """Graph 2: raw-byte batches and value-diff tasks, reduced in a tree to one result."""
    batch_bytes = parse_bytes(str(get_option("integrity.batch-bytes")))
    settings = StreamSettings.from_config()
    modes = plan.modes
    tasks = [
        delayed(compare_batch_task, pure=False)(
            loc_a,
            loc_b,
            tuple((s.path, *modes[s.path], range(s.start, s.stop)) for s in batch),
            rtol,
            atol,
            settings,
            dask_key_name=task_name("compare-chunks", loc_a, loc_b, i),
        )
        for i, batch in enumerate(plan_batches(plan.raw_sizes, batch_bytes))
    ]
    for path in sorted(set(plan.sizes) - set(plan.raw_sizes)):  # other chunking or codecs
        tasks += value_diff_tasks(
            loc_a,
            loc_b,
            path,
            modes[path][:2],
            rtol=rtol,
            atol=atol,
            block_bytes=batch_bytes // 4,  # a block of each side, rechunk and diff copies
            heap_threshold=settings.heap_threshold,
        )
    return tree_reduce(tasks, merge_diffs, "compare")


def _run_comparison(op: Operation, tasks: list[Delayed]) -> Mapping[str, ArrayDiff]:
    """Run graph 2 (nothing to run when no array is comparable)."""
    if not tasks:
        return {}
    diffs: Mapping[str, ArrayDiff] = op.run(tasks)[0]
    return diffs


def _array_results(
    plan: ComparePlan, diffs: Mapping[str, ArrayDiff]
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Per compared array a summary dict, and a finding per differing chunk key."""
    summaries: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for path in sorted(plan.modes):
        d = diffs.get(path, ArrayDiff())
        mode = "raw-bytes" if plan.modes[path][2] else "values"
        summaries.append(
            {
                "path": path,
                "mode": mode,
                "chunks_compared": d.chunks_compared,
                "chunks_differing": d.chunks_differing,
                "differing_keys": list(d.keys),
                "chunks_unreadable": d.chunks_unreadable,
                "elements_differing": d.elements_differing,
                "max_abs_diff": d.max_abs_diff
                if math.isfinite(d.max_abs_diff)
                else str(d.max_abs_diff),
            }
        )
        for key in d.keys:
            findings.append(
                Finding(
                    "error",
                    "chunk-differs",
                    key,
                    f"data of this chunk differs between the stores (array {path or '/'!r}: "
                    f"{d.elements_differing} element(s) differ in all, max |a-b| {d.max_abs_diff})",
                    "find out which store is right (`zdu check --deep`, or `zdu manifest verify` "
                    "against a manifest made when it was written), then copy the chunk from it",
                )
            )
        findings += _unreadable_findings(path, d)
        if d.chunks_differing > len(d.keys):
            findings.append(
                Finding(
                    "error",
                    "chunk-differs",
                    path,
                    f"... and {d.chunks_differing - len(d.keys)} more differing chunks",
                )
            )
    return summaries, findings


def _unreadable_findings(path: str, d: ArrayDiff) -> list[Finding]:
    """A finding per chunk whose values could not be read (bounded), and the rest counted."""
    fix = (
        "run `zdu check --deep` on that store to list every damaged chunk; restore them from a "
        "good copy, then compare again"
    )
    found = [
        Finding("error", "chunk-unreadable", key, f"chunk not compared: {reason}", fix)
        for key, reason in d.unreadable
    ]
    if d.chunks_unreadable > len(d.unreadable):
        found.append(
            Finding(
                "error",
                "chunk-unreadable",
                path,
                f"... and {d.chunks_unreadable - len(d.unreadable)} more unreadable chunks",
            )
        )
    return found


def compare_stores(
    a: StoreLike,
    b: StoreLike,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    storage_options: Mapping[str, Any] | None = None,
    b_storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> ComparisonReport:
    """Compare two hierarchies: metadata and attributes, then every chunk's data.

    Works across formats (2 vs 3) and locations (local vs S3): the classic proof that a
    copy, a conversion or a rechunked store holds the same data as its source.  Both graphs
    run on one client (one embedded cluster at most).

    Parameters
    ----------
    a, b
        The two hierarchies (paths, URLs, zarr Stores/Groups/Arrays); *a* is the reference.
    rtol, atol
        Tolerance of the value comparison (``numpy.isclose``); NaN equals NaN.
    storage_options, b_storage_options
        fsspec options for *a* and *b*.
    client
        Dask client.
    progress
        Show a progress bar.

    Returns
    -------
    ComparisonReport
        Metadata differences and, per array, differing chunk keys, differing elements and
        the maximum absolute difference.
    """
    with operation("compare", client=client, progress=progress) as op:
        loc_a = op.open(a, storage_options=storage_options)
        loc_b = op.open(b, role="other", storage_options=b_storage_options)
        raw_a, raw_b = _read_documents(op)
        plan = plan_comparison(raw_a, raw_b)
        diffs = _run_comparison(op, comparison_graph(loc_a, loc_b, plan, rtol=rtol, atol=atol))
        summaries, chunk_findings = _array_results(plan, diffs)
    return ComparisonReport(
        location=loc_a.display,
        other=loc_b.display,
        engine=op.engine or "",
        findings=sort_findings(plan.findings + chunk_findings),
        rtol=rtol,
        atol=atol,
        arrays=tuple(summaries),
    )
