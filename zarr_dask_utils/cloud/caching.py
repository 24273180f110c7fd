"""``smart_caching``: a zarr 3 store wrapper caching whole objects in memory and on disk.

Reads of whole objects (chunks, shards, metadata documents) are kept in a byte-bounded LRU in
memory and, optionally, in a byte-bounded folder on local disk that survives restarts.  Writes
and deletes through the wrapper invalidate the keys they touch.  Byte-range reads are served
from a cached whole object when there is one, and go to the wrapped store otherwise (they are
not cached: zarr's sharding reads an index and inner chunks by range).

**One cache per process.**  A ``CachingStore`` sent to Dask workers is pickled *without* its
cache; each worker process keeps its own, shared by every task on that worker that uses a copy
of the same store (found by ``cache_id``).  So a chunk read twice on one worker is fetched once;
a chunk read on two workers is fetched twice.  A disk tier on a worker lives in
``<disk_cache>/workers/<worker name>``: one folder per worker, each with the full bound, kept
across worker restarts when names are stable (``LocalCluster`` names them 0, 1, …).
Invalidation is per process too: a write through one process does not reach the caches of
others, so use the cache for data that is read, not changed, during a computation — or set a
``ttl`` when something else may change the source.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from pathlib import Path
from typing import Any
from uuid import uuid4

from dask.utils import format_bytes, parse_bytes, parse_timedelta
from distributed import Client
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import InvalidOptionError, ZarrDaskUtilsError
from zarr_dask_utils._core.storage.locations import StoreLike, open_store, resolve_location
from zarr_dask_utils.cloud.cache_disk import DiskTier, disk_tier
from zarr_dask_utils.cloud.cache_report import CacheStats
from zarr_dask_utils.cloud.cache_state import CacheState, cache_state, snapshot, worker_snapshot
from zarr_dask_utils.cloud.cache_tiers import Entry, MemoryTier

__all__ = ["CacheStats", "CachingStore", "smart_caching"]


def _cut(data: bytes, byte_range: ByteRequest | None) -> memoryview:
    """The part of *data* a zarr ``ByteRequest`` asks for (as zarr's own stores cut it)."""
    view = memoryview(data)
    if byte_range is None:
        return view
    if isinstance(byte_range, RangeByteRequest):
        return view[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return view[byte_range.offset :]
    return view[max(len(data) - byte_range.suffix, 0) :]


def _worker_name() -> str | None:
    """Return this process's Dask worker name (file-name safe), or ``None`` outside one.

    The task's worker when called from one; else the worker of this process when it is the
    only one (a worker process unpickling a task).  A process running several workers in
    threads (or none) gets ``None``: it is one process, with one cache.
    """
    from distributed import Worker, get_worker

    try:
        name = str(get_worker().name)
    except ValueError:
        workers = list(Worker._instances)
        if len(workers) != 1:
            return None
        name = str(workers[0].name)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "worker"


class CachingStore(WrapperStore[Store]):
    """A zarr store that caches whole-object reads of the store it wraps.

    Use :func:`smart_caching` to build one from a path or URL.  All parameters after *store*
    are also what a copy sent to another process carries; the cached data itself stays in
    the process that read it (see the module notes).

    Parameters
    ----------
    store
        The zarr 3 store to read through.
    cache_size
        Bound of the memory tier in bytes (``int`` or ``"256MiB"``); ``0`` turns it off.
    disk_cache
        Folder of a disk tier (``None``: no disk tier).
    disk_cache_size
        Bound of the disk tier (``None``: ``zarr-dask-utils.cloud.disk-cache-size``).
    ttl
        How long an entry stays valid (seconds or ``"10 minutes"``; ``None``: until evicted
        or invalidated).  Counted from when it was fetched from *store*.
    clock
        Current time in seconds (default ``time.time``); pass your own to control expiry in
        tests.  Must be picklable to send the store to workers.
    cache_id
        Name of the cache in each process; copies share it.  Default: a new random id.

    Examples
    --------
    >>> import zarr
    >>> inner = zarr.storage.MemoryStore()
    >>> zarr.create_array(inner, shape=(4,), chunks=(2,), dtype="i1", fill_value=0)[:] = 1
    >>> store = CachingStore(inner, cache_size="1MiB")
    >>> a = zarr.open_array(store, mode="r")
    >>> _ = a[:]
    >>> misses = store.stats().misses
    >>> _ = a[:]  # the second read: both chunks from memory
    >>> (store.stats().misses - misses, store.stats().hits)
    (0, 2)
    """

    def __init__(
        self,
        store: Store,
        *,
        cache_size: int | str = "1GiB",
        disk_cache: str | os.PathLike[str] | None = None,
        disk_cache_size: int | str | None = None,
        ttl: float | str | None = None,
        clock: Callable[[], float] | None = None,
        cache_id: str | None = None,
    ) -> None:
        super().__init__(store)
        self._cache_size = _size("cache_size", cache_size)
        if disk_cache is None and disk_cache_size is not None:
            raise InvalidOptionError(
                "disk_cache_size was given without disk_cache, so it would be ignored. Pass "
                "disk_cache='/path/to/folder' as well, or drop disk_cache_size."
            )
        self._disk_cache = None if disk_cache is None else os.fspath(disk_cache)
        self._disk_cache_size = (
            None
            if disk_cache is None
            else _size("disk_cache_size", get_option("cloud.disk-cache-size", disk_cache_size))
        )
        self._ttl = None if ttl is None else parse_timedelta(ttl, "s")
        if self._ttl is not None and self._ttl <= 0:
            raise InvalidOptionError(
                f"ttl must be a positive duration (e.g. 600 or '10 minutes'), got {ttl!r}."
            )
        self._clock = clock if clock is not None else time.time
        self._cache_id = cache_id or uuid4().hex
        self._state = cache_state(self._cache_id, self._make_state)

    # --- the per-process cache ---------------------------------------------------------------
    def _make_state(self) -> CacheState:
        disk: DiskTier | None = None
        if self._disk_cache is not None:
            assert self._disk_cache_size is not None
            root = Path(self._disk_cache)
            worker = _worker_name()
            if worker is not None:
                root = root / "workers" / worker
            disk = disk_tier(root, self._disk_cache_size)
        memory = MemoryTier(self._cache_size, ttl=self._ttl, clock=self._clock)
        return CacheState(memory, disk, self._namespace(), self._clock)

    def _namespace(self) -> str:
        """Where the data comes from, the same after a restart (names disk-tier entries)."""
        inner = self._store
        while isinstance(inner, WrapperStore):  # tracing and other wrappers: name the storage
            inner = inner._store
        try:
            location = resolve_location(inner, read_only=True)
        except ZarrDaskUtilsError:  # a store zarr-dask-utils cannot reopen: private, too
            return f"{type(inner).__name__}@{self._cache_id}"
        if location.shareable and location.kind != "object":
            return location.canonical.url
        if location.shareable and location.kind == "object":
            return location.display
        return f"{location.display}@{self._cache_id}"  # in memory: private to this cache

    def _settings(self) -> dict[str, Any]:
        """Everything but the wrapped store that a copy (or a pickle) carries."""
        return {
            "cache_size": self._cache_size,
            "disk_cache": self._disk_cache,
            "disk_cache_size": self._disk_cache_size,
            "ttl": self._ttl,
            "clock": self._clock,
            "cache_id": self._cache_id,
        }

    def _with_store(self, store: Store) -> CachingStore:
        return type(self)(store, **self._settings())

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store, **self._settings()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        store = state.pop("store")
        self.__init__(store, **state)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"CachingStore({self._store!r}, cache_size={format_bytes(self._cache_size)})"

    def __str__(self) -> str:
        return f"cached-{self._store}"

    @property
    def cache_id(self) -> str:
        """Name of this store's cache in every process (copies share it)."""
        return self._cache_id

    # --- statistics ------------------------------------------------------------------------
    def stats(self) -> CacheStats:
        """Counters of this process's cache for this store (hits, misses, evictions, bytes)."""
        return snapshot(self._state, resolve_location(self._store).display, self._ttl)

    def worker_stats(self, client: Client | None = None) -> dict[str, CacheStats]:
        """Counters of each Dask worker's cache for this store (workers that used it).

        Parameters
        ----------
        client
            The client of the cluster (default: the current client).

        Returns
        -------
        dict
            Worker address → :class:`CacheStats`.
        """
        if client is None:
            client = Client.current(allow_global=True)  # type: ignore[no-untyped-call]
        display = resolve_location(self._store).display
        found = client.run(worker_snapshot, self._cache_id, display, self._ttl)
        return {address: stats for address, stats in found.items() if stats is not None}

    def clear_cache(self) -> None:
        """Empty this process's cache for this store (both tiers); the store is untouched."""
        self._state.invalidate_prefix("")

    # --- reads ------------------------------------------------------------------------------
    async def _cached(self, key: str) -> tuple[Entry, str] | None:
        state = self._state
        entry = state.memory.get(key)
        if entry is not None:
            return entry, "hit"
        if state.disk is None:
            return None
        # a ticket, as for a fetch: a write through the store while the disk tier is read must
        # not let the (then stale) disk entry be promoted into memory afterwards
        ticket = state.begin_fetch()
        try:
            entry = await asyncio.to_thread(
                state.disk.get, state.namespace, key, self._clock(), self._ttl
            )
            if entry is None:
                return None
            state.keep(key, entry, ticket)
            return entry, "disk_hit"
        finally:
            state.end_fetch()

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Read *key* (or a byte range of it) from the cache, else from the wrapped store."""
        found = await self._cached(key)
        if found is not None:
            data = found[0].data
            if data is None:  # known to be absent
                self._state.count(found[1], 0)
                return None
            part = _cut(data, byte_range)
            self._state.count(found[1], len(part))
            return prototype.buffer.from_bytes(part)
        if byte_range is not None:  # partial reads are passed on, not cached
            value = await self._store.get(key, prototype, byte_range)
            self._state.count("miss", len(value) if value is not None else 0)
            return value
        return await self._fetch(key, prototype)

    async def _fetch(self, key: str, prototype: BufferPrototype) -> Buffer | None:
        state = self._state
        ticket = state.begin_fetch()
        try:
            value = await self._store.get(key, prototype)
            state.count("miss", len(value) if value is not None else 0)
            entry = Entry(None if value is None else value.to_bytes(), self._clock())
            if state.keep(key, entry, ticket) and state.disk is not None and value is not None:
                disk = state.disk
                await asyncio.to_thread(
                    disk.put, state.namespace, key, entry, lambda: state.still_valid(key, ticket)
                )
            return value
        finally:
            state.end_fetch()

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """Read several keys or ranges, each through :meth:`get`."""
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    # --- writes: each invalidates what it touched --------------------------------------------
    async def set(self, key: str, value: Buffer) -> None:
        """Write *key* to the wrapped store and drop it from the cache."""
        self._check_writable()
        try:
            await self._store.set(key, value)
        finally:
            self._state.invalidate(key)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        """Write *key* unless it exists; drop it from the cache."""
        try:
            await self._store.set_if_not_exists(key, value)
        finally:
            self._state.invalidate(key)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        await asyncio.gather(*(self.set(k, v) for k, v in values))

    async def delete(self, key: str) -> None:
        """Delete *key* from the wrapped store and the cache."""
        self._check_writable()
        try:
            await self._store.delete(key)
        finally:
            self._state.invalidate(key)

    async def delete_dir(self, prefix: str) -> None:
        """Delete every key under *prefix* in the wrapped store and the cache."""
        try:
            await self._store.delete_dir(prefix)
        finally:
            self._state.invalidate_prefix(prefix.rstrip("/") + "/" if prefix else "")

    async def clear(self) -> None:
        """Delete everything in the wrapped store and the cache."""
        try:
            await self._store.clear()
        finally:
            self._state.invalidate_prefix("")


def _size(name: str, value: int | str) -> int:
    try:
        size = parse_bytes(value) if isinstance(value, str) else int(value)
    except (ValueError, TypeError) as err:
        raise InvalidOptionError(
            f"{name} must be a number of bytes or a size such as '512MiB', got {value!r}."
        ) from err
    if size < 0:
        raise InvalidOptionError(f"{name} must not be negative, got {value!r}.")
    return size


def smart_caching(
    store: StoreLike,
    *,
    cache_size: int | str = "1GiB",
    disk_cache: str | os.PathLike[str] | None = None,
    disk_cache_size: int | str | None = None,
    ttl: float | str | None = None,
    storage_options: dict[str, Any] | None = None,
    read_only: bool | None = None,
) -> CachingStore:
    """Wrap *store* in a byte-bounded read cache (memory, optionally plus local disk).

    Parameters
    ----------
    store
        A path, URL (``s3://bucket/data.zarr``), zarr ``Store``, or an ``Array``/``Group``
        (whose store is cached at its root).
    cache_size
        Bound of the in-memory LRU (``int`` bytes or ``"512MiB"``); ``0``: disk tier only.
    disk_cache
        A local folder for a second, larger tier that survives restarts (``None``: none).
    disk_cache_size
        Bound of the disk tier (``None``: ``zarr-dask-utils.cloud.disk-cache-size``, 10 GiB).
    ttl
        How long a cached object stays valid (``600`` or ``"10 minutes"``); ``None``: until
        evicted or invalidated by a write through this store.
    storage_options
        fsspec options for URLs (credentials, ``endpoint_url``).
    read_only
        Open a path/URL writable (``False``) or not; default: read-only for paths and URLs,
        the given store's own mode for store objects.

    Returns
    -------
    CachingStore
        Pass it to ``zarr.open_array``/``open_group``, ``dask.array.from_zarr`` or to any
        zarr-dask-utils operation; ``.stats()`` tells what the cache did in this process,
        ``.worker_stats(client)`` on each Dask worker (each worker keeps its own cache).

    Raises
    ------
    InvalidOptionError
        A size or duration is invalid, or an option would be ignored.

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import smart_caching
    >>> src = zarr.storage.MemoryStore()
    >>> zarr.create_array(src, shape=(6,), chunks=(3,), dtype="i2", fill_value=0)[:] = 5
    >>> store = smart_caching(src, cache_size="64MiB")
    >>> a = zarr.open_array(store, mode="r")
    >>> int(a[:].sum()), int(a[:].sum())
    (30, 30)
    >>> store.stats().hits > 0
    True
    """
    if isinstance(store, CachingStore):
        raise InvalidOptionError(
            f"{store!r} is already a CachingStore. Pass the store it wraps, or use it as is."
        )
    if isinstance(store, Store) and read_only is None:
        read_only = store.read_only
    inner = open_store(store, storage_options=storage_options, read_only=read_only is not False)
    if read_only and not inner.read_only:
        inner = inner.with_read_only(True)
    return CachingStore(
        inner,
        cache_size=cache_size,
        disk_cache=disk_cache,
        disk_cache_size=disk_cache_size,
        ttl=ttl,
    )
