"""``consolidate_metadata``: (re)write consolidated metadata, sorted, in one atomic step."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from distributed import Client

from zarr_dask_utils._core.checks.consolidated_state import (
    current_entries,
    diff_entries,
    dropped_parents,
    expected_entries,
    render_consolidated,
)
from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.errors import NotAZarrStoreError
from zarr_dask_utils._core.pure.keys import CONSOLIDATED_V2, ZARR_JSON
from zarr_dask_utils._core.storage.locations import Location, StoreLike
from zarr_dask_utils.metadata.apply import replace_documents
from zarr_dask_utils.metadata.inspection import inspect_metadata
from zarr_dask_utils.metadata.reports import ConsolidationReport

__all__ = ["consolidate_metadata"]

_BLOCKING = ("json-invalid", "group-document-missing", "array-document-missing", "mixed-formats")


def consolidate_metadata(
    store: StoreLike | Location,
    *,
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    dry_run: bool = False,
    progress: bool | None = None,
    backup: bool = True,
    backup_dir: str | os.PathLike[str] | None = None,
) -> ConsolidationReport:
    """Write consolidated metadata (format 2 ``.zmetadata``, format 3 the root ``zarr.json``).

    All metadata documents are read concurrently by a Dask graph (one listing, then many
    requests in flight per task), instead of one node after another as
    ``zarr.consolidate_metadata`` does.  Entries are written sorted (depth, then key), which
    zarr-python 3.1 needs to see every child (zarr-python #4226).  The new document replaces
    the old in one atomic single-key write, after a backup of the old one; nothing is written
    when the consolidated metadata is already current.

    Parameters
    ----------
    store
        A path, URL, zarr Store/Group or fsspec mapper: the root group of the hierarchy
        (or a location another operation resolved: called inside that operation, e.g. by
        :func:`~zarr_dask_utils.rechunk_array`, this one runs on its client).
    storage_options
        fsspec options for URLs.
    client
        Dask client (default: current, configured, or an embedded LocalCluster).
    dry_run
        Report what would change without writing.
    progress
        Show a progress bar (``None``: only when a human watches).
    backup
        Back up the document replaced (default).  ``False`` when the caller has just
        written the hierarchy itself (e.g. :func:`~zarr_dask_utils.rechunk_array` finishing
        a target it created), so the backup would only copy its own fresh root document.
    backup_dir
        Folder or URL for the backup, outside the store (default:
        ``zarr-dask-utils.metadata.backup-dir``, else ``<store>.zdu-backups`` beside it).

    Returns
    -------
    ConsolidationReport

    Raises
    ------
    NotAZarrStoreError
        The root is an array, or its group document is missing or unreadable.

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import consolidate_metadata
    >>> g = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=2)
    >>> _ = g.create_array("t2m", shape=(4,), chunks=(2,), dtype="f4")
    >>> consolidate_metadata(g, progress=False).written
    True
    """
    with operation("consolidate", client=client, progress=progress) as op:
        location = op.open(
            store, storage_options=storage_options, read_only=dry_run, allow_missing_root=True
        )
        if op.probe().root_kind == "array":  # bad input fails before a cluster starts
            raise NotAZarrStoreError(
                f"{location.display} is an array; consolidated metadata belongs to a group. "
                "Pass the group that contains it."
            )
        seen = inspect_metadata(op, check_chunks=False)
    where = seen.location.display
    parsed = seen.parsed
    root_key = ZARR_JSON if parsed.zarr_format == 3 else ".zgroup"
    if root_key not in parsed.docs:
        raise NotAZarrStoreError(
            f"The root group document of {where} is missing or unreadable, so there is nothing "
            "to attach consolidated metadata to. Run `zdu repair` first."
        )
    status, current = current_entries(parsed)
    expected = expected_entries(parsed)
    diff = diff_entries(current or {}, expected)
    reordered = current is not None and bool(dropped_parents(list(current), parsed.zarr_format))
    changed = status != "ok" or diff.stale or reordered
    key, content = render_consolidated(parsed, expected)
    written: list[str] = []
    backups: list[str] = []
    if changed and not dry_run:
        written, backups = replace_documents(
            seen.location, [(key, content)], seen.raw, backup=backup, backup_dir=backup_dir
        )
    findings = tuple(f for f in seen.findings if f.code in _BLOCKING)
    return ConsolidationReport(
        location=where,
        engine=seen.engine,
        findings=findings,
        zarr_format=parsed.zarr_format,
        key=CONSOLIDATED_V2 if parsed.zarr_format == 2 else ZARR_JSON,
        entries=len(expected),
        changed=changed,
        written=bool(written),
        dry_run=dry_run,
        added=diff.added if current is not None else tuple(expected),
        removed=diff.removed,
        updated=diff.changed,
        reordered=reordered,
        backup=backups[0] if backups else None,
        legacy_backups=seen.legacy_backups,
    )
