"""Reports of the metadata operations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.pure.naming import option_text
from zarr_dask_utils._core.pure.reports import Report
from zarr_dask_utils.metadata.plan import RepairAction

__all__ = ["ConsolidationReport", "RepairReport", "ValidationReport", "legacy_backup_lines"]


def legacy_backup_lines(location: str, count: int) -> list[str]:
    """The note about backups an older version kept inside the store (none when *count* is 0)."""
    if not count:
        return []
    prefix = str(get_option("metadata.backup-prefix")).strip("/")
    store = location.split("#", 1)[0].rstrip("/")
    return [
        f"note: {count} object(s) of older backups lie inside the store under {prefix}/ "
        "(zarr-python 3 warns about them; zdu skips them). Move them out, e.g. to "
        f"{store}.zdu-backups/, where backups are kept now"
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport(Report):
    """Every problem in a hierarchy's metadata, with severity, location and fix."""

    zarr_format: int
    groups: int = 0
    arrays: int = 0
    documents_read: int = 0
    objects_listed: int = 0
    consolidated: str = "missing"  # "ok", "missing", "stale", "invalid", "unreadable"
    title = "Metadata validation"

    def summary_lines(self) -> Sequence[str]:
        """Format, counts and the consolidated status."""
        return [
            f"zarr format {self.zarr_format}: {self.groups} group(s), {self.arrays} array(s); "
            f"{self.documents_read} document(s) read, {self.objects_listed} object(s) listed",
            f"consolidated metadata: {self.consolidated}",
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsolidationReport(Report):
    """What consolidation found and changed.

    ``changed`` says whether the consolidated document differed from the real documents;
    ``written`` whether it was (re)written (``False`` in a dry run or when already current).
    """

    zarr_format: int
    key: str
    entries: int = 0
    changed: bool = False
    written: bool = False
    dry_run: bool = False
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    reordered: bool = False
    backup: str | None = None
    legacy_backups: int = 0
    title = "Consolidation"

    def summary_lines(self) -> Sequence[str]:
        """Entries, what changed, and where the backup is."""
        if not self.changed:
            state = "already current, nothing written"
        elif self.written:
            state = f"rewritten ({self.key})"
        else:
            state = f"would rewrite {self.key} (dry run)"
        lines = [f"{self.entries} entr(ies), zarr format {self.zarr_format}: {state}"]
        for label, keys in (
            ("added", self.added),
            ("removed", self.removed),
            ("updated", self.updated),
        ):
            if keys:
                shown = ", ".join(keys[:10]) + (f" … (+{len(keys) - 10})" if len(keys) > 10 else "")
                lines.append(f"{label}: {shown}")
        if self.reordered:
            lines.append("entries put in canonical order (zarr-python #4226)")
        if self.backup:
            lines.append(f"previous document backed up to {self.backup}")
        lines += legacy_backup_lines(self.location, self.legacy_backups)
        return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairReport(Report):
    """Repairs planned (dry run) or applied, backups, and problems left for a human.

    ``problems_found`` counts the errors and warnings found before repairing; ``findings``
    are those no automatic repair fixes (after an applied repair: a fresh validation's).
    ``ok`` is ``True`` when nothing is left to do.
    """

    zarr_format: int
    dry_run: bool = True
    problems_found: int = 0
    actions: tuple[RepairAction, ...] = ()
    applied: tuple[str, ...] = ()
    backups: tuple[str, ...] = ()
    legacy_backups: int = 0
    title = "Metadata repair"

    @property
    def ok(self) -> bool:
        """Nothing left: no repair pending (or all applied) and nothing unrepairable."""
        pending = bool(self.actions) and len(self.applied) < len(self.actions)
        return not pending and not any(f.severity != "info" for f in self.findings)

    def summary_lines(self) -> Sequence[str]:
        """Mode, the actions, the backups and what is left."""
        mode = (
            f"dry run, nothing written ({option_text('dry_run', False)} writes)"
            if self.dry_run
            else "applied"
        )
        lines = [
            f"mode: {mode}",
            f"problems found: {self.problems_found}; repairs: {len(self.actions)}",
        ]
        lines += [f"  {'done' if a.key in self.applied else 'plan'}: {a}" for a in self.actions]
        if self.backups:
            lines.append(f"backups of replaced documents: {', '.join(self.backups)}")
        lines += legacy_backup_lines(self.location, self.legacy_backups)
        if self.findings:
            left = "left after repair" if self.applied else "not repairable automatically"
            lines.append(f"{left}: see findings")
        return lines
