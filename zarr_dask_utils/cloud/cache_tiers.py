"""The memory tier of the cache: a byte-bounded, thread-safe LRU of whole objects.

Values are immutable ``bytes``: a hit hands zarr a read-only view of them without copying,
and nothing a caller does to a returned buffer can change the cache.  A key the source does not
have is cached too (``data=None``: zarr asks for missing chunks of sparse arrays on every read,
each a request on object storage); it counts :data:`ABSENT_COST` bytes against the bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ABSENT_COST", "Entry", "MemoryTier", "TierCounters", "is_expired"]

ABSENT_COST = 64
"""Bytes of the memory bound an entry for a missing key costs (its bookkeeping, roughly)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached object: its bytes (``None``: absent) and when they were fetched (clock time)."""

    data: bytes | None
    stored_at: float

    @property
    def cost(self) -> int:
        """Bytes this entry counts against a tier's bound."""
        return ABSENT_COST if self.data is None else len(self.data)


@dataclass(slots=True)
class TierCounters:
    """What a tier dropped: to stay under its bound, for age, or for a write."""

    evicted: int = 0
    evicted_bytes: int = 0
    expired: int = 0


def is_expired(stored_at: float, now: float, ttl: float | None) -> bool:
    """Whether an entry fetched at *stored_at* is older than *ttl* seconds at *now*."""
    return ttl is not None and now - stored_at >= ttl


class MemoryTier:
    """A least-recently-used map of key → :class:`Entry` holding at most *max_bytes* bytes.

    Parameters
    ----------
    max_bytes
        Bound on the sum of the cached values' lengths; an object larger than it is never
        cached.  ``0`` turns the tier off.
    ttl
        Seconds an entry stays valid (``None``: no expiry).
    clock
        Returns the current time in seconds; injectable for tests.

    Examples
    --------
    >>> tier = MemoryTier(10, ttl=None, clock=lambda: 0.0)
    >>> tier.put("a", Entry(b"123456", 0.0)); tier.put("b", Entry(b"7890", 0.0))
    >>> tier.put("c", Entry(b"xy", 0.0))  # evicts "a", the least recently used
    >>> sorted(tier.keys()), tier.nbytes
    (['b', 'c'], 6)
    """

    def __init__(self, max_bytes: int, *, ttl: float | None, clock: Callable[[], float]) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self.counters = TierCounters()
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held now (never more than ``max_bytes``)."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        """The cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def get(self, key: str) -> Entry | None:
        """Return the entry for *key* and mark it most recently used; drop it if expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if is_expired(entry.stored_at, self.clock(), self.ttl):
                self._drop(key)
                self.counters.expired += 1
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: Entry) -> None:
        """Cache *entry* under *key*, evicting least recently used entries to make room."""
        size = entry.cost
        with self._lock:
            self._drop(key)
            if size > self.max_bytes:
                return
            while self._nbytes + size > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._nbytes -= old.cost
                self.counters.evicted += 1
                self.counters.evicted_bytes += old.cost
            self._entries[key] = entry
            self._nbytes += size

    def discard(self, key: str) -> bool:
        """Forget *key*; return whether it was cached."""
        with self._lock:
            return self._drop(key)

    def discard_prefix(self, prefix: str) -> int:
        """Forget every key starting with *prefix* (``""``: all); return how many."""
        with self._lock:
            doomed = [k for k in self._entries if k.startswith(prefix)]
            for key in doomed:
                self._drop(key)
            return len(doomed)

    def _drop(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._nbytes -= entry.cost
        return True
