"""The cluster: find the user's Dask client, connect to their scheduler, or start one.

:func:`get_client` is the one way features get a ``distributed.Client``.  In order:

1. the ``client`` argument;
2. the Client already current in this process (a notebook's ``Client()``, a worker task);
3. a scheduler address from the ``scheduler`` argument, a ``scheduler_file`` (HPC batch jobs,
   ``dask scheduler --scheduler-file``), ``DASK_SCHEDULER_ADDRESS`` or dask config
   ``scheduler-address``;
4. an embedded ``LocalCluster``, closed on exit: one process with threads, or worker processes
   (:func:`embedded_mode`: ``zarr-dask-utils.cluster.processes``, ``zdu --processes/--threads``).

A user's client or scheduler is always used as given.  Every client gets a short note of how
it was found (and, for the embedded cluster, why threads or processes), which
:func:`describe_client` puts in each report's engine line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
from dask.utils import parse_timedelta
from distributed import Client, LocalCluster

from zarr_dask_utils._core.compute.codec_pipeline import describe_codec_pipeline, use_codec_pipeline
from zarr_dask_utils._core.compute.worker_logs import quiet_workers
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import ClusterConnectionError, InvalidOptionError
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.trace import attached

__all__ = [
    "EmbeddedMode",
    "cluster_threads",
    "configured_scheduler_address",
    "describe_client",
    "embedded_mode",
    "get_client",
    "is_embedded",
]

logger = logging.getLogger(__name__)

#: How each client in use was found (and why the embedded cluster runs as it does).
_ORIGINS: weakref.WeakKeyDictionary[Client, str] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class EmbeddedMode:
    """How the embedded ``LocalCluster`` runs: worker processes or threads, and why."""

    processes: bool
    reason: str

    @property
    def label(self) -> str:
        """``"worker processes"`` or ``"threads in one process"``."""
        return "worker processes" if self.processes else "threads in one process"


_SETTINGS = {"auto": None, "true": True, "processes": True, "false": False, "threads": False}


def _processes_setting(value: Any) -> bool | None:
    """``zarr-dask-utils.cluster.processes`` as ``True``/``False``, or ``None`` for auto."""
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if key not in _SETTINGS:
        raise InvalidOptionError(
            f"zarr-dask-utils.cluster.processes={value!r} is not a choice. Use auto, true "
            "(worker processes) or false (threads in one process)."
        )
    return _SETTINGS[key]


def embedded_mode(
    locations: Iterable[Location] = (), processes: Any = None, workload: str | None = None
) -> EmbeddedMode:
    """Choose threads or worker processes for an embedded cluster working on *locations*.

    ``auto`` picks threads in one process: measured on a 2-core machine
    (``benchmarks/README.md``, "Where rechunk time goes"), worker processes took as long
    for block copies, 2.2x as long for a P2P rechunk (chunk bytes move between processes)
    and twice the CPU to start, while decoding, encoding (blosc, zstd) and file and network
    I/O release the GIL, so one process with a thread per core keeps the cores busy.
    Object stores were not measured apart; they get threads too (s3fs I/O is asynchronous).

    Parameters
    ----------
    locations
        The stores the graphs read and write (shown in the reason).
    processes
        ``True``/``False``/``"auto"``; ``None`` reads ``zarr-dask-utils.cluster.processes``.
    workload
        Why the operation's tasks want worker processes (``auto`` then picks them): e.g. the
        converters' netCDF/HDF5 reads, which a per-process lock serialises across threads, or
        a deep scan of many small chunks, whose per-chunk Python work holds the GIL
        (``integrity.processes-from-chunks``).

    Returns
    -------
    EmbeddedMode
    """
    raw = get_option("cluster.processes", processes)
    setting = _processes_setting(raw)
    if setting is not None:
        key = "true" if setting else "false"
        return EmbeddedMode(setting, f"cluster.processes={key}, or --processes/--threads")
    if workload:
        return EmbeddedMode(True, f"cluster.processes=auto, {workload}")
    kinds = sorted({"object store" if loc.is_remote else "local" for loc in locations})
    where = " and ".join(kinds) + " stores" if kinds else "no stores"
    return EmbeddedMode(
        False,
        f"cluster.processes=auto, {where}: decoding and I/O release the GIL, and no chunk "
        "bytes travel between processes",
    )


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
    locations: Iterable[Location] = (),
    workload: str | None = None,
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
    locations
        The stores the work reads and writes; they decide threads or processes of an
        embedded cluster (see :func:`embedded_mode`).
    workload
        Why the tasks want worker processes (see :func:`embedded_mode`).

    Yields
    ------
    distributed.Client

    Raises
    ------
    ClusterConnectionError
        No scheduler answered at the address or scheduler file within
        ``zarr-dask-utils.cluster.connect-timeout``.
    InvalidOptionError
        Both ``scheduler`` and ``scheduler_file`` were given, the file does not exist, or
        ``cluster.processes`` is not ``auto``, ``true`` or ``false``.
    """
    if client is not None:
        _ORIGINS.setdefault(client, "the client passed in")
        quiet_workers(client)
        with attached(client), use_codec_pipeline(client):
            yield client
        return
    if scheduler and scheduler_file:
        raise InvalidOptionError(
            "Both a scheduler address and a scheduler file were given; pass only one of them."
        )
    if scheduler is None and scheduler_file is None:
        current = _current_client()
        if current is not None:
            _ORIGINS.setdefault(current, "the current client")
            quiet_workers(current)
            with attached(current), use_codec_pipeline(current):
                yield current
            return
        scheduler = configured_scheduler_address()
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
            origin = target
            kwargs: dict[str, object] = {"scheduler_file": str(path)}
        elif scheduler:
            target = f"scheduler address {scheduler!r}"
            origin = "the scheduler address given"
            kwargs = {"address": scheduler}
        else:
            mode = embedded_mode(locations, workload=workload)
            cluster = stack.enter_context(_embedded_cluster(mode.processes))
            target = "embedded LocalCluster"
            origin = f"embedded LocalCluster, {mode.label} ({mode.reason})"
            kwargs = {"address": cluster}
        try:
            new = stack.enter_context(Client(timeout=timeout, set_as_default=False, **kwargs))
        except (OSError, TimeoutError) as err:
            raise ClusterConnectionError(
                f"No Dask scheduler answered at {target} within {timeout:g} s ({err}). Check "
                "that the scheduler is running and reachable from here, or drop --scheduler/"
                "--scheduler-file to use an embedded LocalCluster."
            ) from err
        _ORIGINS[new] = origin
        logger.info("Dask dashboard: %s", new.dashboard_link)
        quiet_workers(new)
        with attached(new), use_codec_pipeline(new):
            yield new


class _DropShutdownCancellation(logging.Filter):
    """Drop the traceback of a scheduler coroutine cancelled because the cluster closes.

    A progress bar's ``feed`` on the scheduler sleeps between updates; when the embedded
    cluster closes right after the bar finished, the sleep is cancelled and distributed logs
    ``CancelledError`` with a traceback at ERROR: noise after a successful operation.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


_SHUTDOWN_FILTER = _DropShutdownCancellation()


@contextmanager
def _embedded_cluster(processes: bool = True) -> Iterator[LocalCluster]:
    """Start the embedded cluster: worker processes, or one worker with a thread per core.

    Threads: one worker with ``n-workers x threads-per-worker`` threads (the same threads
    the processes would have), so the work and its memory stay in this process.
    """
    n_workers = get_option("cluster.n-workers") or min(os.cpu_count() or 1, 8)
    threads = get_option("cluster.threads-per-worker")
    if not processes:
        n_workers, threads = 1, n_workers * threads
    scheduler_log = logging.getLogger("distributed.scheduler")
    if _SHUTDOWN_FILTER not in scheduler_log.filters:
        scheduler_log.addFilter(_SHUTDOWN_FILTER)
    with LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads,
        processes=processes,
        # loopback TCP for threads too: inproc:// would cancel the scheduler's progress feed
        # with a logged traceback when a bar stops, and other processes could not connect
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=get_option("cluster.dashboard-address"),
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster


def configured_scheduler_address() -> str | None:
    """The scheduler named by dask config ``scheduler-address`` or ``DASK_SCHEDULER_ADDRESS``."""
    address = dask.config.get("scheduler-address", None) or os.environ.get("DASK_SCHEDULER_ADDRESS")
    return str(address) if address else None


def is_embedded(client: Client) -> bool:
    """``True`` when *client* talks to a cluster :func:`get_client` started (and will close)."""
    return _ORIGINS.get(client, "").startswith("embedded LocalCluster")


def cluster_threads(client: Client | None) -> int:
    """Worker threads of the cluster behind *client* (at least 1); no client: local cores."""
    if client is None:
        return os.cpu_count() or 1
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return max(1, sum(int(w.get("nthreads", 0)) for w in workers.values()))


def describe_client(client: Client) -> str:
    """One line for reports: workers and threads, where, the dashboard, and how it was chosen.

    E.g. ``distributed: 1 worker(s), 4 thread(s) at tcp://127.0.0.1:… (dashboard …); embedded
    LocalCluster, threads in one process (cluster.processes=auto, local stores: …)``.
    """
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    parts = [
        f"distributed: {len(workers)} worker(s), {threads} thread(s) at {info.get('address')}"
        f" (dashboard {client.dashboard_link})",
        _ORIGINS.get(client, "the client passed in"),
        describe_codec_pipeline(client),
    ]
    # further parts of the engine line are appended here
    return "; ".join(parts)
