"""Why was it slow?  The verdict of a profile, decided from measured facts (pure).

Ints and floats in, a frozen :class:`Verdict` out: no Dask, no zarr, no clock.  The rules run
in order and the first that holds wins:

1. **memory-bound**: a worker's memory peaked at ``MEMORY_FRACTION`` of its limit or more;
2. **task-overhead-bound**: many tasks (``MANY_TASKS``) that each ran for less than
   ``SHORT_TASK`` seconds (median): the scheduler's per-task cost rivals the work;
3. **decode-bound**: the tasks' CPU time (decoding, computing) exceeds the time they waited on
   the store: the time requests were in flight (the union of their intervals, per process), but
   no more than the tasks' time off CPU (reads ahead overlap the decoding of earlier chunks);
4. **latency-bound** / **bandwidth-bound**: otherwise the store dominates.  Latency when reads
   are small (median under ``SMALL_REQUEST_BYTES``: object stores need megabytes per request
   to reach their bandwidth) or when the fixed cost of a request (the 5th-percentile latency,
   paid once per request) is ``LATENCY_SHARE`` or more of store time; bandwidth otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "LATENCY_SHARE",
    "MANY_TASKS",
    "MEMORY_FRACTION",
    "SHORT_TASK",
    "SMALL_REQUEST_BYTES",
    "ProfileFacts",
    "Verdict",
    "VerdictKind",
    "busy_seconds",
    "decide_verdict",
    "grow_chunks",
]

VerdictKind = Literal[
    "latency-bound",
    "bandwidth-bound",
    "decode-bound",
    "task-overhead-bound",
    "memory-bound",
    "inconclusive",
]

#: A worker above this fraction of its memory limit makes the run memory-bound.
MEMORY_FRACTION = 0.8
#: At least this many tasks ...
MANY_TASKS = 100
#: ... with a median run time below this (seconds) make it task-overhead-bound (Dask advises
#: 100 ms or more per task; each costs the scheduler about a millisecond).
SHORT_TASK = 0.02
#: Fixed per-request cost above this share of store time makes it latency-bound.
LATENCY_SHARE = 0.5
#: Reads smaller than this (median) are dominated by the per-request cost.
SMALL_REQUEST_BYTES = 2**20
#: Stored bytes per request worth aiming for when chunks are too small.
TARGET_REQUEST_BYTES = 8 * 2**20


@dataclass(frozen=True, slots=True)
class ProfileFacts:
    """What a profile measured, reduced to the numbers the verdict needs.

    Attributes
    ----------
    wall_seconds
        Wall time of the profiled call.
    threads
        Worker threads of the cluster.
    tasks
        Tasks run.
    median_task_seconds
        Median compute time of one task.
    cpu_seconds
        Thread CPU time of the tasks (decoding and computing).
    waiting_seconds
        The tasks' time off CPU (waiting on stores, locks, the executor).
    requests
        Store requests.
    store_seconds
        Sum of request latencies.
    io_busy_seconds
        Time at least one request was in flight, summed over processes.
    fixed_request_seconds
        Fixed cost of one request (5th-percentile latency).
    bytes_read, bytes_written
        Bytes moved by the requests.
    metadata_requests
        Requests for metadata documents and listings.
    median_request_bytes
        Median bytes of the reads that returned data.
    memory_fraction
        Highest peak memory / memory limit of a worker (0 when unknown).
    memory_worker
        That worker.
    concurrency
        Requests a task keeps in flight (``zarr-dask-utils.io.concurrency``).
    """

    wall_seconds: float
    threads: int = 1
    tasks: int = 0
    median_task_seconds: float = 0.0
    cpu_seconds: float = 0.0
    waiting_seconds: float = 0.0
    requests: int = 0
    store_seconds: float = 0.0
    io_busy_seconds: float = 0.0
    fixed_request_seconds: float = 0.0
    bytes_read: int = 0
    bytes_written: int = 0
    metadata_requests: int = 0
    median_request_bytes: int = 0
    memory_fraction: float = 0.0
    memory_worker: str = ""
    concurrency: int = 64

    @property
    def io_wait_seconds(self) -> float:
        """Time the work waited on the store: requests in flight, capped by the tasks' wait."""
        if self.tasks and self.waiting_seconds > 0:
            return min(self.io_busy_seconds, self.waiting_seconds)
        return self.io_busy_seconds

    @property
    def latency_share(self) -> float:
        """Share of store time that is the fixed per-request cost (0 without requests)."""
        if not self.requests or self.store_seconds <= 0:
            return 0.0
        return min(1.0, self.requests * self.fixed_request_seconds / self.store_seconds)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What bounds the run, why we think so, and what to do about it."""

    kind: VerdictKind
    summary: str
    evidence: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "kind": self.kind,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "next_steps": list(self.next_steps),
        }

    def __str__(self) -> str:
        lines = [f"verdict: {self.kind}: {self.summary}"]
        lines.extend(f"  evidence: {e}" for e in self.evidence)
        lines.extend(f"  next step: {s}" for s in self.next_steps)
        return "\n".join(lines)


def busy_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """Length of the union of ``(start, stop)`` intervals.

    Examples
    --------
    >>> busy_seconds([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)])
    4.0
    """
    total, end = 0.0, -math.inf
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def grow_chunks(shape: Sequence[int], chunks: Sequence[int], factor: float) -> tuple[int, ...]:
    """Chunks about *factor* times bigger: double the relatively smallest axis until reached.

    Examples
    --------
    >>> grow_chunks((1000, 1000), (10, 10), 16)
    (40, 40)
    >>> grow_chunks((4, 1000), (4, 10), 8)
    (4, 80)
    """
    new = [max(1, int(c)) for c in chunks]
    base = math.prod(new)
    while math.prod(new) < factor * base:
        growable = [i for i, (c, s) in enumerate(zip(new, shape, strict=True)) if c < s]
        if not growable:
            break
        i = min(growable, key=lambda j: (new[j] / max(shape[j], 1), j))
        new[i] = min(new[i] * 2, int(shape[i]))
    return tuple(new)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _memory(f: ProfileFacts) -> Verdict:
    return Verdict(
        "memory-bound",
        f"worker {f.memory_worker or '?'} peaked at {f.memory_fraction:.0%} of its memory limit",
        (f"peak memory / limit = {f.memory_fraction:.2f} (threshold {MEMORY_FRACTION:.0%})",),
        (
            "hold less per task: smaller chunks or a smaller --max-mem for rechunks",
            "give workers more memory (fewer threads per worker, or a bigger memory_limit)",
        ),
    )


def _overhead(f: ProfileFacts) -> Verdict:
    return Verdict(
        "task-overhead-bound",
        f"{f.tasks} tasks of {f.median_task_seconds * 1e3:.2f} ms (median): the scheduler's "
        "per-task cost rivals the work",
        (
            f"{f.tasks} tasks, median task {f.median_task_seconds * 1e3:.2f} ms "
            f"(below {SHORT_TASK * 1e3:.0f} ms)",
            f"wall {f.wall_seconds:.2f} s on {f.threads} thread(s)",
        ),
        (
            "fewer, bigger tasks: give each task at least ~100 ms of work (bigger Dask chunks, "
            "`.rechunk()` before the computation, or batch the per-chunk work)",
        ),
    )


def _decode(f: ProfileFacts) -> Verdict:
    return Verdict(
        "decode-bound",
        f"the tasks computed (decoded) for {f.cpu_seconds:.2f} s of CPU and waited on the store "
        f"for {f.io_wait_seconds:.2f} s",
        (
            f"task CPU {f.cpu_seconds:.2f} s >= store wait {f.io_wait_seconds:.2f} s (requests in "
            f"flight {f.io_busy_seconds:.2f} s, tasks off CPU {f.waiting_seconds:.2f} s)",
            f"{_mb(f.bytes_read)} read in {f.requests} request(s)",
        ),
        (
            "more CPU: more workers or threads (decoding scales with cores)",
            "a cheaper codec when rewriting: `zdu rechunk SRC DST --chunks ... --max-mem 1GiB "
            "--compressor blosc-lz4` (or zstd:1)",
        ),
    )


def _io(f: ProfileFacts, rechunk: str | None) -> Verdict:
    share = f.latency_share
    evidence = [
        f"store wait {f.io_wait_seconds:.2f} s > task CPU {f.cpu_seconds:.2f} s",
        f"{f.requests} request(s), median {f.median_request_bytes} B per read, "
        f"fixed cost {f.fixed_request_seconds * 1e3:.2f} ms each = {share:.0%} of store time",
    ]
    small = f.median_request_bytes < SMALL_REQUEST_BYTES
    if small:
        evidence.append(
            f"median read {f.median_request_bytes} B < {SMALL_REQUEST_BYTES} B: requests too "
            "small to reach the store's bandwidth"
        )
    if share >= LATENCY_SHARE or small:
        steps = [
            f"more requests in flight: raise `zarr-dask-utils.io.concurrency` (now "
            f"{f.concurrency}) and zarr's `async.concurrency`, or add workers"
        ]
        if f.metadata_requests >= 10 and f.metadata_requests >= 0.2 * f.requests:
            steps.append(
                f"{f.metadata_requests} metadata request(s): consolidate it once with "
                "`zdu consolidate STORE` so one read replaces them"
            )
        if f.median_request_bytes < TARGET_REQUEST_BYTES:
            steps.append(
                rechunk
                or "bigger chunks (fewer requests): `zdu analyze STORE` names chunk shapes, "
                "`zdu rechunk SRC DST --chunks ... --max-mem 1GiB` writes them"
            )
        summary = (
            f"{f.requests} request(s) each paying ~{f.fixed_request_seconds * 1e3:.2f} ms "
            "before any byte arrives"
            if share >= LATENCY_SHARE
            else f"{f.requests} request(s) of {f.median_request_bytes} B (median): each one "
            "carries too little to reach the store's bandwidth"
        )
        return Verdict(
            "latency-bound",
            summary,
            tuple(evidence),
            tuple(steps),
        )
    busy = f.io_wait_seconds
    rate = f.bytes_read / busy if busy > 0 else 0.0
    return Verdict(
        "bandwidth-bound",
        f"{_mb(f.bytes_read + f.bytes_written)} moved at {rate / 1e6:.1f} MB/s while requests "
        "were in flight",
        tuple(evidence),
        (
            "more streams: more workers (each has its own network path) or more requests in "
            f"flight (`zarr-dask-utils.io.concurrency`, now {f.concurrency})",
            "read less: a stronger compressor when rewriting (`zdu rechunk ... --compressor "
            "zstd:5`), or select only the variables and regions needed",
            "run the workers next to the data (same region / network as the store)",
        ),
    )


def decide_verdict(facts: ProfileFacts, *, rechunk: str | None = None) -> Verdict:
    """Decide what bounds a run (see the module docstring for the rules).

    Parameters
    ----------
    facts
        The measurements.
    rechunk
        A ready ``zdu rechunk`` advice line for the array read most (latency-bound runs).

    Returns
    -------
    Verdict

    Examples
    --------
    >>> decide_verdict(ProfileFacts(1.0, tasks=5000, median_task_seconds=0.001)).kind
    'task-overhead-bound'
    """
    f = facts
    if f.memory_fraction >= MEMORY_FRACTION:
        return _memory(f)
    if f.tasks >= MANY_TASKS and f.median_task_seconds < SHORT_TASK:
        return _overhead(f)
    if f.requests == 0 and f.cpu_seconds <= 0:
        return Verdict(
            "inconclusive",
            "no store request and no task CPU time was measured",
            (f"wall {f.wall_seconds:.2f} s",),
            ("profile a call that reads through zarr-dask-utils or a traced store",),
        )
    if f.cpu_seconds >= f.io_wait_seconds:
        return _decode(f)
    return _io(f, rechunk)
