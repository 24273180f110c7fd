"""The cluster: find the user's Dask client, connect to their scheduler, or start one.

:func:`get_client` is the one way features get a ``distributed.Client``.  In order:

1. the ``client`` argument;
2. the Client already current in this process (a notebook's ``Client()``, a worker task);
3. a scheduler address from the ``scheduler`` argument, a ``scheduler_file`` (HPC batch jobs,
   ``dask scheduler --scheduler-file``), ``DASK_SCHEDULER_ADDRESS`` or dask config
   ``scheduler-address``;
4. an embedded ``LocalCluster`` with worker processes sized to the machine, closed on exit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dask.config
from dask.utils import parse_timedelta
from distributed import Client, LocalCluster

from zarr_dask_utils._core.compute.worker_logs import quiet_workers
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import ClusterConnectionError, InvalidOptionError
from zarr_dask_utils._core.storage.trace import attached

__all__ = ["cluster_threads", "describe_client", "get_client"]

logger = logging.getLogger(__name__)


def _current_client() -> Client | None:
    try:
        return Client.current(allow_global=True)
    except ValueError:
        return None


@contextmanager
def get_client(
    client: Client | None = None,
    *,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike[str] | None = None,
) -> Iterator[Client]:
    """Yield a ``distributed.Client`` for running graphs, closing what it opened itself.

    Parameters
    ----------
    client
        Use this client as it is (never closed here).
    scheduler
        Address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``.
    scheduler_file
        Path of the JSON file a scheduler wrote with ``--scheduler-file``.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ClusterConnectionError
        No scheduler answered at the address or scheduler file within
        ``zarr-dask-utils.cluster.connect-timeout``.
    InvalidOptionError
        Both ``scheduler`` and ``scheduler_file`` were given, or the file does not exist.
    """
    if client is not None:
        quiet_workers(client)
        with attached(client):
            yield client
        return
    if scheduler and scheduler_file:
        raise InvalidOptionError(
            "Both a scheduler address and a scheduler file were given; pass only one of them."
        )
    if scheduler is None and scheduler_file is None:
        current = _current_client()
        if current is not None:
            quiet_workers(current)
            with attached(current):
                yield current
            return
        scheduler = dask.config.get("scheduler-address", None) or os.environ.get(
            "DASK_SCHEDULER_ADDRESS"
        )
    timeout = parse_timedelta(get_option("cluster.connect-timeout"))
    with ExitStack() as stack:
        if scheduler_file is not None:
            path = Path(scheduler_file)
            if not path.is_file():
                raise InvalidOptionError(
                    f"Scheduler file {str(path)!r} does not exist. Start the scheduler with "
                    f"`dask scheduler --scheduler-file {path}` (or wait until it has written the "
                    "file), then run again."
                )
            target = f"scheduler file {str(path)!r}"
            kwargs: dict[str, object] = {"scheduler_file": str(path)}
        elif scheduler:
            target = f"scheduler address {scheduler!r}"
            kwargs = {"address": scheduler}
        else:
            cluster = stack.enter_context(_embedded_cluster())
            target = "embedded LocalCluster"
            kwargs = {"address": cluster}
        try:
            new = stack.enter_context(Client(timeout=timeout, set_as_default=False, **kwargs))
        except (OSError, TimeoutError) as err:
            raise ClusterConnectionError(
                f"No Dask scheduler answered at {target} within {timeout:g} s ({err}). Check "
                "that the scheduler is running and reachable from here, or drop --scheduler/"
                "--scheduler-file to use an embedded LocalCluster."
            ) from err
        logger.info("Dask dashboard: %s", new.dashboard_link)
        quiet_workers(new)
        with attached(new):
            yield new


@contextmanager
def _embedded_cluster() -> Iterator[LocalCluster]:
    n_workers = get_option("cluster.n-workers") or min(os.cpu_count() or 1, 8)
    threads = get_option("cluster.threads-per-worker")
    with LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=get_option("cluster.dashboard-address"),
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster


def cluster_threads(client: Client | None) -> int:
    """Worker threads of the cluster behind *client* (at least 1); no client: local cores."""
    if client is None:
        return os.cpu_count() or 1
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return max(1, sum(int(w.get("nthreads", 0)) for w in workers.values()))


def describe_client(client: Client) -> str:
    """One line for reports: how many workers and threads, where, and the dashboard."""
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    return (
        f"distributed: {len(workers)} worker(s), {threads} thread(s) at {info.get('address')}"
        f" (dashboard {client.dashboard_link})"
    )
