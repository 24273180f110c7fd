"""Cluster-wide locks served by the Dask scheduler, with leases and clear timeouts.

:class:`DistributedLock` wraps one ``distributed.Lock`` per name.  Those are *leases*: the
holder's client or worker refreshes the lease every ``lease-timeout / 5``; when the holder dies
(or stalls longer than ``distributed.scheduler.locks.lease-timeout``, 30 s by default) the
scheduler gives the lock to the next waiter.  Several names are acquired one by one in sorted
order, which cannot deadlock; ``distributed.MultiLock`` is not used because it has no lease (a
dead holder would block everyone for ever).

Because a stalled holder can lose its lease while it still runs, the writes this package
protects with locks are also *fenced* (:mod:`zarr_dask_utils.concurrent.fence`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from dask.utils import parse_timedelta
from distributed import Client, Lock
from distributed.core import Status
from distributed.worker import Worker, get_worker

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import ClusterConnectionError, LockTimeoutError

__all__ = ["DistributedLock", "scheduler_binding"]

logger = logging.getLogger(__name__)

# distributed's Client.current and Lock are unannotated: calls to them carry
# `type: ignore[no-untyped-call]` (mypy reports calls to untyped functions).


def scheduler_binding(client: Client | None = None) -> tuple[Any, Any]:
    """Return ``(scheduler_rpc, loop)`` for locks made in this process.

    In order: the given client; the worker running the current task (also inside zarr's
    event-loop thread and ``asyncio.to_thread``, which copy the task's context); the only running
    worker of this process; the current client.

    Raises
    ------
    ClusterConnectionError
        When no client or worker is reachable from this process.
    """
    if client is not None:
        return client.scheduler, client.loop
    try:
        worker = get_worker()
        return worker.scheduler, worker.loop
    except ValueError:
        pass
    # a closed in-process cluster's worker may linger in ``_instances`` until collected
    workers = [w for w in Worker._instances if w.status in (Status.running, Status.paused)]
    if len(workers) == 1:
        return workers[0].scheduler, workers[0].loop
    try:
        current = Client.current(allow_global=True)  # type: ignore[no-untyped-call]
        return current.scheduler, current.loop
    except ValueError as err:
        raise ClusterConnectionError(
            "A DistributedLock needs a Dask cluster: no distributed Client or worker was found "
            "in this process. Start one (distributed.Client()), pass client=..., or call from a "
            "task running on a worker."
        ) from err


def _names(name: str | Iterable[str]) -> tuple[str, ...]:
    names = (name,) if isinstance(name, str) else tuple(name)
    return tuple(sorted(set(names)))


class DistributedLock:
    """A lock (or a set of locks) shared by every process of a Dask cluster.

    Parameters
    ----------
    name
        One lock name, or several: they are acquired in sorted order (deadlock-free) and
        released in reverse order.  This package names storage-key locks
        ``zdu-lock/<store url>/<storage key>`` (no credentials).
    client
        The client whose scheduler serves the lock; default: the worker running this task,
        else the current client.
    timeout
        How long :meth:`acquire` waits in total (``"30s"``, seconds, or ``None`` for
        ``zarr-dask-utils.concurrent.lock-timeout``).

    Notes
    -----
    If the holder's worker or client dies, the lease expires after
    ``distributed.scheduler.locks.lease-timeout`` and the next waiter gets the lock.  A live
    holder that stalls (no event-loop turn for longer than the lease) also loses it: writes under
    these locks are therefore fenced, see :func:`~zarr_dask_utils.synchronized_write`.

    Examples
    --------
    >>> with DistributedLock("my-resource", timeout="10s"):  # doctest: +SKIP
    ...     ...  # only one process of the cluster runs this at a time
    """

    def __init__(
        self,
        name: str | Iterable[str],
        *,
        client: Client | None = None,
        timeout: str | float | None = None,
    ) -> None:
        self.names = _names(name)
        self.client = client
        self.timeout = parse_timedelta(get_option("concurrent.lock-timeout", timeout), "s")
        self._held: list[Lock] = []

    def __repr__(self) -> str:
        shown = self.names[0] if len(self.names) == 1 else f"{len(self.names)} names"
        return f"DistributedLock({shown!r}, held={self.locked()})"

    def locked(self) -> bool:
        """Whether this object currently holds its locks."""
        return bool(self._held)

    def acquire(self, timeout: str | float | None = None) -> bool:
        """Acquire every lock, in sorted order.

        Parameters
        ----------
        timeout
            Total wait, overriding the one given at construction.

        Returns
        -------
        bool
            Always ``True`` (a timeout raises).

        Raises
        ------
        LockTimeoutError
            A lock was not acquired in time; the ones already taken are released.
        """
        if self._held:
            raise RuntimeError(f"{self!r} is already held by this object; release it first.")
        scheduler, loop = scheduler_binding(self.client)
        limit = self.timeout if timeout is None else parse_timedelta(timeout, "s")
        deadline = None if limit is None else time.monotonic() + limit
        for name in self.names:
            lock = Lock(name, scheduler_rpc=scheduler, loop=loop)  # type: ignore[no-untyped-call]
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not lock.acquire(timeout=left):  # type: ignore[no-untyped-call]
                _stop_refresh(lock)
                self.release()
                raise LockTimeoutError(self._timeout_message(name, limit, scheduler, loop))
            self._held.append(lock)
        return True

    def release(self) -> None:
        """Release every lock this object holds (reverse order); a no-op when none are held."""
        while self._held:
            lock = self._held.pop()
            try:
                lock.release()  # type: ignore[no-untyped-call]
            except Exception:  # the lease may already have expired: nothing left to free
                logger.warning("Releasing %s failed; its lease expires on its own", lock.name)
            finally:
                _stop_refresh(lock)

    def __enter__(self) -> DistributedLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _timeout_message(self, name: str, limit: float | None, scheduler: Any, loop: Any) -> str:
        holder = "held by another process"
        with contextlib.suppress(Exception):
            probe = Lock(name, scheduler_rpc=scheduler, loop=loop)  # type: ignore[no-untyped-call]
            held = probe.sync(scheduler.semaphore_value, name=name)  # type: ignore[no-untyped-call]
            _stop_refresh(probe)
            holder = f"held by another process ({held} active lease(s) on the scheduler)"
        return (
            f"Timed out after {limit} s waiting for the cluster lock {name!r}, {holder}. "
            "Another writer is still working on this storage key, or stalled. Retry later, "
            "raise the timeout (timeout=... or zarr-dask-utils.concurrent.lock-timeout), or "
            "check the dashboard for a stuck task; a dead holder's lease expires after "
            "distributed.scheduler.locks.lease-timeout."
        )


def _stop_refresh(lock: Lock) -> None:
    callback = getattr(lock, "refresh_callback", None)
    if callback is not None:
        lock.loop.add_callback(callback.stop)
