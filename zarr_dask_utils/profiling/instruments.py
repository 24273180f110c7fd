"""The profiler's instruments, opened and read in three requests to the cluster.

Every request to the scheduler or the workers is a round trip: 3-5 ms on a quiet machine,
15-40 ms on a loaded one, paid by every profile whatever the size of the call.  Opened one by
one (``get_task_stream``, ``MemorySampler``, ``ZarrDebugger``'s worker plugin, the span's
metrics, worker memory, the cluster's threads) a profile made about fifteen of them; here:

* **opening**, one request to the scheduler: note the task stream's position and register
  the store-operation tracer's :class:`~zarr_dask_utils._core.storage.trace.TracePlugin`
  (the scheduler sends it to the workers and waits for them);
* the call runs in a ``zdu-profile`` span (no request: an annotation of its tasks);
* **closing**, one request to the workers: send a heartbeat (which carries the fine metrics
  of the tasks that just ended to the scheduler), hand over the trace records, remove the
  tracer's plugin, and return the memory samples of the worker's system monitor since the
  start (there is no memory sampler to start or stop: the monitor keeps minutes of samples);
* and one to the scheduler: the span's metrics, the task stream since the noted position,
  the cluster's threads; it forgets the tracer's plugin (no second broadcast to the workers).
  A worker that joins between these two requests keeps the plugin, and its session records
  into a buffer nobody drains until that worker ends.

The tracer is the one of :class:`~zarr_dask_utils.ZarrDebugger` (sessions of
:mod:`~zarr_dask_utils._core.storage.trace`); operations run inside the call find the session
claimed (:func:`~zarr_dask_utils._core.storage.trace.claimed`) and leave its plugin alone.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distributed import span
from distributed.protocol.pickle import dumps

from zarr_dask_utils._core.pure.trace_report import StoreOp
from zarr_dask_utils._core.storage import trace
from zarr_dask_utils.profiling.collect import memory_since, task_runs, worker_memory
from zarr_dask_utils.profiling.summaries import TaskRun, WorkerMemory

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Recording", "instruments"]

logger = logging.getLogger(__name__)


@dataclass
class Recording:
    """What the instruments recorded; filled in when the :func:`instruments` block ends."""

    #: Wall-clock start of the block (``time.time()``).
    since: float = 0.0
    #: Store operations of this process and every worker.
    operations: tuple[StoreOp, ...] = ()
    #: The task stream, flattened.
    runs: tuple[TaskRun, ...] = ()
    #: The ``zdu-profile`` span's ``cumulative_worker_metrics``.
    metrics: dict[tuple[Any, ...], float] = field(default_factory=dict)
    #: Memory of every worker.
    memory: tuple[WorkerMemory, ...] = ()
    #: ``(seconds since the start, bytes)`` of the whole cluster.
    cluster_memory: tuple[tuple[float, int], ...] = ()
    #: Worker threads of the cluster.
    threads: int = 1


async def _open_on_scheduler(dask_scheduler: Any, trace_id: str) -> int:
    """Register the tracer's worker plugin; return the task stream's position."""
    name = trace.plugin_name(trace_id)
    plugin = dumps(trace.TracePlugin(trace_id))  # type: ignore[no-untyped-call]
    responses = await dask_scheduler.register_worker_plugin(None, plugin, name, idempotent=False)
    for address, response in responses.items():
        if response.get("status") == "error":
            raise RuntimeError(
                f"the store-operation tracer failed to start on worker {address}: "
                f"{response.get('exception_text', '')}"
            )
    return int(dask_scheduler.get_task_stream_index())


async def _close_on_worker(dask_worker: Any, trace_id: str, since: float) -> dict[str, Any]:
    """Heartbeat, trace records, the tracer's plugin removed, memory: one worker's part."""
    try:
        await dask_worker.heartbeat()  # the fine metrics of the tasks that just ended
    except Exception as err:  # the scheduler keeps the metrics of the last heartbeat
        logger.debug("heartbeat before reading span metrics failed: %s", err)
    records = trace.drain(trace_id)
    name = trace.plugin_name(trace_id)
    if name in dask_worker.plugins:  # what ``unregister_worker_plugin`` asks of each worker
        await dask_worker.plugin_remove(name)
    return {"records": records, "memory": memory_since(dask_worker, since)}


async def _close_on_scheduler(
    dask_scheduler: Any, trace_id: str, index: int, span_id: str
) -> dict[str, Any]:
    """Forget the tracer's plugin; the span's metrics, the task stream, the cluster's threads.

    The workers removed the plugin themselves (:func:`_close_on_worker`); the scheduler only
    stops giving it to workers that join later.
    """
    dask_scheduler.worker_plugins.pop(trace.plugin_name(trace_id), None)
    spans = dask_scheduler.extensions["spans"].spans
    metrics = dict(spans[span_id].cumulative_worker_metrics) if span_id in spans else {}
    return {
        "metrics": metrics,
        "stream": dask_scheduler.get_task_stream(start_index=index),
        "threads": sum(ws.nthreads for ws in dask_scheduler.workers.values()),
    }


def _close(client: Client, trace_id: str, index: int, span_id: str, out: Recording) -> None:
    workers = client.run(_close_on_worker, trace_id=trace_id, since=out.since)
    state = client.run_on_scheduler(  # type: ignore[no-untyped-call]
        _close_on_scheduler, trace_id=trace_id, index=index, span_id=span_id
    )
    trace.absorb(trace_id, [op for a in sorted(workers) for op in workers[a]["records"]])
    out.memory, out.cluster_memory = worker_memory(
        {a: r["memory"] for a, r in workers.items()}, out.since
    )
    out.runs = task_runs(state["stream"])
    out.metrics = {
        tuple(k) if isinstance(k, tuple) else (k,): float(v) for k, v in state["metrics"].items()
    }
    out.threads = max(1, int(state["threads"]))


@contextmanager
def instruments(client: Client) -> Iterator[Recording]:
    """Record the task stream, span metrics, store operations and memory of the block.

    Parameters
    ----------
    client
        The cluster's client; the block's work runs there.

    Yields
    ------
    Recording
        Filled in when the block ends (also when it raises: the tracer is removed either way).
    """
    out = Recording(since=time.time())
    trace_id = uuid.uuid4().hex[:12]
    trace.start_session(trace_id)
    try:
        with trace.claimed(client, trace_id):
            try:
                index = client.run_on_scheduler(  # type: ignore[no-untyped-call]
                    _open_on_scheduler, trace_id=trace_id
                )
            except Exception:
                with suppress(Exception):  # the scheduler keeps a plugin it could not send
                    client.unregister_worker_plugin(trace.plugin_name(trace_id))  # type: ignore[no-untyped-call]
                raise
            span_id = ""
            finished = False
            try:
                with span("zdu-profile") as span_id:
                    yield out
                finished = True
            finally:
                try:
                    _close(client, trace_id, index, span_id, out)
                except Exception:
                    if finished:
                        raise
                    logger.debug("closing the profile's instruments failed", exc_info=True)
    finally:
        out.operations = tuple(trace.stop_session(trace_id))
