"""Reports of the optimize feature group: rechunking, chunk analysis, performance estimates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zarr_dask_utils._core.pure.reports import Report

__all__ = ["ChunkAnalysisReport", "PerformanceEstimate", "RechunkReport"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RechunkReport(Report):
    """What :func:`~zarr_dask_utils.rechunk_array` did.

    Attributes
    ----------
    target
        The target store (credentials removed).
    method
        ``"rechunker"``, ``"tasks"`` or ``"p2p"``; ``method_reason`` says why it was chosen.
    arrays
        Per array: path, shape, dtype, source/target chunks and shards, the plan, and
        ``chunks_requested``: whether the chunk request applied to it (in a group, a request
        of another rank or other dimensions leaves an array's chunks as they were).
    max_mem
        Bytes one task may hold in a block.
    memory_bound
        ``max_mem`` plus the stated overhead per worker thread (for the ``rechunker`` method).
    blocks_written, blocks_skipped
        Copy tasks' blocks written in this run, and blocks a resumed run found already done.
    restarted, resumed
        Whether a partial target of an earlier run was discarded, or continued.
    source_reread
        A resumed run of the ``tasks`` / ``p2p`` method: a Dask rechunk needs every source
        block, so the whole source was read (and shuffled) again; only the writes of
        ``blocks_skipped`` blocks were saved.
    consolidated
        Whether the target got consolidated metadata (it does when the source group had it).
    """

    target: str
    method: str
    method_reason: str
    arrays: tuple[Mapping[str, Any], ...] = ()
    max_mem: int = 0
    memory_bound: int = 0
    temp_store: str | None = None
    blocks_written: int = 0
    blocks_skipped: int = 0
    bytes_written: int = 0
    restarted: bool = False
    resumed: bool = False
    source_reread: bool = False
    zarr_format: int = 3
    consolidated: bool = False
    title = "Rechunk"

    def summary_lines(self) -> Sequence[str]:
        """Method, then one line per array."""
        lines = [
            f"target {self.target} (zarr format {self.zarr_format}); method {self.method}: "
            f"{self.method_reason}",
            f"max_mem {self.max_mem} B per task; blocks written {self.blocks_written}, "
            f"skipped (already done) {self.blocks_skipped}; {self.bytes_written} B written",
        ]
        if self.resumed:
            lines.append(
                "resumed a partial target left by an interrupted run: "
                + (
                    f"{self.blocks_skipped} block(s) it had finished were not written again"
                    if self.blocks_skipped
                    else "it had finished no block, so every block was written"
                )
                + (
                    f"; the {self.method} rechunk read the whole source again"
                    if self.source_reread
                    else ""
                )
            )
        if self.restarted:
            lines.append("discarded a partial target left by an earlier, different run")
        if self.consolidated:
            lines.append("target metadata consolidated (the source's was)")
        for a in self.arrays:
            shards = f" shards {tuple(a['target_shards'])}" if a.get("target_shards") else ""
            lines.append(
                f"/{a['path']}  {tuple(a['shape'])} {a['dtype']}  chunks "
                f"{tuple(a['source_chunks'])} -> {tuple(a['target_chunks'])}{shards}  "
                f"stages {len(a['plan']['stages'])}"
                + ("" if a.get("chunks_requested", True) else "  (chunks kept: not requested)")
            )
        return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkAnalysisReport(Report):
    """Chunk analysis of every array for the given access patterns.

    Attributes
    ----------
    arrays
        Per array: path, shape, dtype, dims, chunks, per-pattern costs for the current and
        the recommended chunking, recommended chunks/shards and the reasoning.
    skipped
        Every array not analysed: ``{"path", "reason"}`` (each also an ``array-not-analyzed``
        finding), so no array is left out silently.
    patterns
        The pattern names and weights analysed.
    """

    arrays: tuple[Mapping[str, Any], ...] = ()
    skipped: tuple[Mapping[str, str], ...] = ()
    patterns: tuple[Mapping[str, Any], ...] = ()
    bounds: Mapping[str, Any] = field(default_factory=dict)
    title = "Chunk analysis"

    def recommended(self, path: str) -> tuple[int, ...]:
        """The recommended chunk shape of the array at *path*."""
        for a in self.arrays:
            if a["path"] == path:
                return tuple(a["recommended_chunks"])
        raise KeyError(path)

    def summary_lines(self) -> Sequence[str]:
        """One block of lines per array."""
        lines: list[str] = [
            "patterns: " + ", ".join(f"{p['name']} (weight {p['weight']})" for p in self.patterns)
        ]
        for a in self.arrays:
            names = a["dims"] or []
            dims = ", ".join("unnamed" if d is None else str(d) for d in names)
            dims = f"({dims}) " if any(d is not None for d in names) else ""  # none: say nothing
            lines.append(
                f"/{a['path']}  {dims}{tuple(a['shape'])} {a['dtype']}  chunks "
                f"{tuple(a['chunks'])} -> recommended {tuple(a['recommended_chunks'])}"
                + (f" shards {tuple(a['recommended_shards'])}" if a["recommended_shards"] else "")
            )
            for p in a["current"]:
                lines.append(
                    f"    {p['pattern']}: {p['chunks_touched']} chunks, {p['requests']} requests, "
                    f"read {p['bytes_read']} B for {p['bytes_needed']} B needed "
                    f"(x{p['amplification']:.1f})"
                )
            lines.append(f"    why: {a['reasoning']}")
        lines.extend(f"/{s['path']}  not analysed: {s['reason']}" for s in self.skipped)
        return lines


@dataclass(frozen=True, slots=True, kw_only=True)
class PerformanceEstimate(Report):
    """Predicted requests, bytes and time of an access pattern for a chunking.

    Attributes
    ----------
    chunks, shards
        The chunking the prediction is for.
    requests, bytes_read, bytes_needed, chunks_touched
        Exact counts implied by the chunk grid for the pattern's selections.
    seconds
        Predicted wall time on one reader with ``concurrency`` requests in flight.
    params
        Cost-model parameters (latency, bandwidth, decode rate, concurrency) and their source.
    """

    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None = None
    pattern: str = ""
    requests: int = 0
    chunks_touched: int = 0
    bytes_read: int = 0
    bytes_needed: int = 0
    seconds: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)
    title = "Performance estimate"

    def summary_lines(self) -> Sequence[str]:
        """The prediction and the parameters."""
        return [
            f"pattern {self.pattern} on chunks {self.chunks}"
            + (f" shards {self.shards}" if self.shards else ""),
            f"{self.requests} requests, {self.chunks_touched} chunks, read {self.bytes_read} B "
            f"for {self.bytes_needed} B needed",
            f"predicted {self.seconds:.3f} s with {dict(self.params)}",
        ]
