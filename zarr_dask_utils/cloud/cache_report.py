"""What a :class:`~zarr_dask_utils.cloud.caching.CachingStore` did: hits, misses, evictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dask.utils import format_bytes

from zarr_dask_utils._core.pure.reports import Report

__all__ = ["CacheStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStats(Report):
    """Counters of one process's cache for one :class:`CachingStore` (see ``stats()``).

    A read is a *hit* when the memory tier (``hits``) or the disk tier (``disk_hits``) served
    it, and a *miss* when it went to the wrapped store (``misses``; ``miss_bytes`` is what was
    fetched from there).  Byte-range reads of an object held whole are hits too; byte-range
    reads of an object not held are misses and are not cached.

    Parameters
    ----------
    location
        The wrapped store, credentials removed.
    engine
        The tiers and their bounds, in words.
    hits, hit_bytes
        Reads served from memory, and their bytes.
    disk_hits, disk_hit_bytes
        Reads served from the disk tier (then also kept in memory), and their bytes.
    misses, miss_bytes
        Reads sent to the wrapped store, and the bytes it returned.
    evicted, evicted_bytes
        Entries (bytes) dropped from memory to stay under ``memory_limit``.
    disk_evicted, disk_evicted_bytes
        Files (bytes) deleted from the disk tier to stay under ``disk_limit``.
    expired
        Entries dropped because they were older than ``ttl`` (both tiers).
    invalidated
        Keys dropped because they were written or deleted through the store.
    memory_bytes, memory_entries, memory_limit
        What the memory tier holds now, and its bound.
    disk_bytes, disk_entries, disk_limit, disk_path
        The same for the disk tier (``disk_path`` empty when there is none).
    ttl
        Seconds an entry stays valid (``None``: until evicted or invalidated).
    """

    hits: int = 0
    hit_bytes: int = 0
    disk_hits: int = 0
    disk_hit_bytes: int = 0
    misses: int = 0
    miss_bytes: int = 0
    evicted: int = 0
    evicted_bytes: int = 0
    disk_evicted: int = 0
    disk_evicted_bytes: int = 0
    expired: int = 0
    invalidated: int = 0
    memory_bytes: int = 0
    memory_entries: int = 0
    memory_limit: int = 0
    disk_bytes: int = 0
    disk_entries: int = 0
    disk_limit: int = 0
    disk_path: str = ""
    ttl: float | None = None

    title = "Cache statistics"

    @property
    def hit_ratio(self) -> float:
        """Share of reads served by the cache (memory or disk); 0.0 before the first read."""
        total = self.hits + self.disk_hits + self.misses
        return (self.hits + self.disk_hits) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the counters as JSON-safe data, ``hit_ratio`` included."""
        data = Report.to_dict(self)
        data["hit_ratio"] = self.hit_ratio
        return data

    def summary_lines(self) -> Sequence[str]:
        """The counters in words, one line per tier and one per outcome."""
        lines = [
            f"hit ratio: {self.hit_ratio:.1%} "
            f"({self.hits + self.disk_hits} hits, {self.misses} misses)",
            f"memory hits: {self.hits} ({format_bytes(self.hit_bytes)})",
            f"misses: {self.misses} ({format_bytes(self.miss_bytes)} fetched)",
            f"memory: {format_bytes(self.memory_bytes)} of {format_bytes(self.memory_limit)} "
            f"in {self.memory_entries} entries; evicted {self.evicted} "
            f"({format_bytes(self.evicted_bytes)})",
        ]
        if self.disk_path:
            lines.insert(2, f"disk hits: {self.disk_hits} ({format_bytes(self.disk_hit_bytes)})")
            lines.append(
                f"disk {self.disk_path}: {format_bytes(self.disk_bytes)} of "
                f"{format_bytes(self.disk_limit)} in {self.disk_entries} files; evicted "
                f"{self.disk_evicted} ({format_bytes(self.disk_evicted_bytes)})"
            )
        ttl = "none" if self.ttl is None else f"{self.ttl:g} s"
        lines.append(
            f"expired: {self.expired} (ttl {ttl}); invalidated by writes: {self.invalidated}"
        )
        return lines
