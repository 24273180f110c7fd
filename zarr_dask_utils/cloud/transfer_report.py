"""The report of a store copy (:func:`~zarr_dask_utils.parallel_download`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from zarr_dask_utils._core.pure.reports import Report

__all__ = ["TransferReport"]


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferReport(Report):
    """What a copy moved, skipped and verified, how fast, and with which engine.

    ``location`` is the source and ``target`` the target (both without credentials).
    ``objects_skipped`` counts objects a resumed run found already copied and verified at
    the target; ``changed_on_source`` names objects that changed on the source since the
    interrupted run recorded them (copied again).  ``up_to_date_check``: the target already
    held a finished copy (no marker); ``objects_skipped`` then counts its objects found
    identical to the source by size and hash, and only missing objects were copied.
    ``seconds`` holds the time of each phase (``open``: cluster and locations, ``list``,
    ``check-target``, ``copy``, ``finish``); rates are over the copy phase.
    ``transfer_engine`` says how objects moved (``engine`` says where the tasks ran).
    """

    target: str
    arrays: tuple[str, ...] | None = None
    dry_run: bool = False
    resumed: bool = False
    up_to_date_check: bool = False
    complete: bool = False
    objects_copied: int = 0
    bytes_copied: int = 0
    objects_skipped: int = 0
    bytes_skipped: int = 0
    objects_verified: int = 0
    verify: bool = True
    tasks: int = 0
    changed_on_source: tuple[str, ...] = ()
    seconds: Mapping[str, float] = field(default_factory=dict)
    transfer_engine: str = ""
    title = "Download"

    @property
    def copy_seconds(self) -> float:
        """Seconds of the copy phase."""
        return float(self.seconds.get("copy", 0.0))

    @property
    def mb_per_s(self) -> float:
        """Megabytes (10^6) copied per second of the copy phase."""
        return self.bytes_copied / 1e6 / self.copy_seconds if self.copy_seconds else 0.0

    @property
    def objects_per_s(self) -> float:
        """Objects copied per second of the copy phase."""
        return self.objects_copied / self.copy_seconds if self.copy_seconds else 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-safe data, with the rates."""
        data = Report.to_dict(self)
        data["mb_per_s"] = round(self.mb_per_s, 3)
        data["objects_per_s"] = round(self.objects_per_s, 3)
        return data

    def summary_lines(self) -> Sequence[str]:
        """Target, counts, rates, phases."""
        what = "all nodes" if self.arrays is None else ", ".join(self.arrays) or "/"
        verb = "would copy" if self.dry_run else "copied"
        skipped = f"skipped {self.objects_skipped} already at the target"
        if self.up_to_date_check:
            skipped = f"{self.objects_skipped} already at the target and identical (verified)"
        lines = [
            f"to {self.target} ({what})" + (" — dry run, nothing written" if self.dry_run else ""),
            f"{verb} {self.objects_copied} object(s), {_mb(self.bytes_copied)} in "
            f"{self.tasks} task(s); {skipped} "
            f"({_mb(self.bytes_skipped)})" + (" (resumed)" if self.resumed else ""),
        ]
        if not self.dry_run:
            check = f"{self.objects_verified} verified (listed size, read back byte for byte)"
            lines.append(check if self.verify else "not verified (verify=False)")
            lines.append(
                f"{self.mb_per_s:,.1f} MB/s, {self.objects_per_s:,.1f} objects/s; "
                + ", ".join(f"{k} {v:.2f} s" for k, v in self.seconds.items())
            )
            if not self.complete:
                lines.append("INCOMPLETE: the target keeps its partial marker; run again")
        if self.transfer_engine:
            lines.append(f"transfer: {self.transfer_engine}")
        if self.changed_on_source:
            shown = ", ".join(self.changed_on_source[:5])
            lines.append(f"changed on the source since the interrupted run: {shown}")
        return lines
