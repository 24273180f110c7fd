"""Reports of the integrity operations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zarr_dask_utils._core.pure.reports import Report

__all__ = [
    "ChunkSampleReport",
    "ComparisonReport",
    "IntegrityReport",
    "ManifestReport",
    "ManifestVerificationReport",
]


def _gb(n: int) -> str:
    return f"{n / 1e9:.3f} GB" if n >= 1e7 else f"{n:,} bytes"


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrityReport(Report):
    """Chunk inventory (and, when deep, decoding) of every array of a hierarchy.

    ``arrays`` holds one summary per array: chunk objects expected by the grid, present and
    missing, stored bytes, counts per anomaly class, and with ``nan_check`` the NaN/Inf counts
    and value range.  ``chunks_decoded`` / ``bytes_decoded`` (uncompressed) are 0 unless deep.
    """

    zarr_format: int
    deep: bool = False
    objects: int = 0
    stored_bytes: int = 0
    arrays: tuple[Mapping[str, Any], ...] = ()
    chunks_decoded: int = 0
    bytes_decoded: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = ()
    title = "Data integrity check"

    def summary_lines(self) -> Sequence[str]:
        """Scope, counts and throughput."""
        missing = sum(int(a.get("missing", 0)) for a in self.arrays)
        lines = [
            f"zarr format {self.zarr_format}: {len(self.arrays)} array(s), {self.objects} "
            f"object(s), {_gb(self.stored_bytes)} stored; {missing} chunk(s) not stored",
        ]
        if self.deep:
            rate = self.bytes_decoded / self.seconds / 1e9 if self.seconds else 0.0
            lines.append(
                f"deep scan: {self.chunks_decoded} object(s) decoded, {_gb(self.bytes_decoded)} "
                f"uncompressed in {self.seconds:.1f} s ({rate:.2f} GB/s)"
            )
        for a in self.arrays:
            if "nan" in a:
                lines.append(
                    f"/{a['path']}: NaN {a['nan']}, Inf {a['inf']}, range [{a['min']}, {a['max']}]"
                )
        lines.extend(f"note: {n}" for n in self.notes)
        return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkSampleReport(Report):
    """A reproducible random sample of one array's chunks, decoded, and what it proves.

    ``missing_keys`` names the first sampled positions with no stored object (``missing``
    counts them all).  ``miss_probabilities`` maps a number of bad chunks *k* to the chance
    that the sample missed all of them (hypergeometric); ``detectable_95`` is the smallest *k*
    the sample finds with 95 % confidence.
    """

    array: str
    seed: int
    sample_rate: float
    grid_objects: int = 0
    sampled: int = 0
    decoded: int = 0
    missing: int = 0
    missing_keys: tuple[str, ...] = ()
    bad: int = 0
    miss_probabilities: Mapping[int, float] = field(default_factory=dict)
    detectable_95: int = 0
    statement: str = ""
    title = "Chunk sample verification"

    def summary_lines(self) -> Sequence[str]:
        """Sample size, seed, result and the statement of what it rules out."""
        return [
            f"array /{self.array}: {self.sampled} of {self.grid_objects} object(s) sampled "
            f"(rate {self.sample_rate}, seed {self.seed}); {self.decoded} decoded, "
            f"{self.missing} not stored, {self.bad} bad",
            *(
                [
                    f"not stored: {', '.join(self.missing_keys)}"
                    + (
                        f" and {self.missing - len(self.missing_keys)} more"
                        if self.missing > len(self.missing_keys)
                        else ""
                    )
                ]
                if self.missing_keys
                else []
            ),
            self.statement,
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ComparisonReport(Report):
    """Differences between two hierarchies: metadata first, then chunk data per array.

    ``arrays`` holds per array: ``mode`` (``"raw-bytes"`` when both sides store identical
    codecs and chunking, else ``"values"``), chunks compared and differing, differing chunk
    keys (first ones), differing elements and the maximum absolute difference.
    """

    other: str
    rtol: float = 0.0
    atol: float = 0.0
    arrays: tuple[Mapping[str, Any], ...] = ()
    title = "Store comparison"

    def summary_lines(self) -> Sequence[str]:
        """The two stores and one line per compared array."""
        lines = [f"compared with {self.other} (rtol={self.rtol}, atol={self.atol})"]
        for a in self.arrays:
            lines.append(
                f"/{a['path']} [{a['mode']}]: {a['chunks_differing']} of {a['chunks_compared']} "
                f"chunk(s) differ, {a['elements_differing']} element(s), max |a-b| "
                f"{a['max_abs_diff']}"
            )
        return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestReport(Report):
    """A checksum manifest: every object's size and hash (``document``, not in ``to_dict``)."""

    algorithm: str
    objects: int = 0
    total_bytes: int = 0
    output: str | None = None
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)
    title = "Checksum manifest"

    def to_dict(self) -> dict[str, Any]:
        """The report without the (large) manifest document."""
        data = Report.to_dict(self)
        data.pop("document", None)
        return data

    def summary_lines(self) -> Sequence[str]:
        """Objects, bytes and where the manifest was written."""
        where = f"written to {self.output}" if self.output else "not written (no output given)"
        return [f"{self.objects} object(s), {_gb(self.total_bytes)}, {self.algorithm}; {where}"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestVerificationReport(Report):
    """A store checked against its manifest: changed, truncated, missing and extra objects."""

    algorithm: str
    manifest: str
    objects_checked: int = 0
    changed: int = 0
    missing: int = 0
    extra: int = 0
    title = "Manifest verification"

    def summary_lines(self) -> Sequence[str]:
        """Counts per kind of difference."""
        return [
            f"against {self.manifest} ({self.algorithm}): {self.objects_checked} object(s) "
            f"checked; {self.changed} changed, {self.missing} missing, {self.extra} extra",
        ]
