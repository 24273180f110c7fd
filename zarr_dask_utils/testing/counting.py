"""A zarr store wrapper that counts reads: exact request and byte counts for tests.

Examples
--------
>>> import zarr
>>> from zarr_dask_utils.testing.counting import CountingStore
>>> inner = zarr.storage.MemoryStore()
>>> a = zarr.create_array(inner, shape=(4,), chunks=(2,), dtype="i1", compressors=None)
>>> a[:] = 1
>>> store = CountingStore(inner)
>>> _ = zarr.open_array(store, mode="r")[:]
>>> store.gets > 0
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

__all__ = ["CountingStore"]


@dataclass
class _Counts:
    """Counters shared by a store and the copies zarr makes of it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    gets: int = 0
    bytes: int = 0
    keys: list[str] = field(default_factory=list)


class CountingStore(WrapperStore[Store]):
    """Forward everything to the wrapped store; count ``get`` requests and bytes returned.

    Attributes
    ----------
    gets
        Number of ``get`` calls (a ``get_partial_values`` counts one per range).
    bytes_read
        Bytes returned by those calls.
    keys
        The keys requested, in order.
    """

    def __init__(self, store: Store, _counts: _Counts | None = None) -> None:
        super().__init__(store)
        # shared with copies zarr makes (``with_read_only`` wraps the inner store anew)
        self._counts = _counts if _counts is not None else _Counts()

    @property
    def gets(self) -> int:
        """Number of read requests so far."""
        return self._counts.gets

    @property
    def bytes_read(self) -> int:
        """Bytes returned so far."""
        return self._counts.bytes

    @property
    def keys(self) -> list[str]:
        """Keys requested so far, in order."""
        return list(self._counts.keys)

    def reset(self) -> None:
        """Set the counters to zero."""
        with self._counts.lock:
            self._counts.gets, self._counts.bytes, self._counts.keys = 0, 0, []

    def _count(self, key: str, value: Buffer | None) -> None:
        with self._counts.lock:
            self._counts.gets += 1
            self._counts.bytes += len(value) if value is not None else 0
            self._counts.keys.append(key)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Read *key* and count it."""
        value = await self._store.get(key, prototype, byte_range)
        self._count(key, value)
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """Read several ranges; each counts as one request."""
        pairs = list(key_ranges)
        values = await self._store.get_partial_values(prototype, pairs)
        for (key, _), value in zip(pairs, values, strict=True):
            self._count(key, value)
        return values

    def _with_store(self, store: Any) -> CountingStore:
        return type(self)(store, self._counts)
