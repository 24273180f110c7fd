"""SafeZarrStore: a zarr 3 store wrapper for concurrent writers (threads and processes).

What the wrapper sees is ``get(key)`` and ``set(key)``, not the read-modify-write zarr does for
a partial chunk (read the old chunk or shard, merge, encode, ``set``).  So it gives two levels:

Always
    thread-safe; every ``set``/``delete`` of a key is atomic for readers (the backend's own
    guarantee, checked: ``LocalStore`` writes a temporary file and renames it, an object-store
    ``PUT`` replaces the whole object, ``MemoryStore`` swaps one dict entry) and serialised
    per key: a threading lock per key in this process, plus a cluster lock per key
    (:class:`DistributedLock`) when a Dask client or worker is reachable.

Inside ``with store.writing(keys):`` (what :func:`synchronized_write` uses)
    the read-modify-write itself is protected: the keys are locked up front in sorted order
    (deadlock-free) and held until the block ends, every read of a locked key records its
    generation token and the write is fenced on it (:class:`~.fence.Fence`), so a partial
    write never loses another writer's update.  ``writing()`` without keys locks each data key
    lazily on its first read; use it for writes that touch one storage key, because
    several keys locked lazily by several processes can wait on each other until the lock
    timeout raises :class:`LockTimeoutError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from dask.utils import parse_timedelta
from distributed import Client
from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import WrapperStore

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import ClusterConnectionError, LockTimeoutError
from zarr_dask_utils._core.storage.locations import resolve_location
from zarr_dask_utils.concurrent.fence import Fence, innermost_store
from zarr_dask_utils.concurrent.lock import DistributedLock, scheduler_binding
from zarr_dask_utils.concurrent.regions import lock_names

__all__ = ["SafeZarrStore"]

_METADATA = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")


async def _in_thread(fn: Any, *args: Any) -> Any:
    """Run a blocking lock call in a thread of its own (never the loop's shared executor).

    Waiting for a lock in ``asyncio.to_thread`` would park executor threads that the lock
    holder needs for its own I/O (``LocalStore`` reads and writes through that executor): with
    more waiters than executor threads, nobody progresses.  The task's context is copied, so
    ``distributed.get_worker()`` still works in the thread.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def deliver(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def run() -> None:
        try:
            outcome = (True, ctx.run(fn, *args))
        except BaseException as err:
            outcome = (False, err)
        with contextlib.suppress(RuntimeError):  # the loop closed while we waited
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=run, name="zdu-lock-wait", daemon=True).start()
    return await future


def _is_data_key(key: str) -> bool:
    return not key.rsplit("/", 1)[-1].startswith(_METADATA)


@dataclass
class _Session:
    owner: SafeZarrStore
    lazy: bool
    held: set[str] = field(default_factory=set)
    tokens: dict[str, str | None] = field(default_factory=dict)
    locks: list[tuple[list[threading.Lock], DistributedLock | None]] = field(default_factory=list)
    by_key: dict[str, tuple[list[threading.Lock], DistributedLock | None]] = field(
        default_factory=dict
    )


_SESSION: ContextVar[_Session | None] = ContextVar("zdu_safe_store_session", default=None)

# Per-key threading locks shared by every SafeZarrStore of this process on the same store, so
# that two wrappers of one store (e.g. one per synchronized_write call) exclude each other too.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class SafeZarrStore(WrapperStore[Store]):
    """Wrap a zarr store so concurrent writers in threads and processes stay consistent.

    Parameters
    ----------
    store
        The zarr 3 store to protect (``LocalStore``, ``FsspecStore``, ``MemoryStore``, …).
    client
        Client whose scheduler serves the per-key cluster locks; default: the worker running the
        current task, else the current client.
    timeout
        How long to wait for a key's lock (``None``: ``zarr-dask-utils.concurrent.lock-timeout``).
    cluster
        ``True``: always take cluster locks (fail without a cluster); ``False``: only this
        process's threading locks; ``None`` (default): cluster locks when a client or worker is
        reachable and the store is shared between processes (not in memory).

    Examples
    --------
    >>> import numpy as np, zarr
    >>> store = SafeZarrStore(zarr.storage.MemoryStore(), cluster=False)
    >>> a = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="i4", fill_value=0)
    >>> with store.writing(["c/0"]):
    ...     a[0:1] = 7
    >>> a[:].tolist()
    [7, 0, 0, 0]
    """

    def __init__(
        self,
        store: Store,
        *,
        client: Client | None = None,
        timeout: str | float | None = None,
        cluster: bool | None = None,
    ) -> None:
        super().__init__(store)
        self._client = client
        self._timeout = timeout
        self._cluster = cluster
        inner = innermost_store(store)  # lock names follow the real storage, not the wrappers
        location = resolve_location(inner, read_only=inner.read_only)
        self._shareable = location.shareable
        # one name per storage location, whatever opened it (path, file://, symlink, class)
        self._url = location.canonical.url if self._shareable else location.display
        self._fence = Fence(store, where=self._url)
        # in-memory stores are private to one object: keep their lock names apart
        self._lock_scope = self._url if self._shareable else f"{self._url}@{id(inner):x}"

    # --- construction, pickling -----------------------------------------------------------
    def _with_store(self, store: Store) -> SafeZarrStore:
        return type(self)(store, client=self._client, timeout=self._timeout, cluster=self._cluster)

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store, "timeout": self._timeout, "cluster": self._cluster}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["store"], timeout=state["timeout"], cluster=state["cluster"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"SafeZarrStore({self._store!r})"

    def __str__(self) -> str:
        return f"safe-{self._store}"

    @property
    def url(self) -> str:
        """Canonical URL of the wrapped store, used in lock names (no credentials).

        The same for every way of opening one storage location: a path, ``file://``, a
        symlink, a ``LocalStore`` or an fsspec ``file`` store (see ``Location.canonical``).
        """
        return self._url

    # --- locks ----------------------------------------------------------------------------
    def _thread_lock(self, key: str) -> threading.Lock:
        name = f"{self._lock_scope}/{key}"
        with _THREAD_LOCKS_GUARD:
            lock = _THREAD_LOCKS.get(name)
            if lock is None:
                lock = _THREAD_LOCKS[name] = threading.Lock()
            return lock

    def _wait(self) -> float | None:
        timeout: str | float | None = get_option("concurrent.lock-timeout", self._timeout)
        return parse_timedelta(timeout, "s")

    def _cluster_lock(self, keys: Iterable[str]) -> DistributedLock | None:
        if self._cluster is False or (self._cluster is None and not self._shareable):
            return None
        try:
            scheduler_binding(self._client)
        except ClusterConnectionError:
            if self._cluster:
                raise
            return None
        return DistributedLock(
            lock_names(self._url, sorted(keys)), client=self._client, timeout=self._timeout
        )

    def _lock_keys(
        self, keys: Iterable[str]
    ) -> tuple[list[threading.Lock], DistributedLock | None]:
        """Blocking: thread locks, then cluster locks, all in sorted key order."""
        ordered = sorted(set(keys))
        wait = self._wait()
        taken: list[threading.Lock] = []
        try:
            for key in ordered:
                lock = self._thread_lock(key)
                if not lock.acquire(timeout=-1 if wait is None else wait):
                    raise LockTimeoutError(
                        f"Timed out after {wait} s waiting for the in-process lock of "
                        f"{self._url}/{key}: another thread of this process holds it. Retry, "
                        "or raise zarr-dask-utils.concurrent.lock-timeout."
                    )
                taken.append(lock)
            cluster = self._cluster_lock(ordered)
            if cluster is not None:
                cluster.acquire()
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise
        return taken, cluster

    @staticmethod
    def _unlock(held: tuple[list[threading.Lock], DistributedLock | None]) -> None:
        taken, cluster = held
        try:
            if cluster is not None:
                cluster.release()
        finally:
            for lock in reversed(taken):
                lock.release()

    @contextlib.asynccontextmanager
    async def _guard(self, key: str) -> AsyncIterator[None]:
        lock = self._thread_lock(key)
        if self._cluster_lock([key]) is None and lock.acquire(blocking=False):
            held: tuple[list[threading.Lock], DistributedLock | None] = ([lock], None)
        else:  # wait (or take the cluster lock) in a thread of its own
            held = await _in_thread(self._lock_keys, [key])
        try:
            yield
        finally:
            if held[1] is None:
                self._unlock(held)  # releasing a threading lock never blocks
            else:
                await _in_thread(self._unlock, held)

    @contextlib.contextmanager
    def writing(self, keys: Iterable[str] | None = None) -> Iterator[None]:
        """Protect the read-modify-writes zarr does in this block (this thread/task only).

        Parameters
        ----------
        keys
            Storage keys to lock up front, in sorted order, and hold until the block ends.
            ``None``: lock each data key on its first read (fine for writes touching one key).

        Raises
        ------
        LockTimeoutError
            A key's lock was not acquired within the timeout.
        RuntimeError
            When nested in another ``writing()`` block of the same context.
        """
        if _SESSION.get() is not None:
            raise RuntimeError("SafeZarrStore.writing() blocks cannot be nested.")
        session = _Session(self, lazy=keys is None)
        if keys is not None:
            held = self._lock_keys(keys)
            session.locks.append(held)
            session.held.update(keys)
        token = _SESSION.set(session)
        try:
            yield
        finally:
            _SESSION.reset(token)
            while session.locks:
                self._unlock(session.locks.pop())

    def _session(self, key: str) -> _Session | None:
        session = _SESSION.get()
        if session is None or session.owner is not self or not _is_data_key(key):
            return None
        if session.lazy or key in session.held:
            return session
        return None

    async def _release_lazy(self, session: _Session, key: str) -> None:
        if session.lazy and key in session.by_key:
            session.held.discard(key)
            held = session.by_key.pop(key)
            session.locks.remove(held)
            await _in_thread(self._unlock, held)

    # --- store API --------------------------------------------------------------------------
    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Read *key*; inside :meth:`writing`, lock it and record its generation token."""
        session = self._session(key)
        if session is None or byte_range is not None:
            return await self._store.get(key, prototype, byte_range)
        if key not in session.held:
            held = await _in_thread(self._lock_keys, [key])
            session.locks.append(held)
            session.by_key[key] = held
            session.held.add(key)
        # token first: a write between the two makes the fence fail (safe), never pass wrongly
        session.tokens[key] = await self._fence.token(key)
        return await self._store.get(key, prototype, byte_range)

    def _mode(self, key: str) -> tuple[str, _Session | None]:
        """How to write *key*: ``"fenced"`` (held, read), ``"direct"`` or ``"guarded"``."""
        session = _SESSION.get()
        if session is None or session.owner is not self or not _is_data_key(key):
            return "guarded", None
        if key in session.held:
            return ("fenced" if key in session.tokens else "direct"), session
        # planned session: keys not declared are written whole by this writer
        return ("guarded" if session.lazy else "direct"), session

    async def set(self, key: str, value: Buffer) -> None:
        """Write *key* atomically, serialised per key; fenced inside :meth:`writing`."""
        self._check_writable()
        mode, session = self._mode(key)
        if mode == "guarded":
            async with self._guard(key):
                await self._store.set(key, value)
        elif mode == "direct":
            await self._store.set(key, value)
        else:
            assert session is not None
            await self._fence.set(key, value, session.tokens.pop(key))
        if session is not None:
            await self._release_lazy(session, key)

    async def delete(self, key: str) -> None:
        """Delete *key*, serialised per key; fenced inside :meth:`writing`."""
        self._check_writable()
        mode, session = self._mode(key)
        if mode == "guarded":
            async with self._guard(key):
                await self._store.delete(key)
        elif mode == "direct":
            await self._store.delete(key)
        else:
            assert session is not None
            await self._fence.delete(key, session.tokens.pop(key))
        if session is not None:
            await self._release_lazy(session, key)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        """Write *key* unless it exists (under the key's lock)."""
        self._check_writable()
        async with self._guard(key):
            await self._store.set_if_not_exists(key, value)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        await asyncio.gather(*(self.set(k, v) for k, v in values))

    # --- synchronous API (zarr's SupportsGetSync/SetSync/DeleteSync), via the async paths ---
    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """Synchronous :meth:`get` (never call it from inside zarr's event loop)."""
        return sync(self.get(key, prototype or default_buffer_prototype(), byte_range))

    def set_sync(self, key: str, value: Buffer) -> None:
        """Synchronous :meth:`set`."""
        sync(self.set(key, value))

    def delete_sync(self, key: str) -> None:
        """Synchronous :meth:`delete`."""
        sync(self.delete(key))
