"""Tasks pinned to chosen workers, and which worker a task runs on.

Measurements (``benchmark_store``, ``optimize_s3_access``) time requests from each worker in
turn: their tasks are pinned to one worker address and report where they ran.
"""

from __future__ import annotations

from typing import Any

from dask.base import annotate
from dask.delayed import Delayed, delayed

from zarr_dask_utils._core.compute.operation import Operation
from zarr_dask_utils._core.compute.runner import task_name

__all__ = ["cluster_workers", "pinned_task", "worker_name"]


def worker_name() -> str:
    """Address of the Dask worker running this code (``"local"`` outside a worker)."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # threads in this process (an in-memory store)
        return "local"


def cluster_workers(op: Operation) -> list[str]:
    """Sorted worker addresses of the operation's client (none without a client)."""
    client = op.client
    if client is None:
        return []
    return sorted(client.scheduler_info(n_workers=-1).get("workers", {}))


def pinned_task(worker: str | None, func: Any, *args: Any, name: str, **kwargs: Any) -> Delayed:
    """A task ``zdu-<name>`` calling *func*, pinned to *worker* (``None``: anywhere)."""
    task: Delayed
    if worker is None:
        task = delayed(func, pure=False)(*args, dask_key_name=task_name(name), **kwargs)
        return task
    with annotate(workers=[worker], allow_other_workers=False):
        task = delayed(func, pure=False)(*args, dask_key_name=task_name(name), **kwargs)
    return task
