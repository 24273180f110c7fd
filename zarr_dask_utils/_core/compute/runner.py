"""Run a graph: on the cluster in a named span, or on threads when it must; name its tasks.

Features build their tasks (``dask.delayed``, keys from :func:`task_name`) and hand them to
:meth:`Operation.run <zarr_dask_utils._core.compute.operation.Operation.run>`, the one door,
which runs them through the private :func:`_run_graph`: one ``compute`` inside
``distributed.span("zdu-<op>")`` so the dashboard groups the work, a progress bar when someone
is watching, cancellation on error, and which engine ran and why.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import dask
import dask.base
from distributed import Client, span

from zarr_dask_utils._core.compute.cluster import describe_client, get_client
from zarr_dask_utils._core.compute.progress import show_progress, threaded_progress
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.storage.locations import Location

__all__ = ["GraphResult", "interactive", "task_name"]

logger = logging.getLogger(__name__)


def interactive() -> bool:
    """``True`` in a terminal or a notebook, where a progress bar helps a human."""
    try:
        shell = get_ipython().__class__.__name__  # type: ignore[name-defined]
    except NameError:
        shell = ""
    return shell == "ZMQInteractiveShell" or bool(getattr(sys.stderr, "isatty", lambda: False)())


def task_name(op: str, *parts: Any) -> str:
    """A new task key ``zdu-<op>-<uuid>``; the dashboard groups tasks by the ``zdu-<op>`` prefix.

    Every call returns a different key: stores change between runs, and a graph whose keys
    equal those of a previous run's tasks would be handed that run's results while the
    scheduler still holds them (releasing them is asynchronous).  *parts* (what the task works
    on) only document the call site: hashing them would cost time and add nothing to a key
    that is unique anyway.
    """
    del parts
    return f"zdu-{op}-{uuid.uuid4().hex}"


class GraphResult(tuple[Any, ...]):
    """The computed values of a graph, plus ``engine``: which engine ran it and why."""

    engine: str

    def __new__(cls, values: Sequence[Any], engine: str) -> GraphResult:
        obj = super().__new__(cls, values)
        obj.engine = engine
        return obj


def _run_graph(
    collections: Sequence[Any],
    *,
    location: Location,
    op: str,
    client: Client | None = None,
    progress: bool | None = None,
) -> GraphResult:
    """Compute Dask *collections* once and return their values with an engine description.

    Parameters
    ----------
    collections
        Delayed objects / collections built by a feature.
    location
        The store the graph works on; an in-memory store cannot be shared with worker
        processes, so its graph runs on threads in this process.
    op
        Operation name; the span is ``zdu-<op>``.
    client
        Client to use; see :func:`~zarr_dask_utils.get_client` for the fallback order.
    progress
        Show a progress bar; ``None`` resolves from ``zarr-dask-utils.progress``, then from
        whether a human is watching.
    """
    show = get_option("progress", progress)
    if show is None:
        show = interactive()
    if not location.shareable:
        why = f"threads in this process ({location.display} is in memory, invisible to workers)"
        if show:
            with threaded_progress():
                values = dask.base.compute(*collections, scheduler="threads")
        else:
            values = dask.base.compute(*collections, scheduler="threads")
        return GraphResult(values, why)
    with get_client(client) as cl:
        with span(f"zdu-{op}"):
            futures = cl.compute(list(collections))
        try:
            if show:
                show_progress(cl, futures)  # never raises: a bar cannot fail the operation
            values = cl.gather(futures)
        except BaseException:
            # a failed (or interrupted) operation must not keep reading or writing stores
            cl.cancel(futures)
            raise
        return GraphResult(values, describe_client(cl))
