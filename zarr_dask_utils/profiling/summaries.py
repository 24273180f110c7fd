"""Summaries of what a profile recorded: store requests per array and store, task time per prefix.

Pure: store-operation records, task-stream records and metric dicts in, frozen dataclasses out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zarr_dask_utils._core.pure.trace_report import StoreOp, array_of

__all__ = [
    "IOStats",
    "PrefixTime",
    "TaskRun",
    "WorkerMemory",
    "is_metadata",
    "io_stats",
    "prefix_times",
]

_METADATA = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")
_WRITES = ("set", "set_if_not_exists")


def is_metadata(op: StoreOp) -> bool:
    """Whether *op* reads or lists metadata rather than chunk data."""
    return op.op.startswith("list") or op.key.rsplit("/", 1)[-1] in _METADATA


@dataclass(frozen=True, slots=True)
class IOStats:
    """Store requests of one array or one store.

    ``decode_seconds`` is the task CPU time of the profile shared among arrays by the chunk
    bytes each read (an estimate: tasks are not labelled by array); 0 for stores.
    """

    name: str
    requests: int
    bytes_read: int
    bytes_written: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    store_seconds: float
    decode_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {name: getattr(self, name) for name in IOStats.__slots__}


@dataclass(frozen=True, slots=True)
class PrefixTime:
    """Time of the tasks of one key prefix (``zdu-check-decode``, ``getitem``…), in seconds.

    ``compute`` is thread CPU time, ``waiting`` the rest of the tasks' time off CPU (store
    requests, locks, the executor), ``transfer`` time fetching inputs from other workers.
    """

    prefix: str
    tasks: int
    compute: float
    transfer: float
    waiting: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {name: getattr(self, name) for name in PrefixTime.__slots__}


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One stretch of the task stream: a task computing or fetching its inputs."""

    prefix: str
    worker: str
    action: str
    start: float
    stop: float


@dataclass(frozen=True, slots=True)
class WorkerMemory:
    """Memory of one worker over the profile (``times`` in seconds since it started)."""

    worker: str
    peak_bytes: int
    limit_bytes: int
    times: tuple[float, ...] = ()
    nbytes: tuple[int, ...] = ()

    @property
    def fraction(self) -> float:
        """Peak over limit (0 without a limit)."""
        return self.peak_bytes / self.limit_bytes if self.limit_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (without the series)."""
        return {
            "worker": self.worker,
            "peak_bytes": self.peak_bytes,
            "limit_bytes": self.limit_bytes,
            "fraction": self.fraction,
        }


def _one(name: str, ops: Sequence[StoreOp], decode: float = 0.0) -> IOStats:
    ms = np.array([op.seconds * 1e3 for op in ops]) if ops else np.zeros(1)
    p50, p95, p99 = (float(x) for x in np.percentile(ms, [50, 95, 99]))
    return IOStats(
        name,
        len(ops),
        sum(op.nbytes for op in ops if op.op not in _WRITES),
        sum(op.nbytes for op in ops if op.op in _WRITES),
        p50,
        p95,
        p99,
        sum(op.seconds for op in ops),
        decode,
    )


def io_stats(
    operations: Sequence[StoreOp], cpu_seconds: float = 0.0
) -> tuple[tuple[IOStats, ...], tuple[IOStats, ...]]:
    """Per-array and per-store statistics of *operations*.

    Arrays are named ``<store> <path>``; *cpu_seconds* is shared among them by the chunk
    bytes each read (see :class:`IOStats`).
    """
    by_array: dict[str, list[StoreOp]] = defaultdict(list)
    by_store: dict[str, list[StoreOp]] = defaultdict(list)
    chunk_bytes: dict[str, int] = defaultdict(int)
    for op in operations:
        by_store[op.store or "?"].append(op)
        if op.op.startswith("list"):
            continue
        name = array_of(op.key) or "/"
        by_array[name].append(op)
        if not is_metadata(op) and op.op not in _WRITES:
            chunk_bytes[name] += op.nbytes
    total = sum(chunk_bytes.values())
    arrays = tuple(
        _one(name, ops, cpu_seconds * chunk_bytes[name] / total if total else 0.0)
        for name, ops in sorted(by_array.items())
    )
    stores = tuple(_one(name, ops) for name, ops in sorted(by_store.items()))
    return arrays, stores


def prefix_times(
    metrics: Mapping[tuple[Any, ...], float], runs: Iterable[TaskRun]
) -> tuple[PrefixTime, ...]:
    """Time per task prefix from a span's ``cumulative_worker_metrics`` and the task stream.

    Compute and waiting come from the ``("execute", prefix, activity, "seconds")`` metrics;
    transfers and task counts from the task stream.
    """
    compute: dict[str, float] = defaultdict(float)
    waiting: dict[str, float] = defaultdict(float)
    for key, value in metrics.items():
        if len(key) != 4 or key[0] != "execute" or key[3] != "seconds":
            continue
        prefix, activity = str(key[1]), key[2]
        if prefix == "N/A":
            continue
        if activity == "thread-cpu":
            compute[prefix] += value
        else:  # thread-noncpu, executor, other, disk and spill activity
            waiting[prefix] += value
    transfer: dict[str, float] = defaultdict(float)
    tasks: dict[str, int] = defaultdict(int)
    for run in runs:
        if run.action == "compute":
            tasks[run.prefix] += 1
        elif run.action == "transfer":
            transfer[run.prefix] += run.stop - run.start
    names = sorted(set(compute) | set(waiting) | set(tasks))
    return tuple(PrefixTime(p, tasks[p], compute[p], transfer[p], waiting[p]) for p in names)
