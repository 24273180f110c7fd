"""Worker tasks that move objects: many requests in flight, bounded bytes, records as they land.

Each task copies its batch with zarr's async store API on zarr's event loop (the
``zarr-async`` engine): at most ``concurrency`` requests in flight and at most
``inflight_bytes`` in memory; objects above ``part_bytes`` going to a local folder move in
ranged GETs (:mod:`~zarr_dask_utils.cloud.transfer_ranges`).  The bytes read from the source
must have the listed size and are hashed once (in a thread when large: hashlib releases the
GIL); with ``verify`` the target copy is read back and compared with them byte for byte (no
second hash).  Every ``flush_every`` verified
objects a record ``.zdu-download/done/<task>-<n>.json`` (key → size, hash, source version) is
written to the target, so a run killed at any moment leaves records only for objects that
landed whole, and a rerun skips exactly those.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from zarr.abc.store import OffsetByteRequest, Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore

from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.storeio import concurrent_map, storage_errors
from zarr_dask_utils.cloud.transfer_plan import MARKER_PREFIX
from zarr_dask_utils.cloud.transfer_progress import emit_progress
from zarr_dask_utils.cloud.transfer_ranges import buffer_view, copy_ranged, supports_ranged

__all__ = ["CopySettings", "copy_documents_task", "copy_task", "merge_results"]

#: Objects at least this large are hashed and compared in a thread (off zarr's event loop).
_THREAD_HASH = 2**20
#: Keys a task reports as not copied (each a finding of the report).
_PROBLEM_LISTS = ("vanished", "resized", "mismatched")
#: One object to copy: key (relative), listed size, source version.
Item = tuple[str, int, str | None]


@dataclass(frozen=True, slots=True)
class CopySettings:
    """How a copy task moves its objects (resolved on the client, sent to workers).

    Attributes
    ----------
    concurrency
        Objects in flight at most per task.
    inflight_bytes
        Bytes of objects in flight at most per task (an object larger than this moves alone).
    verify
        Read every target copy back and compare size and hash.
    algorithm
        hashlib algorithm of the records (as the manifests').
    flush_every
        Verified objects per record written to the target.
    part_bytes
        Objects larger than this going to a local folder are read in ranged GETs of this
        size (:mod:`~zarr_dask_utils.cloud.transfer_ranges`).
    progress_topic
        Event topic the task reports copied bytes on (``None``: no progress).
    """

    concurrency: int = 64
    inflight_bytes: int = 256 * 2**20
    verify: bool = True
    algorithm: str = "blake2b"
    flush_every: int = 32
    part_bytes: int = 8 * 2**20
    progress_topic: str | None = None


class _ByteBudget:
    """At most *limit* bytes held at once (an object above the limit waits to be alone)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.held = 0
        self.cond = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        async with self.cond:
            await self.cond.wait_for(lambda: self.held == 0 or self.held + n <= self.limit)
            self.held += n
        try:
            yield
        finally:
            async with self.cond:
                self.held -= n
                self.cond.notify_all()


def _whole(store: Store) -> OffsetByteRequest | None:
    # a ``bytes=0-`` range saves s3fs the HEAD it sends before a whole-object GET
    return OffsetByteRequest(0) if isinstance(store, FsspecStore) else None


class _Copier:
    """Copies items of one task and writes its records (one instance per task run)."""

    def __init__(self, src: Location, dst: Location, settings: CopySettings) -> None:
        self.src, self.dst, self.settings = src, dst, settings
        self.src_store = src.open_store()
        self.dst_store = dst.open_store()
        self.prototype = default_buffer_prototype()
        self.task = uuid.uuid4().hex[:12]
        self.unflushed: dict[str, list[Any]] = {}
        self.flushes = 0
        self.result: dict[str, Any] = {
            "copied": 0,
            "bytes": 0,
            "verified": 0,
            "vanished": [],
            "mismatched": [],
            "resized": [],
        }
        self.unreported = [0, 0]  # bytes, objects copied since the last progress report
        self.reported_at = time.monotonic()

    limit: asyncio.Semaphore
    ranged: bool

    def _hash(self, data: Any) -> str:
        return hashlib.new(self.settings.algorithm, data).hexdigest()

    async def _flush(self) -> None:
        if not self.unflushed:
            return
        batch, self.unflushed = self.unflushed, {}
        self.flushes += 1
        name = f"{MARKER_PREFIX}/done/{self.task}-{self.flushes}.json"
        body = json.dumps(batch, separators=(",", ":")).encode()
        await self.dst_store.set(
            join_key(self.dst.path, name), self.prototype.buffer.from_bytes(body)
        )

    def _report(self, nbytes: int) -> None:
        self.unreported[0] += nbytes
        self.unreported[1] += 1
        now = time.monotonic()
        if self.settings.progress_topic and now - self.reported_at > 0.25:
            emit_progress(self.settings.progress_topic, *self.unreported)
            self.unreported, self.reported_at = [0, 0], now

    async def _digest(self, view: memoryview) -> str:
        if len(view) < _THREAD_HASH:
            return self._hash(view)
        return await asyncio.to_thread(self._hash, view)  # hashlib lets go of the GIL

    async def _read_back(self, dst_key: str, view: memoryview) -> bool:
        """The target object, read back, equals *view* byte for byte."""
        back = await self.dst_store.get(
            dst_key, prototype=self.prototype, byte_range=_whole(self.dst_store)
        )
        if back is None or len(back) != len(view):
            return False
        if len(view) < _THREAD_HASH:
            return bool(np.array_equal(back.as_numpy_array(), view))
        return bool(await asyncio.to_thread(np.array_equal, back.as_numpy_array(), view))

    async def _whole_object(self, key: str, size: int) -> tuple[int, str | None, bool]:
        """Copy one object in one GET: ``(bytes, hash, verified)``; hash ``None``: gone."""
        buf = await self.src_store.get(
            join_key(self.src.path, key),
            prototype=self.prototype,
            byte_range=_whole(self.src_store),
        )
        if buf is None:
            return 0, None, False
        view = buffer_view(buf)
        if len(view) != size:  # changed since the listing: its listed version is not this
            return max(1, len(view)), None, False
        digest = await self._digest(view)  # the source bytes, hashed once
        dst_key = join_key(self.dst.path, key)
        await self.dst_store.set(dst_key, buf)
        verified = await self._read_back(dst_key, view) if self.settings.verify else True
        return len(view), digest, verified

    async def one(self, key: str, size: int, version: str | None, budget: _ByteBudget) -> None:
        if self.ranged and size > self.settings.part_bytes:
            n, digest, verified = await copy_ranged(
                self.src_store,
                join_key(self.src.path, key),
                Path(self.dst_store.root),  # type: ignore[attr-defined]
                join_key(self.dst.path, key),
                size,
                part_bytes=self.settings.part_bytes,
                algorithm=self.settings.algorithm,
                hold=budget.hold,
                limit=self.limit,
                verify=self.settings.verify,
            )
        else:
            async with budget.hold(size), self.limit:
                n, digest, verified = await self._whole_object(key, size)
        if digest is None:
            self.result["vanished" if n == 0 else "resized"].append(key)
            return
        self.result["copied"] += 1
        self.result["bytes"] += n
        if not verified:
            self.result["mismatched"].append(key)
            return
        if self.settings.verify:
            self.result["verified"] += 1
        self.unflushed[key] = [n, digest, version]
        self._report(n)
        if len(self.unflushed) >= self.settings.flush_every:
            await self._flush()

    async def run(self, items: Sequence[Item]) -> dict[str, Any]:
        budget = _ByteBudget(self.settings.inflight_bytes)
        start = time.perf_counter()
        self.limit = asyncio.Semaphore(self.settings.concurrency)
        self.ranged = supports_ranged(self.dst_store)
        # objects are started in order (at most 4x the request limit waiting at once); the
        # semaphore bounds the requests in flight, ranged parts included
        await concurrent_map(
            [(k, s, v, budget) for k, s, v in items], self.one, limit=4 * self.settings.concurrency
        )
        await self._flush()
        if self.settings.progress_topic and self.unreported[1]:
            emit_progress(self.settings.progress_topic, *self.unreported)
        self.result["seconds"] = time.perf_counter() - start
        return self.result


def copy_task(
    src: Location, dst: Location, items: Sequence[Item], settings: CopySettings
) -> dict[str, Any]:
    """Worker task: copy *items* from *src* to *dst*; counts and problem keys.

    Returns
    -------
    dict
        ``copied``, ``bytes``, ``verified`` counts, ``vanished`` (listed on the source, gone
        when read), ``resized`` (another size than listed when read: changed meanwhile) and
        ``mismatched`` (target copy differs when read back) keys, ``seconds``.
    """
    with storage_errors(f"{src.display} → {dst.display}"):
        return sync(_Copier(src, dst, settings).run(items))


def merge_results(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum the counts and join the key lists of several task results."""
    out: dict[str, Any] = {"copied": 0, "bytes": 0, "verified": 0}
    out.update({name: [] for name in _PROBLEM_LISTS})
    out["task_seconds"] = []
    for part in parts:
        for name in ("copied", "bytes", "verified"):
            out[name] += int(part[name])
        for name in _PROBLEM_LISTS:
            out[name] += list(part.get(name, ()))
        out["task_seconds"].append(float(part.get("seconds", 0.0)))
    return out


def copy_documents_task(
    src: Location,
    dst: Location,
    items: Sequence[Item],
    settings: CopySettings,
    data_results: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Final worker task: copy the metadata documents once every data task succeeded.

    Documents are written one after another in the order given (deepest first, the root's
    last).  Nothing is written when a data task reported a vanished or mismatched object:
    the target then keeps its partial marker and a rerun finishes it.

    Returns
    -------
    dict
        The merged results of the data tasks and this one (``documents_written``: bool).
    """
    data = merge_results(data_results)
    if any(data[name] for name in _PROBLEM_LISTS):
        data["documents_written"] = False
        return data
    sequential = CopySettings(
        concurrency=1,
        inflight_bytes=settings.inflight_bytes,
        verify=settings.verify,
        algorithm=settings.algorithm,
        flush_every=max(1, len(items)),
        part_bytes=settings.part_bytes,
        progress_topic=settings.progress_topic,
    )
    docs = copy_task(src, dst, items, sequential)
    merged = merge_results([*data_results, docs])
    merged["documents_written"] = not any(docs[name] for name in _PROBLEM_LISTS)
    return merged
