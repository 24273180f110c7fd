"""One process's cache for one :class:`CachingStore`: tiers, counters and invalidation.

Copies of a ``CachingStore`` (zarr's ``with_read_only``, a pickle sent to a Dask worker and
unpickled for every task) find their state here by the store's ``cache_id``, so all copies in
one process share one cache.  Nothing of it is pickled: a new process starts empty (or from
its disk tier).

Invalidation races: a read that fetched an object *before* a write through the store may
finish *after* it and would then cache the old bytes.  Each fetch takes a ticket (the
invalidation generation when it started); it may only cache its result if no invalidation
touching its key happened since.  Invalidations are remembered while any fetch is in flight.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dask.utils import format_bytes

from zarr_dask_utils.cloud.cache_disk import DiskTier
from zarr_dask_utils.cloud.cache_report import CacheStats
from zarr_dask_utils.cloud.cache_tiers import Entry, MemoryTier

__all__ = ["COUNTERS", "CacheState", "cache_state", "find_state", "snapshot", "worker_snapshot"]


#: Counters of reads (a hit in memory, a hit on disk, a miss) and of keys invalidated.
COUNTERS = ("hits", "hit_bytes", "disk_hits", "disk_hit_bytes", "misses", "miss_bytes")
_OUTCOMES = {
    "hit": ("hits", "hit_bytes"),
    "disk_hit": ("disk_hits", "disk_hit_bytes"),
    "miss": ("misses", "miss_bytes"),
}


@dataclass(eq=False)
class CacheState:
    """The tiers of one cache in this process and what happened to them."""

    memory: MemoryTier
    disk: DiskTier | None
    namespace: str  # names this store's objects in a (shared) disk tier
    clock: Callable[[], float]
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    invalidated: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0
    in_flight: int = 0
    # invalidations remembered while fetches are in flight: key or prefix -> generation
    recent_keys: dict[str, int] = field(default_factory=dict)
    recent_prefixes: list[tuple[str, int]] = field(default_factory=list)

    # --- counting ---------------------------------------------------------------------------
    def count(self, outcome: str, nbytes: int) -> None:
        """Add one read with *outcome* ``"hit"``, ``"disk_hit"`` or ``"miss"``."""
        count, size = _OUTCOMES[outcome]
        with self.lock:
            self.counters[count] += 1
            self.counters[size] += nbytes

    # --- fetch tickets ----------------------------------------------------------------------
    def begin_fetch(self) -> int:
        """Register a fetch from the wrapped store; return its ticket."""
        with self.lock:
            self.in_flight += 1
            return self.generation

    def end_fetch(self) -> None:
        """The fetch of a ticket is over (cached or not)."""
        with self.lock:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.recent_keys.clear()
                self.recent_prefixes.clear()

    def still_valid(self, key: str, ticket: int) -> bool:
        """Whether no invalidation touched *key* since *ticket* was taken."""
        with self.lock:
            return self._valid(key, ticket)

    def _valid(self, key: str, ticket: int) -> bool:
        if self.generation == ticket:
            return True
        if self.recent_keys.get(key, -1) > ticket:
            return False
        return not any(key.startswith(p) and g > ticket for p, g in self.recent_prefixes)

    def keep(self, key: str, entry: Entry, ticket: int) -> bool:
        """Put a fetched *entry* in memory unless it went stale; return whether it was kept."""
        with self.lock:
            if not self._valid(key, ticket):
                return False
            self.memory.put(key, entry)  # the tier's own lock nests inside: never the reverse
            return True

    # --- invalidation -----------------------------------------------------------------------
    def invalidate(self, key: str) -> None:
        """Forget *key* in both tiers (it was written or deleted through the store)."""
        with self.lock:
            self.generation += 1
            if self.in_flight:
                self.recent_keys[key] = self.generation
            dropped = self.memory.discard(key)
        if self.disk is not None:
            dropped = self.disk.discard(self.namespace, key) or dropped
        if dropped:
            with self.lock:
                self.invalidated += 1

    def invalidate_prefix(self, prefix: str) -> None:
        """Forget every key under *prefix* (``""``: all of this store's keys)."""
        with self.lock:
            self.generation += 1
            if self.in_flight:
                self.recent_prefixes.append((prefix, self.generation))
            dropped = self.memory.discard_prefix(prefix)
        if self.disk is not None:
            dropped = max(dropped, self.disk.discard_prefix(self.namespace, prefix))
        with self.lock:
            self.invalidated += dropped


_STATES: dict[str, CacheState] = {}
_STATES_LOCK = threading.Lock()


def cache_state(cache_id: str, make: Callable[[], CacheState]) -> CacheState:
    """Return this process's state for *cache_id*, made by *make* on first use."""
    with _STATES_LOCK:
        state = _STATES.get(cache_id)
        if state is None:
            state = _STATES[cache_id] = make()
        return state


def find_state(cache_id: str) -> CacheState | None:
    """Return this process's state for *cache_id*, or ``None`` if no copy ran here."""
    with _STATES_LOCK:
        return _STATES.get(cache_id)


def snapshot(state: CacheState, location: str, ttl: float | None) -> CacheStats:
    """Freeze the counters of *state* into a :class:`CacheStats` report."""
    memory, disk = state.memory, state.disk
    with state.lock:
        c = dict(state.counters)
    expired = memory.counters.expired + (disk.counters.expired if disk else 0)
    tiers = f"memory LRU ({format_bytes(memory.max_bytes)})"
    if disk is not None:
        tiers += f" + disk {disk.root} ({format_bytes(disk.max_bytes)})"
    return CacheStats(
        location=location,
        engine=f"{tiers}, this process (pid {os.getpid()})",
        hits=c["hits"],
        hit_bytes=c["hit_bytes"],
        disk_hits=c["disk_hits"],
        disk_hit_bytes=c["disk_hit_bytes"],
        misses=c["misses"],
        miss_bytes=c["miss_bytes"],
        evicted=memory.counters.evicted,
        evicted_bytes=memory.counters.evicted_bytes,
        disk_evicted=disk.counters.evicted if disk else 0,
        disk_evicted_bytes=disk.counters.evicted_bytes if disk else 0,
        expired=expired,
        invalidated=state.invalidated,
        memory_bytes=memory.nbytes,
        memory_entries=len(memory),
        memory_limit=memory.max_bytes,
        disk_bytes=disk.nbytes if disk else 0,
        disk_entries=len(disk) if disk else 0,
        disk_limit=disk.max_bytes if disk else 0,
        disk_path=str(disk.root) if disk else "",
        ttl=ttl,
    )


def worker_snapshot(cache_id: str, location: str, ttl: float | None) -> CacheStats | None:
    """Run on each worker by :meth:`CachingStore.worker_stats`."""
    state = find_state(cache_id)
    return None if state is None else snapshot(state, location, ttl)
