"""Reports of traced store operations: counts, bytes and latency percentiles per kind and array.

Pure summaries of the :class:`StoreOp` records a trace session
collects (:class:`~zarr_dask_utils.ZarrDebugger` today, profiling next).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zarr_dask_utils._core.pure.reports import Report

__all__ = ["OpStats", "StoreOp", "TraceReport", "array_of"]


@dataclass(frozen=True, slots=True)
class StoreOp:
    """One store operation: what, which key, how many bytes, how long, where.

    ``store`` names the store (``file:///data/era5.zarr``, ``s3://bucket/era5.zarr``) and
    ``start`` is the wall-clock time (``time.time()``) the operation began; both are empty for
    records made by older callers.
    """

    op: str
    key: str
    nbytes: int
    seconds: float
    process: str
    store: str = ""
    start: float = 0.0


@dataclass(frozen=True, slots=True)
class OpStats:
    """Count, bytes and latency percentiles (milliseconds) of one group of operations."""

    count: int
    nbytes: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, ops: Sequence[StoreOp]) -> OpStats:
        """Summarise *ops*."""
        ms = np.array([op.seconds * 1e3 for op in ops]) if ops else np.zeros(1)
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(len(ops), sum(op.nbytes for op in ops), p50, p90, p99, float(ms.max()))


def array_of(key: str) -> str:
    """The node path a store key belongs to (``"t2m/c/0/1"`` and ``"t2m/0.1"`` → ``"t2m"``)."""
    if "/c/" in f"/{key}":
        return f"/{key}".split("/c/", 1)[0].strip("/")
    head, _, _ = key.rpartition("/")
    return head


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceReport(Report):
    """What a :class:`ZarrDebugger` saw: every operation, and summaries of them."""

    operations: tuple[StoreOp, ...] = field(default=(), repr=False)
    title = "Store trace"

    @property
    def request_count(self) -> int:
        """Number of store operations (each is one request on an object store)."""
        return len(self.operations)

    def by_op(self) -> dict[str, OpStats]:
        """Statistics per operation kind (``get``, ``set``, ``list_dir``, …)."""
        groups: dict[str, list[StoreOp]] = defaultdict(list)
        for op in self.operations:
            groups[op.op].append(op)
        return {name: OpStats.of(ops) for name, ops in sorted(groups.items())}

    def by_array(self) -> dict[str, OpStats]:
        """Statistics per node path (chunk and metadata keys grouped by their array/group)."""
        groups: dict[str, list[StoreOp]] = defaultdict(list)
        for op in self.operations:
            if op.op.startswith("list"):
                continue
            groups[array_of(op.key)].append(op)
        return {name: OpStats.of(ops) for name, ops in sorted(groups.items())}

    def by_process(self) -> dict[str, int]:
        """Operation counts per process (client or worker)."""
        return dict(sorted(Counter(op.process for op in self.operations).items()))

    def slowest(self, n: int = 10) -> tuple[StoreOp, ...]:
        """The *n* slowest operations."""
        return tuple(sorted(self.operations, key=lambda op: op.seconds, reverse=True)[:n])

    def summary_lines(self) -> Sequence[str]:
        """Totals, per-kind and per-process lines, then the slowest keys."""
        total = OpStats.of(self.operations)
        lines = [f"{self.request_count} store operation(s), {total.nbytes} byte(s)"]
        for name, st in self.by_op().items():
            lines.append(
                f"{name}: {st.count} op(s), {st.nbytes} B, p50 {st.p50_ms:.2f} ms, "
                f"p90 {st.p90_ms:.2f} ms, p99 {st.p99_ms:.2f} ms, max {st.max_ms:.2f} ms"
            )
        lines.extend(f"{proc}: {count} op(s)" for proc, count in self.by_process().items())
        lines.extend(
            f"slow: {op.op} {op.key or '/'} {op.seconds * 1e3:.2f} ms ({op.process})"
            for op in self.slowest(5)
        )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Summaries as JSON-safe data (the full operation list under ``operations``)."""
        data = Report.to_dict(self)  # slots dataclass: no zero-argument super()
        data["request_count"] = self.request_count
        data["by_op"] = {k: _stats(v) for k, v in self.by_op().items()}
        data["by_array"] = {k: _stats(v) for k, v in self.by_array().items()}
        data["by_process"] = self.by_process()
        return data


def _stats(stats: OpStats) -> dict[str, Any]:
    return {name: getattr(stats, name) for name in OpStats.__slots__}
