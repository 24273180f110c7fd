"""Read a hierarchy's metadata on the cluster and run every check on it.

One graph: the listing task, the concurrent document reads, and a chunk-key check that runs
next to the listing on a worker (so the listing of a large store never travels to the
client).  The pure checks then run on the small documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dask.delayed import delayed

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.graph import task_name
from zarr_dask_utils._core.hierarchy import build_read_graph, unreadable_task
from zarr_dask_utils._core.locations import Location
from zarr_dask_utils._core.nodecheck import unreadable_path_findings
from zarr_dask_utils._core.operation import Operation
from zarr_dask_utils._core.probe import Probe
from zarr_dask_utils._core.reports import Finding, sort_findings
from zarr_dask_utils.metadata.consolidated_state import consolidated_findings, current_entries
from zarr_dask_utils.metadata.structure import (
    ParsedHierarchy,
    chunk_key_findings,
    document_findings,
    parse_hierarchy,
    structure_findings,
)

__all__ = [
    "Inspection",
    "check_documents",
    "chunk_check_task",
    "consolidated_status",
    "inspect_metadata",
]


@dataclass(frozen=True)
class Inspection:
    """Everything the metadata operations know about a hierarchy after one graph."""

    location: Location
    probe: Probe
    parsed: ParsedHierarchy
    findings: tuple[Finding, ...]
    engine: str
    documents_read: int
    objects_listed: int
    raw: Mapping[str, bytes | None]


def chunk_check_task(
    listing: list[str], raw: Mapping[str, bytes | None], zarr_format: int
) -> tuple[list[Finding], int]:
    """Worker task: chunk-key findings from the full listing, and the number of objects."""
    parsed, _ = parse_hierarchy(raw, zarr_format)
    return chunk_key_findings(parsed, listing), len(listing)


def check_documents(
    raw: Mapping[str, bytes | None], zarr_format: int
) -> tuple[ParsedHierarchy, list[Finding]]:
    """Pure: parse the documents and return every document-level metadata finding.

    Everything :func:`~zarr_dask_utils.validate_metadata` checks except chunk keys (which need
    the listing: see :func:`chunk_check_task`).  Other features that already read the
    documents in their own graph (``zdu doctor``) call this instead of a second graph.
    """
    parsed, findings = parse_hierarchy(raw, zarr_format)
    findings += document_findings(parsed)
    findings += structure_findings(parsed)
    findings += consolidated_findings(parsed)
    return parsed, findings


def consolidated_status(parsed: ParsedHierarchy, findings: Iterable[Finding]) -> str:
    """``ok``, ``missing``, ``invalid``, ``unreadable``, ``stale`` or ``unsorted``."""
    status, _ = current_entries(parsed)
    codes = {f.code for f in findings}
    if status == "ok" and codes & {"consolidated-stale", "consolidated-unsorted"}:
        status = "stale" if "consolidated-stale" in codes else "unsorted"
    return status


def inspect_metadata(
    op: Operation,
    role: str = "source",
    *,
    progress: bool | None = None,
    check_chunks: bool = True,
    task_prefix: str | None = None,
) -> Inspection:
    """Read and check the hierarchy *op* opened as *role*, in one graph on *op*'s client.

    Parameters
    ----------
    op
        The operation (see :func:`~zarr_dask_utils._core.operation.operation`); the location
        must have been opened (and probed) as *role*.
    role
        Which of the operation's locations to inspect.
    progress
        Override the operation's progress setting for this graph.
    check_chunks
        Also check every chunk key against its array's grid (needs the listing on a worker).
    task_prefix
        Task-name prefix (default the operation's name), e.g. ``repair-verify``.
    """
    location = op.locations[role]
    probe = op.probe(role)
    prefix = task_prefix or op.name
    backup = str(get_option("metadata.backup-prefix"))
    listing, docs = build_read_graph(location, nparts=4, exclude_prefix=backup)
    collections: list[Any] = [docs]
    if check_chunks:
        collections.append(
            delayed(chunk_check_task, pure=False)(
                listing,
                docs,
                probe.zarr_format,
                dask_key_name=task_name("check-chunk-keys", location),
            )
        )
    collections.append(
        delayed(unreadable_task, pure=False)(
            listing, dask_key_name=task_name(f"{prefix}-unreadable", location)
        )
    )
    result = op.run(collections, progress=progress)
    raw = result[0]
    chunk_findings, n_objects = result[1] if check_chunks else ([], len(raw))
    parsed, findings = check_documents(raw, probe.zarr_format)
    findings += chunk_findings
    findings += unreadable_path_findings(result[-1])
    return Inspection(
        location=location,
        probe=probe,
        parsed=parsed,
        findings=sort_findings(findings),
        engine=result.engine,
        documents_read=sum(v is not None for v in raw.values()),
        objects_listed=n_objects,
        raw=raw,
    )
