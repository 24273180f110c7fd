"""Stream stored objects to a consumer in reused buffers, reading ahead of it.

Scans that touch every byte of a store (deep integrity checks, manifests) are CPU-bound once
the data is in memory, and a fresh buffer per object is expensive in Dask workers: distributed
starts them with ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off glibc's dynamic mmap
threshold, so every megabyte-sized ``bytes`` object is a new ``mmap`` whose pages are faulted
in and zeroed again.  :func:`stream_objects` reads each object into one of a few buffers that
are reused for the whole stream, while the consumer works on the previous ones:

* a plain :class:`zarr.storage.LocalStore`: files are read with ``readinto``, in the consumer's
  thread while reads come from the page cache, by a small shared thread pool ahead of the
  consumer once reads are seen to wait (disks, parallel file systems where opening a file
  costs milliseconds).  A ``LocalStore`` wrapped by the store-operation tracer
  (:class:`~zarr_dask_utils._core.storage.trace.TracingStore`) is read the same way and each
  read is recorded in the tracer (one ``get`` per key, as its ``get`` would), so profiling a
  scan does not change how the scan reads;
* any other store (S3 and other fsspec stores, zip, memory, wrapped stores): ``store.get``
  requests run on zarr's event loop, a bounded window of them in flight.

The consumer sees ``(position, view)`` pairs in key order; ``view`` is a read-only
``memoryview`` (``None`` when the object does not exist) that stays valid only until the next
item is requested.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zarr.abc.store import OffsetByteRequest, Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import _get_loop
from zarr.storage import FsspecStore, LocalStore

from zarr_dask_utils._core.storage.trace import TracingStore

__all__ = ["READER_THREADS", "SLOW_READ", "StreamSettings", "stream_objects"]

_View = memoryview | None
_Got = tuple[bytearray, int] | None
#: Records one read: key (or file path), bytes (0: missing), seconds, wall-clock start.
_Recorder = Callable[[str, int, float, float], None]

#: Reader threads per process for local files read ahead.
READER_THREADS = 4
#: Local reads slower than this (bytes/s) over the first objects of a stream switch it to
#: reading ahead; the page cache delivers 5-20 GB/s.
SLOW_READ = 1e9
_TIMED_READS = 4

_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


@dataclass(frozen=True)
class StreamSettings:
    """How a worker task streams objects, resolved from config on the client.

    Attributes
    ----------
    concurrency
        Requests in flight at most (``io.concurrency``).
    read_ahead
        Stored bytes read ahead of the consumer (``integrity.read-ahead``).
    heap_threshold
        Allocations below this come from the heap while the task runs
        (``integrity.heap-threshold``, see
        :func:`~zarr_dask_utils._core.storage.heap.heap_allocations`).
    """

    concurrency: int = 64
    read_ahead: int = 64 * 2**20
    heap_threshold: int | None = 16 * 2**20

    @classmethod
    def from_config(cls) -> StreamSettings:
        """The settings of ``zarr-dask-utils.*`` dask config."""
        from dask.utils import parse_bytes

        from zarr_dask_utils._core.config import get_option

        heap = get_option("integrity.heap-threshold")
        return cls(
            concurrency=int(get_option("io.concurrency")),
            read_ahead=parse_bytes(str(get_option("integrity.read-ahead"))),
            heap_threshold=None if heap is None else parse_bytes(str(heap)),
        )

    def depth(self, object_bytes: int) -> int:
        """Objects to read ahead when each holds about *object_bytes* (at least 2)."""
        return max(2, min(self.concurrency, self.read_ahead // max(1, object_bytes)))


def _read_file(path: str, buf: bytearray) -> tuple[bytearray, int] | None:
    """Read the whole file *path* into *buf* (grown when too small); ``None``: no such file.

    Plain ``os`` calls on a file descriptor (no file object, no ``fstat`` while *buf* has
    room): open, read until a read returns nothing, close.  Sized from the file when *buf*
    fills; one spare byte tells a file that grew while it was read.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if len(buf) < 2:
            size = os.fstat(fd).st_size
            buf = bytearray(size + size // 4 + 1)
        view = memoryview(buf)
        done = 0
        while True:
            n = os.readv(fd, [view[done:]])
            if not n:
                return buf, done
            done += n
            if done == len(buf):  # full: grow to the file's size (or double), read the rest
                size = os.fstat(fd).st_size
                bigger = bytearray(max(2 * len(buf), size + size // 4 + 1))
                bigger[:done] = buf
                buf, view = bigger, memoryview(bigger)
    finally:
        os.close(fd)


def _timed_read_file(path: str, buf: bytearray) -> tuple[_Got, float, float]:
    """:func:`_read_file`, with how long it took and when it started (for the tracer)."""
    start, t0 = time.time(), time.perf_counter()
    got = _read_file(path, buf)
    return got, time.perf_counter() - t0, start


def _reader_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process's reader threads (created on first use, shared by every stream)."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or os.getpid() != _POOL_PID:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                READER_THREADS, thread_name_prefix="zdu-read"
            )
            _POOL_PID = os.getpid()
        return _POOL


def _local_stream(
    root: Path, keys: Sequence[str], depth: int, record: _Recorder | None = None
) -> Iterator[_View]:
    """Read files in this thread while reads are memory copies; read ahead once they wait.

    Reads from the page cache run at memory speed and a second thread only adds hand-offs and
    cache misses; on disks and parallel file systems (opening a file can cost milliseconds)
    reading ahead overlaps the waits with the consumer's work.  The first objects are read
    in line and timed; below :data:`SLOW_READ` bytes/s the rest is read ahead.  *record*
    (a traced store's) is told about every read, in this thread (where Dask's fine metrics
    attribute it to the running task).
    """
    buf = bytearray(0)
    read_seconds = 0.0
    read_bytes = 0
    base = os.fspath(root)
    paths = [os.path.join(base, key) for key in keys]  # pathlib's `/` costs ~0.2 ms a key
    for i, path in enumerate(paths):
        if i == _TIMED_READS and read_bytes < SLOW_READ * read_seconds:
            by_key = _by_key(base, record)
            rest = paths[i:]
            yield from (
                _read_ahead(rest, depth) if by_key is None else _read_ahead(rest, depth, by_key)
            )
            return
        wall = time.time() if record is not None else 0.0
        start = time.perf_counter()
        got = _read_file(path, buf)
        seconds = time.perf_counter() - start
        if record is not None:
            record(keys[i], 0 if got is None else got[1], seconds, wall)
        if got is None:
            yield None
            continue
        buf, n = got
        read_seconds += seconds
        read_bytes += n
        yield memoryview(buf).toreadonly()[:n]


def _by_key(base: str, record: _Recorder | None) -> _Recorder | None:
    """*record* told the key of a file path under *base* instead of the path."""
    if record is None:
        return None
    cut = len(os.path.join(base, ""))
    return lambda path, n, seconds, start: record(path[cut:], n, seconds, start)


def _read_ahead(
    paths: Sequence[str], depth: int, record: _Recorder | None = None
) -> Iterator[_View]:
    pool = _reader_pool()
    free: list[bytearray] = [bytearray(0) for _ in range(depth)]
    pending: deque[tuple[str, concurrent.futures.Future[tuple[_Got, float, float]]]] = deque()
    try:
        for path in paths:
            pending.append((path, pool.submit(_timed_read_file, path, free.pop())))
            if free:
                continue
            yield from _drain_one(pending, free, record)
        while pending:
            yield from _drain_one(pending, free, record)
    finally:
        futures = [fut for _, fut in pending]
        for fut in futures:
            fut.cancel()
        concurrent.futures.wait(futures)


def _drain_one(
    pending: deque[tuple[str, concurrent.futures.Future[tuple[_Got, float, float]]]],
    free: list[bytearray],
    record: _Recorder | None,
) -> Iterator[_View]:
    path, fut = pending.popleft()
    got, seconds, start = fut.result()
    if record is not None:
        record(path, 0 if got is None else got[1], seconds, start)
    if got is None:
        free.append(bytearray(0))
        yield None
        return
    buf, n = got
    try:
        yield memoryview(buf).toreadonly()[:n]
    finally:
        free.append(buf)


def _store_stream(store: Store, keys: Sequence[str], depth: int) -> Iterator[_View]:
    loop = _get_loop()
    prototype = default_buffer_prototype()
    # a ``bytes=0-`` range saves s3fs the HEAD it sends before a whole-object GET
    whole = OffsetByteRequest(0) if isinstance(store, FsspecStore) else None

    async def get(key: str) -> Any:
        return await store.get(key, prototype=prototype, byte_range=whole)

    pending: deque[concurrent.futures.Future[Any]] = deque()
    it = iter(keys)
    try:
        for key in it:
            pending.append(asyncio.run_coroutine_threadsafe(get(key), loop))
            if len(pending) < depth:
                continue
            buf = pending.popleft().result()
            yield None if buf is None else memoryview(buf.as_numpy_array()).toreadonly()
        while pending:
            buf = pending.popleft().result()
            yield None if buf is None else memoryview(buf.as_numpy_array()).toreadonly()
    finally:
        for fut in pending:
            fut.cancel()
        if pending:  # wait for the cancellations, so no request outlives the stream
            concurrent.futures.wait(pending)


def stream_objects(store: Store, keys: Sequence[str], *, depth: int = 8) -> Iterator[_View]:
    r"""Yield the stored bytes of every key of *keys*, in order, reading ahead.

    Parameters
    ----------
    store
        Any zarr store; a plain ``LocalStore`` (or one traced by ``TracingStore``, each read
        recorded) is read straight from its files.
    keys
        Store keys (full paths inside the store).
    depth
        Objects requested ahead of the consumer (and buffers kept alive).

    Yields
    ------
    memoryview or None
        The object's bytes (valid until the next item is requested), ``None`` if it is not
        stored.

    Examples
    --------
    >>> import zarr
    >>> store = zarr.storage.MemoryStore()
    >>> zarr.create_array(store, shape=(4,), chunks=(2,), dtype="u1", compressors=None)[:] = 65
    >>> [None if v is None else bytes(v) for v in stream_objects(store, ["c/0", "c/9"])]
    [b'AA', None]
    """
    if type(store) is LocalStore:
        return _local_stream(Path(store.root), keys, max(2, depth))
    if type(store) is TracingStore and type(store._store) is LocalStore:
        return _local_stream(Path(store._store.root), keys, max(2, depth), store.record_read)
    return _store_stream(store, keys, max(1, depth))
