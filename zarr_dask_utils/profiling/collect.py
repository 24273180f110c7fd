"""What the cluster recorded during a profile: worker memory, the task stream, Dask's report.

Functions run on the workers (:func:`memory_since`) or the scheduler (Dask's report), and turn
what they return into the records summarised by the pure
:mod:`~zarr_dask_utils.profiling.summaries` and :mod:`~zarr_dask_utils.profiling.verdict`.
:mod:`~zarr_dask_utils.profiling.instruments` makes the requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dask.utils import key_split

from zarr_dask_utils.profiling.summaries import TaskRun, WorkerMemory

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DaskReport", "memory_since", "task_runs", "worker_memory"]

logger = logging.getLogger(__name__)


def _count_since(monitor: Any, since: float) -> int:
    """The system-monitor count of the first sample taken at or after *since* (wall clock)."""
    times = monitor.quantities["time"]
    return int(monitor.count) - sum(1 for t in times if t is not None and t >= since)


def memory_since(dask_worker: Any, since: float) -> dict[str, Any]:
    """A worker's memory samples since *since* (``time.time()``), ending with one taken now.

    Runs on the worker.  The last sample is always the worker's memory at this call, so even
    a call shorter than the monitor's interval has a series of at least one point.
    """
    monitor = dask_worker.monitor
    series = monitor.range_query(start=_count_since(monitor, since))
    now = int(monitor.proc.memory_info().rss)
    pairs = [
        (t, m)
        for t, m in zip(series.get("time", []), series.get("memory", []), strict=False)
        if t is not None and m is not None
    ]
    # The monitor samples every 500 ms or so: a shorter call may have none of its own, and
    # the memory at the end belongs to the series in any case.
    pairs.append((time.time(), now))
    return {
        "name": str(dask_worker.name),
        "time": [t for t, _ in pairs],
        "memory": [m for _, m in pairs],
        "now": now,
        "limit": int(dask_worker.memory_manager.memory_limit or 0),
    }


def worker_memory(
    results: Mapping[str, Mapping[str, Any]], since: float
) -> tuple[tuple[WorkerMemory, ...], tuple[tuple[float, int], ...]]:
    """Memory of every worker and of the whole cluster, from their system monitors' samples.

    *results* maps worker addresses to what :func:`memory_since` returned there.  Each
    worker's system monitor keeps its recent samples with their times (minutes of them), so
    nothing is asked of the workers when a profile starts.  The cluster's series (what
    ``distributed``'s ``MemorySampler`` reports, fed by the same numbers through heartbeats)
    is the sum of every worker's latest sample at each sample time, in seconds since *since*.
    """
    out = []
    series: list[tuple[float, str, int]] = []
    for address in sorted(results):
        r = results[address]
        times, memory = [float(t) for t in r["time"]], [int(m) for m in r["memory"]]
        peak = max([*memory, int(r["now"])])
        t0 = times[0] if times else 0.0
        out.append(
            WorkerMemory(
                f"{r['name']} ({address})",
                peak,
                int(r["limit"]),
                tuple(t - t0 for t in times),
                tuple(memory),
            )
        )
        series.extend((t, address, m) for t, m in zip(times, memory, strict=True))
    latest: dict[str, int] = {}
    cluster = []
    for t, address, m in sorted(series):
        latest[address] = m
        cluster.append((max(0.0, t - since), sum(latest.values())))
    return tuple(out), tuple(cluster)


def task_runs(records: Iterable[Mapping[str, Any]]) -> tuple[TaskRun, ...]:
    """Flatten ``get_task_stream`` records into compute / transfer stretches per prefix."""
    runs = []
    for rec in records:
        prefix = key_split(rec.get("key", ""))
        worker = str(rec.get("worker", ""))
        for ss in rec.get("startstops", ()):
            runs.append(
                TaskRun(prefix, worker, str(ss["action"]), float(ss["start"]), float(ss["stop"]))
            )
    return tuple(sorted(runs, key=lambda r: r.start))


async def _render_report(dask_scheduler: Any, start: float, code: str) -> str:
    """Dask's ``performance_report`` of what the scheduler recorded since *start*."""
    last_count = _count_since(dask_scheduler.monitor, start)
    return str(
        await dask_scheduler.performance_report(
            start=start, last_count=last_count, code=code, mode="inline"
        )
    )


class DaskReport:
    """Dask's offline performance report of a profiled call, rendered when first asked for.

    ``distributed.performance_report`` builds its bokeh document (a second or more of the
    scheduler's time, several seconds on a busy machine) when its block ends.  Here only the
    wall-clock start of the call is noted; the scheduler renders the same report from what it
    keeps (task stream, worker profiles, system monitor, logs since the start) on the first
    :meth:`html` call, while the cluster is still up.  Work the cluster ran between the end of
    the call and the rendering appears in it too.  A cluster that closes with the call (an
    embedded one) gets its report rendered before it closes (``finish(eager=True)``).

    Parameters
    ----------
    client
        The client of the cluster the call ran on.
    start
        Wall-clock start of the call (``time.time()``).
    """

    def __init__(self, client: Client, start: float) -> None:
        self._client: Client | None = client
        self._address = str(client.scheduler.address) if client.scheduler else ""
        self._start = start
        self._code = ""
        self._html: str | None = None
        self._why_not = ""

    @classmethod
    def start(cls, client: Client) -> DaskReport:
        """Note that a call on *client*'s cluster starts now (no request is made).

        The scheduler's task-stream plugin must be there already (``get_task_stream``).
        """
        return cls(client, time.time())

    def finish(self, code: str, *, eager: bool) -> None:
        """The call ended: *code* is what ran; *eager* renders now (the cluster closes next)."""
        self._code = code
        if eager:
            self.html()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the client (a copy elsewhere reconnects by address, if it can)."""
        return {**self.__dict__, "_client": None}

    def _render(self) -> str:
        from distributed import Client

        client = self._client
        if client is not None and client.status == "running":
            return self._render_on(client)
        if not self._address or self._address.startswith("inproc://"):
            raise RuntimeError("its client has closed")
        # the profile's client has closed: a scheduler of its own may still be up
        with Client(self._address, timeout=3) as fresh:  # type: ignore[no-untyped-call]
            return self._render_on(fresh)

    def _render_on(self, client: Client) -> str:
        return str(
            client.run_on_scheduler(  # type: ignore[no-untyped-call]
                _render_report, start=self._start, code=self._code
            )
        )

    def html(self) -> str:
        """The report's HTML (rendered once), or ``""`` when the cluster is gone."""
        if self._html is None:
            try:
                self._html = self._render()
            except Exception as err:  # the cluster closed: the profile stands without it
                self._why_not = f"the cluster that ran the call is gone ({err})"
                logger.info("Dask performance report not rendered: %s", self._why_not)
                self._html = ""
            self._client = None  # do not keep a client alive with the report
        return self._html

    @property
    def why_missing(self) -> str:
        """Why :meth:`html` is empty (``""`` when it is not, or not rendered yet)."""
        return self._why_not
