"""``repair_metadata``: fix what can be fixed without guessing data; never touch chunks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from distributed import Client

from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils.metadata.apply import replace_documents
from zarr_dask_utils.metadata.inspection import inspect_metadata
from zarr_dask_utils.metadata.plan import plan_repairs
from zarr_dask_utils.metadata.reports import RepairReport

__all__ = ["repair_metadata"]


def repair_metadata(
    store: StoreLike,
    *,
    dry_run: bool = True,
    consolidate: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
    backup_dir: str | os.PathLike[str] | None = None,
) -> RepairReport:
    """Repair a hierarchy's metadata documents; a dry run (the default) only reports the plan.

    Repairs: writes missing group documents; restores unparsable node documents and missing
    array documents from the consolidated copy when it has them; regenerates consolidated
    metadata that is stale, out of order or invalid (or missing, with ``consolidate=True``).
    Every replaced document is first copied outside the hierarchy, under
    ``<store>.zdu-backups/<time>-<random>/`` beside the store (or ``backup_dir``);
    consolidated metadata is written last.  Chunk data is never read, written or deleted.
    Problems that would need a guess (an invalid dtype, a shape that no longer fits the chunks)
    are the report's ``findings``: after an applied repair, those of a fresh validation.

    Parameters
    ----------
    store
        A path, URL, zarr Store/Group or fsspec mapper.
    dry_run
        ``True`` (default): plan only.  ``False``: write.
    consolidate
        ``None``: regenerate consolidated metadata only where it exists and is wrong;
        ``True``: also create it where missing; ``False``: never touch it.
    storage_options
        fsspec options for URLs.
    client
        Dask client (default: current, configured, or an embedded LocalCluster).
    progress
        Show a progress bar (``None``: only when a human watches).
    backup_dir
        Folder or URL for the backups, outside the store (default:
        ``zarr-dask-utils.metadata.backup-dir``, else ``<store>.zdu-backups`` beside it).

    Returns
    -------
    RepairReport

    See Also
    --------
    validate_metadata : the checks whose findings are repaired here.

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import repair_metadata
    >>> g = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    >>> repair_metadata(g, progress=False).actions
    ()
    """
    with operation("repair", client=client, progress=progress) as op:
        op.open(store, storage_options=storage_options, read_only=dry_run, allow_missing_root=True)
        seen = inspect_metadata(op)  # bad input failed above, before a cluster starts
        plan = plan_repairs(
            seen.parsed,
            seen.findings,
            consolidate=consolidate,
            existing_keys=[k for k, v in seen.raw.items() if v is not None],
        )
        applied: list[str] = []
        backups: list[str] = []
        remaining = plan.unrepairable
        if plan.actions and not dry_run:
            writes = [(a.key, a.content) for a in plan.actions]
            applied, backups = replace_documents(
                seen.location, writes, seen.raw, backup_dir=backup_dir
            )
            # the same operation: the same cluster re-reads what was written
            after = inspect_metadata(op, progress=False, task_prefix="repair-verify")
            remaining = tuple(f for f in after.findings if f.severity != "info")
    return RepairReport(
        location=seen.location.display,
        engine=seen.engine,
        findings=remaining,
        zarr_format=seen.parsed.zarr_format,
        dry_run=dry_run,
        problems_found=sum(f.severity != "info" for f in seen.findings),
        actions=plan.actions,
        applied=tuple(applied),
        backups=tuple(backups),
        legacy_backups=seen.legacy_backups,
    )
