"""``ZarrDebugger`` and ``enable_debug_mode``: see every store operation, also on workers."""

from __future__ import annotations

import logging
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from zarr_dask_utils._core import trace
from zarr_dask_utils._core.reports import Report
from zarr_dask_utils._core.trace import StoreOp

if TYPE_CHECKING:
    from distributed import Client
    from zarr.abc.store import Store

__all__ = ["OpStats", "TraceReport", "ZarrDebugger", "disable_debug_mode", "enable_debug_mode"]

_DEBUG_LOGGERS = ("zarr_dask_utils", "zarr", "fsspec", "s3fs")
_handler: logging.Handler | None = None


def enable_debug_mode(*, level: int = logging.DEBUG, stream: Any = None) -> None:
    """Turn on structured debug logging for zarr-dask-utils, zarr, fsspec, s3fs and the tracer.

    Every store operation opened through zarr-dask-utils in this process is then logged on
    ``zarr_dask_utils.trace`` as ``op=get key=… bytes=… ms=… process=…``.  Call
    :func:`disable_debug_mode` to undo it.  Worker processes are not changed: use
    :class:`ZarrDebugger` to collect their operations.

    Parameters
    ----------
    level
        Logging level of the four loggers.
    stream
        Where the handler writes (default ``sys.stderr``).
    """
    global _handler
    disable_debug_mode()
    _handler = logging.StreamHandler(stream or sys.stderr)
    _handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    for name in _DEBUG_LOGGERS:
        log = logging.getLogger(name)
        log.addHandler(_handler)
        log.setLevel(level)
    trace.set_debug_logging(True)


def disable_debug_mode() -> None:
    """Undo :func:`enable_debug_mode` (remove its handler, stop logging store operations)."""
    global _handler
    trace.set_debug_logging(False)
    if _handler is not None:
        for name in _DEBUG_LOGGERS:
            logging.getLogger(name).removeHandler(_handler)
        _handler = None


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


class ZarrDebugger:
    """Record every store operation made inside the block, here and on Dask workers.

    Operations on stores opened by zarr-dask-utils (every feature, :func:`open_node`,
    :func:`open_store`) are recorded in this process and, through a worker plugin, on every
    worker of the clients used inside the block (the current one, one passed here, or an
    embedded cluster).  The same numbers also reach Dask's fine performance metrics (the
    dashboard's "Fine Performance Metrics" page, under ``zdu-store``).  Wrap your own stores
    with :meth:`wrap` to trace plain zarr code too.

    Parameters
    ----------
    client
        A client whose workers to trace for the whole block (default: the current client if
        there is one; embedded clusters started inside the block are traced automatically).

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import ZarrDebugger
    >>> with ZarrDebugger() as dbg:
    ...     store = dbg.wrap(zarr.storage.MemoryStore())
    ...     _ = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="i4")
    >>> dbg.report().by_op()["set"].count
    1
    """

    def __init__(self, client: Client | None = None) -> None:
        self._client = client
        self._trace_id = uuid.uuid4().hex[:12]
        self._stack: ExitStack | None = None
        self._operations: list[StoreOp] = []

    def wrap(self, store: Store) -> Store:
        """Return *store* wrapped so that plain zarr code on it is traced."""
        return trace.TracingStore(store)

    def __enter__(self) -> ZarrDebugger:
        trace.start_session(self._trace_id)
        self._stack = ExitStack()
        client = self._client
        if client is None:
            from zarr_dask_utils._core.cluster import _current_client

            client = _current_client()
        if client is not None:
            self._stack.enter_context(trace.attached(client))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._stack is not None:
                self._stack.close()
        finally:
            self._operations = trace.stop_session(self._trace_id)

    @property
    def operations(self) -> tuple[StoreOp, ...]:
        """Every operation recorded (complete after the block has ended)."""
        return tuple(self._operations)

    def report(self, location: str = "all stores") -> TraceReport:
        """A :class:`TraceReport` of the operations recorded."""
        return TraceReport(location=location, operations=self.operations)
