"""Read a hierarchy's metadata on the cluster and run every check on it.

One graph: the listing task, the concurrent document reads, and a chunk-key check that runs
next to the listing on a worker (so the listing of a large store never travels to the
client).  The pure checks of :mod:`zarr_dask_utils._core.checks` then run on the small
documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dask.delayed import delayed

from zarr_dask_utils._core.checks.hierarchy import check_documents, chunk_check_task
from zarr_dask_utils._core.checks.nodecheck import unreadable_path_findings
from zarr_dask_utils._core.checks.structure import ParsedHierarchy
from zarr_dask_utils._core.compute.hierarchy_graph import (
    build_read_graph,
    excluded_task,
    unreadable_task,
)
from zarr_dask_utils._core.compute.operation import Operation
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.pure.codec_quirks import shuffle_quirk_findings
from zarr_dask_utils._core.pure.reports import Finding, sort_findings
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.probe import Probe

__all__ = ["Inspection", "inspect_metadata"]


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
    #: Objects of legacy backups inside the store (``metadata.backup-prefix``), not listed.
    legacy_backups: int = 0


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
        The operation (see :func:`~zarr_dask_utils._core.compute.operation.operation`); the location
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
        delayed(excluded_task, pure=False)(
            listing, dask_key_name=task_name(f"{prefix}-excluded", location)
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
    parsed, findings = check_documents(raw, probe.zarr_format, where=location.display)
    # chunks decode, only the document tells; once, should check_documents also report it
    findings += [f for f in shuffle_quirk_findings(parsed.docs) if f not in findings]
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
        legacy_backups=int(result[-2]),
    )
