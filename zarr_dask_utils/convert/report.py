"""``ConversionReport``: what a conversion wrote, how each encoding was translated, the ratios."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zarr_dask_utils._core.pure.reports import Report

__all__ = ["ConversionReport"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversionReport(Report):
    """What :func:`~zarr_dask_utils.netcdf_to_zarr` / :func:`~zarr_dask_utils.grib_to_zarr` did.

    Attributes
    ----------
    target
        The Zarr store written (credentials removed).
    sources
        The input files, in order.
    source_format
        ``"netcdf3"``, ``"netcdf4"``, a mix, or ``"grib"``; ``reader`` says which library read
        them and why.
    groups
        Per target group: its path and why it exists (netCDF group, GRIB hypercube keys).
    variables
        Per variable: path, dims, shape, dtype, target chunks/shards, the compressor chosen,
        the source's compression in words and the reason.
    zarr_format
        Format of the target.
    regions_written, regions_skipped, bytes_written
        Region tasks of this run, regions a resumed run found done, bytes they wrote.
    source_bytes, target_bytes
        Sizes of the inputs and of the finished target; ``size_ratio`` is target / source.
    verified
        Whether every region written was read back and compared; mismatches are findings.
    resumed, restarted
        Whether a partial target of an earlier run was continued, or discarded.
    """

    target: str
    sources: tuple[str, ...] = ()
    source_format: str = ""
    reader: str = ""
    groups: tuple[Mapping[str, Any], ...] = ()
    variables: tuple[Mapping[str, Any], ...] = ()
    zarr_format: int = 3
    regions_written: int = 0
    regions_skipped: int = 0
    bytes_written: int = 0
    source_bytes: int = 0
    target_bytes: int = 0
    verified: bool = False
    resumed: bool = False
    restarted: bool = False
    title = "Conversion"

    @property
    def size_ratio(self) -> float:
        """Target bytes / source bytes (below 1: the Zarr copy is smaller)."""
        return self.target_bytes / self.source_bytes if self.source_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, ``size_ratio`` included."""
        data = Report.to_dict(self)
        data["size_ratio"] = round(self.size_ratio, 4)
        return data

    def summary_lines(self) -> Sequence[str]:
        """Inputs, target, sizes, then one line per variable."""
        lines = [
            f"{len(self.sources)} {self.source_format} file(s) read with {self.reader} -> "
            f"{self.target} (zarr format {self.zarr_format})",
            f"regions written {self.regions_written}, skipped (already done) "
            f"{self.regions_skipped}; {self.bytes_written} B written"
            + ("; every region read back and compared" if self.verified else ""),
            f"size: source {self.source_bytes} B, target {self.target_bytes} B "
            f"(ratio {self.size_ratio:.3f})",
        ]
        if self.resumed:
            lines.append("resumed a partial target left by an interrupted run")
        if self.restarted:
            lines.append("discarded a partial target of a different conversion")
        for g in self.groups:
            if g.get("note"):
                lines.append(f"group /{g['path']}: {g['note']}")
        for v in self.variables:
            shards = f" shards {tuple(v['shards'])}" if v.get("shards") else ""
            unit = v.get("shards") or v.get("chunks") or ()
            grown = v.get("region") and list(v["region"]) != list(unit)
            region = f" regions {tuple(v['region'])} (whole source chunks)" if grown else ""
            lines.append(
                f"/{v['path']} {v['dtype']} {tuple(v['shape'])} chunks {tuple(v['chunks'])}"
                f"{shards}{region}: {v['source']} -> {v['compressor']}"
            )
        return lines
