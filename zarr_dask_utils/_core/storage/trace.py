"""Store-operation tracing, in this process and on every Dask worker.

While a trace session is active, :meth:`Location.open_store` returns its store wrapped in a
:class:`TracingStore`, which records every operation (kind, key, bytes, seconds, process) into
the session's buffer of the process it runs in, logs it at DEBUG when debug logging is on, and
reports it to Dask's fine performance metrics (``context_meter``) so the dashboard shows store
time and bytes per task prefix.  Workers learn about a session from a ``WorkerPlugin``; the
records they keep are drained to the client with ``client.run`` when the session (or an
embedded cluster) ends.  :class:`~zarr_dask_utils.ZarrDebugger` is the public face.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin
from distributed.metrics import context_meter
from zarr.abc.store import ByteRequest, Store
from zarr.storage import WrapperStore

from zarr_dask_utils._core.pure.trace_report import StoreOp

if TYPE_CHECKING:
    from distributed import Client
    from zarr.core.buffer import Buffer, BufferPrototype

__all__ = [
    "TracePlugin",
    "TracingStore",
    "absorb",
    "attached",
    "claimed",
    "drain",
    "maybe_wrap",
    "plugin_name",
    "store_label",
    "set_debug_logging",
    "start_session",
    "stop_session",
]

logger = logging.getLogger("zarr_dask_utils.trace")


_lock = threading.Lock()
_sessions: dict[str, list[StoreOp]] = {}
_debug_logging = False


def start_session(trace_id: str) -> None:
    """Start recording into *trace_id* in this process (idempotent)."""
    with _lock:
        _sessions.setdefault(trace_id, [])


def stop_session(trace_id: str) -> list[StoreOp]:
    """Stop recording *trace_id* here and return what this process recorded."""
    with _lock:
        return _sessions.pop(trace_id, [])


def drain(trace_id: str) -> list[StoreOp]:
    """Return and forget what this process recorded for *trace_id* so far (keeps recording)."""
    with _lock:
        records = _sessions.get(trace_id, [])
        if trace_id in _sessions:
            _sessions[trace_id] = []
        return records


def set_debug_logging(on: bool) -> None:
    """Log every store operation at DEBUG on ``zarr_dask_utils.trace`` (this process)."""
    global _debug_logging
    _debug_logging = on


def _process_label() -> str:
    try:
        from distributed import get_worker

        return f"worker {get_worker().name}"
    except ValueError:
        return f"client pid {os.getpid()}"


def maybe_wrap(store: Store) -> Store:
    """Wrap *store* in a :class:`TracingStore` when a session or debug logging is active."""
    if (_sessions or _debug_logging) and not isinstance(store, TracingStore):
        return TracingStore(store, process=_process_label())
    return store


def store_label(store: Store) -> str:
    """A short name of *store* for records: its URL where it has one (no credentials)."""
    inner = store
    while isinstance(inner, WrapperStore):
        inner = inner._store
    root = getattr(inner, "root", None)
    if root is not None:  # LocalStore
        return f"file://{root}"
    fs, path = getattr(inner, "fs", None), getattr(inner, "path", None)
    if fs is not None and path is not None:  # FsspecStore
        protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
        return f"{protocol}://{str(path).strip('/')}"
    return type(inner).__name__


def _record(
    op: str,
    key: str,
    nbytes: int,
    seconds: float,
    process: str,
    store: str = "",
    start: float | None = None,
) -> None:
    """Keep one operation in every session here, log it, report it to Dask's fine metrics.

    *start* is the operation's wall-clock start (``time.time()``), default: *seconds* ago.
    """
    if start is None:
        start = time.time() - seconds
    entry = StoreOp(op, key, nbytes, seconds, process, store, start)
    with _lock:
        for records in _sessions.values():
            records.append(entry)
    if _debug_logging:
        logger.debug(
            "op=%s key=%s bytes=%d ms=%.3f process=%r", op, key, nbytes, seconds * 1e3, process
        )
    # not "seconds": Dask subtracts nested "seconds" from the task's thread-cpu/-noncpu time,
    # and requests in flight together would hide the task's own (decode) time
    context_meter.digest_metric(("zdu-store", op), seconds, "store-seconds")
    if nbytes:
        context_meter.digest_metric(("zdu-store", op), nbytes, "bytes")


class TracingStore(WrapperStore[Store]):
    """A zarr store wrapper that records every operation (see module docstring).

    Parameters
    ----------
    store
        The store to trace.
    process
        Label of the process it runs in (``"worker tcp://…"`` or ``"client pid …"``).
    """

    def __init__(self, store: Store, process: str | None = None) -> None:
        super().__init__(store)
        self._process = process or _process_label()
        self._label = store_label(store)

    def _with_store(self, store: Store) -> TracingStore:
        return type(self)(store, self._process)  # the label follows the new store

    def record_read(self, key: str, nbytes: int, seconds: float, start: float) -> None:
        """Record a ``get`` of *key* made around this wrapper (the same record :meth:`get` makes).

        For readers that go to the wrapped store's files directly
        (:mod:`~zarr_dask_utils._core.storage.objectstream` on a ``LocalStore``); a missing
        object is recorded with 0 bytes, as :meth:`get` does.

        Parameters
        ----------
        key
            The key read.
        nbytes
            Bytes read (0: no such object).
        seconds
            How long the read took.
        start
            When it started (``time.time()``).
        """
        _record("get", key, nbytes, seconds, self._process, self._label, start)

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store}

    def __setstate__(self, state: dict[str, Any]) -> None:  # a new process: a new label
        self._store = state["store"]
        self._process = _process_label()
        self._label = store_label(self._store)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Get and record ``get`` (bytes returned; a missing key records 0 bytes)."""
        start = time.perf_counter()
        value = await self._store.get(key, prototype, byte_range)
        size = 0 if value is None else len(value)
        _record("get", key, size, time.perf_counter() - start, self._process, self._label)
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """Get several ranges; one ``get`` record per range (time shared equally)."""
        ranges = list(key_ranges)
        start = time.perf_counter()
        values = await self._store.get_partial_values(prototype, ranges)
        share = (time.perf_counter() - start) / max(len(ranges), 1)
        for (key, _), value in zip(ranges, values, strict=True):
            _record(
                "get", key, 0 if value is None else len(value), share, self._process, self._label
            )
        return values

    async def getsize(self, key: str) -> int:
        """Ask the wrapped store for the size of *key* and record ``getsize`` (0 bytes read).

        Without this, zarr's default ``Store.getsize`` would read the whole object through
        :meth:`get`: tracing would turn every size query into a full read.
        """
        start = time.perf_counter()
        size = await self._store.getsize(key)
        _record("getsize", key, 0, time.perf_counter() - start, self._process, self._label)
        return size

    async def exists(self, key: str) -> bool:
        """Check existence and record ``exists``."""
        start = time.perf_counter()
        found = await self._store.exists(key)
        _record("exists", key, 0, time.perf_counter() - start, self._process, self._label)
        return found

    async def set(self, key: str, value: Buffer) -> None:
        """Set and record ``set`` with the bytes written."""
        start = time.perf_counter()
        await self._store.set(key, value)
        _record("set", key, len(value), time.perf_counter() - start, self._process, self._label)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        """Set unless present; records ``set_if_not_exists``."""
        start = time.perf_counter()
        await self._store.set_if_not_exists(key, value)
        _record(
            "set_if_not_exists",
            key,
            len(value),
            time.perf_counter() - start,
            self._process,
            self._label,
        )

    async def delete(self, key: str) -> None:
        """Delete and record ``delete``."""
        start = time.perf_counter()
        await self._store.delete(key)
        _record("delete", key, 0, time.perf_counter() - start, self._process, self._label)

    async def _list(self, op: str, prefix: str, items: AsyncIterator[str]) -> AsyncIterator[str]:
        start = time.perf_counter()
        count = 0
        async for item in items:
            count += 1
            yield item
        _record(op, prefix, 0, time.perf_counter() - start, self._process, self._label)

    def list(self) -> AsyncIterator[str]:
        """List every key; one ``list`` record when the listing is consumed."""
        return self._list("list", "", self._store.list())

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """List keys under *prefix*; one ``list_prefix`` record."""
        return self._list("list_prefix", prefix, self._store.list_prefix(prefix))

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """List the children of *prefix*; one ``list_dir`` record."""
        return self._list("list_dir", prefix, self._store.list_dir(prefix))


class TracePlugin(WorkerPlugin):
    """Starts a trace session on every worker (present and future) of a cluster."""

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id
        self.name = plugin_name(trace_id)

    def setup(self, worker: Any) -> None:
        """Start recording in the worker's process."""
        with _lock:
            if self.trace_id not in _sessions:  # not the client's own (threads in-process)
                _plugin_sessions.add(self.trace_id)
        start_session(self.trace_id)

    def teardown(self, worker: Any) -> None:
        """Stop recording (records not drained by then are dropped with the session).

        A worker running in the client's process (an embedded cluster on threads) shares its
        sessions: the session the client started stays, only one this plugin started ends.
        """
        with _lock:
            started_here = self.trace_id in _plugin_sessions
            _plugin_sessions.discard(self.trace_id)
        if started_here:
            stop_session(self.trace_id)


#: Sessions a :class:`TracePlugin` started in this process (the others belong to the client).
_plugin_sessions: set[str] = set()


def plugin_name(trace_id: str) -> str:
    """Name of the :class:`TracePlugin` of session *trace_id* on a cluster."""
    return f"zdu-trace-{trace_id}"


def absorb(trace_id: str, records: Iterable[StoreOp]) -> None:
    """Add *records* drained from workers to this process's session *trace_id* (if active)."""
    with _lock:
        if trace_id in _sessions:
            _sessions[trace_id].extend(records)


def _drain_worker(trace_id: str) -> list[StoreOp]:
    return drain(trace_id)


def collect(client: Client, trace_id: str) -> list[StoreOp]:
    """Drain every worker's records of *trace_id* (records stay on the workers until then)."""
    results = client.run(_drain_worker, trace_id)
    return [op for address in sorted(results) for op in results[address]]


_attached: set[tuple[str, str]] = set()


@contextmanager
def claimed(client: Client, trace_id: str) -> Iterator[None]:
    """Leave session *trace_id* on *client*'s workers to the caller for the block.

    :func:`attached` calls inside the block (every operation's ``get_client``) then neither
    register its :class:`TracePlugin` nor drain it: the caller does both, e.g. folded into
    requests it makes anyway (the profiler registers it in its one start request to the
    scheduler and drains it with the workers' memory), and hands the records to
    :func:`absorb`.
    """
    assert client.scheduler is not None  # a connected client (mypy: Optional in stubs)
    where = str(client.scheduler.address)
    with _lock:
        _attached.add((trace_id, where))
    try:
        yield
    finally:
        with _lock:
            _attached.discard((trace_id, where))


@contextmanager
def attached(client: Client) -> Iterator[None]:
    """Trace the workers of *client* for every active session; drain them on exit.

    Nested calls for the same scheduler and session do nothing: the outermost one registers the
    worker plugin and drains the records, so a records buffer is never dropped while in use.
    """
    assert client.scheduler is not None  # a connected client (mypy: Optional in stubs)
    where = str(client.scheduler.address)  # two clients of one scheduler share its plugins
    with _lock:
        mine = [tid for tid in _sessions if (tid, where) not in _attached]
        _attached.update((tid, where) for tid in mine)
    try:
        for trace_id in mine:
            client.register_plugin(TracePlugin(trace_id))
        yield
    finally:
        for trace_id in mine:
            try:
                records = collect(client, trace_id)
                client.unregister_worker_plugin(plugin_name(trace_id))
            finally:
                with _lock:
                    _attached.discard((trace_id, where))
            absorb(trace_id, records)
