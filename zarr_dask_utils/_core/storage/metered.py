"""A meter on zarr's own reads: requests, bytes and the time any request was in flight.

Shared by the profiling feature (``benchmark_store``'s pattern reads) and the cloud feature
(``optimize_s3_access``'s candidate settings): both read through :class:`MeteredStore` on a
store from :func:`fresh_store`, so they measure the store and not a cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import FsspecStore, WrapperStore

__all__ = ["Meter", "MeteredStore", "fresh_store"]


def fresh_store(store: Store) -> Store:
    """*store* with cached listings and sizes dropped: a measurement must reach the store."""
    if isinstance(store, FsspecStore):
        store.fs.invalidate_cache()
    return store


@dataclass
class Meter:
    """Requests, bytes and the time at least one request was in flight."""

    requests: int = 0
    bytes: int = 0
    intervals: list[tuple[float, float]] = field(default_factory=list)

    def busy_seconds(self) -> float:
        """Length of the union of request intervals."""
        total, end = 0.0, -1.0
        for lo, hi in sorted(self.intervals):
            if hi <= end:
                continue
            total += hi - max(lo, end)
            end = hi
        return total


class MeteredStore(WrapperStore[Store]):
    """Forward reads to the wrapped store and record each one on a :class:`Meter`."""

    def __init__(self, store: Store, meter: Meter | None = None) -> None:
        super().__init__(store)
        self._meter = meter if meter is not None else Meter()

    def _with_store(self, store: Any) -> MeteredStore:
        return type(self)(store, self._meter)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Read *key* and record the request."""
        t0 = time.perf_counter()
        value = await self._store.get(key, prototype, byte_range)
        self._record(t0, value)
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Any
    ) -> list[Buffer | None]:
        """Read several ranges; each counts as one request."""
        pairs = list(key_ranges)
        t0 = time.perf_counter()
        values = await self._store.get_partial_values(prototype, pairs)
        for value in values:
            self._record(t0, value)
        return values

    def _record(self, t0: float, value: Buffer | None) -> None:
        self._meter.requests += 1
        self._meter.bytes += len(value) if value is not None else 0
        self._meter.intervals.append((t0, time.perf_counter()))
