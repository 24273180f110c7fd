"""Pure planning of ``optimize_s3_access``: candidate settings from measurements, then the choice.

Ints, floats, tuples and dicts in; frozen dataclasses out; no I/O, no Dask, no clock.
:func:`plan_candidates` turns what the workers measured (:class:`StoreFacts`) into a few
:class:`Candidate` settings worth trying on the user's access pattern; :func:`choose_candidate`
picks the winner from the trials' measurements (only candidates that read the same bytes as
the settings given qualify, and a winner must beat them by a margin, else they stay).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MIN_GAIN",
    "TUNING_KEYS",
    "Candidate",
    "Choice",
    "StoreFacts",
    "bandwidth_delay_product",
    "cache_type_for",
    "choose_candidate",
    "distinct_chunk_ratio",
    "is_consolidated",
    "knee_level",
    "plan_candidates",
]

#: A candidate must read at least this many times faster than the settings given to win.
MIN_GAIN = 1.10
#: storage_options the tuner sets (everything else, credentials and endpoint, is the user's).
TUNING_KEYS = frozenset(
    {"zdu_engine", "max_concurrency", "config_kwargs", "default_block_size", "default_cache_type"}
)
_S3FS_BLOCK = 50 * 2**20  # s3fs default_block_size: larger objects are split into ranges
_SPLIT_FROM = 16 * 2**20  # chunks this large gain from parallel ranged GETs of one object
_SPLIT_PARTS = 8
_MIN_LEVEL, _MAX_LEVEL = 8, 256


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What the workers measured about a store, and what the user asked for.

    Attributes
    ----------
    latency
        Median first-byte time of one request (s).
    connection_rate
        Bytes/s one request in flight moves (the level-1 step of the benchmark curve).
    curve
        ``(level, bytes/s)`` of one worker reading with *level* requests in flight.
    chunk_bytes
        Typical (median) stored chunk size of the arrays read (bytes).
    largest_chunk
        Largest chunk object the pattern reads (bytes).
    consolidated
        Whether the root holds consolidated metadata.
    nodes
        Groups and arrays in the hierarchy.
    pattern
        The access pattern name (or ``"selections"``).
    reread_ratio
        Chunks read / distinct chunks read by the pattern (1.0: every chunk read once).
    engine
        Engine of the settings given (``"s3fs"`` or ``"obstore"``).
    concurrency
        zarr's ``async.concurrency`` now.
    obstore
        Whether the optional obstore package is installed.
    """

    latency: float
    connection_rate: float
    curve: tuple[tuple[int, float], ...]
    chunk_bytes: int
    largest_chunk: int
    consolidated: bool
    nodes: int = 1
    pattern: str = "sequential"
    reread_ratio: float = 1.0
    engine: str = "s3fs"
    concurrency: int = 10
    obstore: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    """One set of settings to try.

    Attributes
    ----------
    name
        Short label, e.g. ``"s3fs-64"``.
    engine
        ``"s3fs"`` or ``"obstore"``.
    concurrency
        zarr's ``async.concurrency`` (requests in flight per task).
    options
        The tuning ``storage_options`` (credentials and endpoint are added from the user's).
    why
        Why this candidate is worth trying.
    baseline
        The settings as given (nothing changed).
    cache
        Read through a byte-bounded read cache (``smart_caching``) on top.
    """

    name: str
    engine: str
    concurrency: int
    options: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""
    baseline: bool = False
    cache: bool = False

    def storage_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The full options: *given* (credentials, endpoint) with this candidate's tuning."""
        if self.baseline:
            return dict(given)
        kept = {k: v for k, v in given.items() if k not in TUNING_KEYS}
        return {**kept, **self.options}

    def zarr_config(self) -> dict[str, Any]:
        """The zarr config values of this candidate (``zarr.config.set(...)``)."""
        return {"async.concurrency": self.concurrency}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "name": self.name,
            "engine": self.engine,
            "concurrency": self.concurrency,
            "options": dict(self.options),
            "why": self.why,
            "baseline": self.baseline,
            "cache": self.cache,
        }


@dataclass(frozen=True, slots=True)
class Choice:
    """The winner of the trials and the evidence for it.

    Attributes
    ----------
    winner, baseline
        Names of the chosen candidate and of the settings given.
    speedup
        Winner's throughput / baseline's (1.0 when the baseline stays).
    rejected
        ``{name: reason}`` for candidates that failed or read other bytes.
    reason
        One sentence: why this one.
    """

    winner: str
    baseline: str
    speedup: float
    rejected: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""


def bandwidth_delay_product(latency: float, rate: float) -> int:
    """Bytes one connection could move during one round trip (latency x bandwidth)."""
    return max(int(latency * rate), 0)


def knee_level(curve: Sequence[tuple[int, float]], fraction: float = 0.9) -> int:
    """Smallest level whose throughput reaches *fraction* of the best (``0`` for no curve)."""
    if not curve:
        return 0
    best = max(rate for _, rate in curve)
    return min(level for level, rate in curve if rate >= fraction * best)


def is_consolidated(documents: Mapping[str, bytes | None]) -> bool:
    """Whether root documents (key → bytes) hold consolidated metadata (v2 or v3)."""
    if documents.get(".zmetadata"):
        return True
    root = documents.get("zarr.json") or b""
    return b'"consolidated_metadata"' in root and b'"consolidated_metadata": null' not in root


def distinct_chunk_ratio(
    selections: Sequence[Sequence[tuple[int, int]]], chunks: Sequence[int], limit: int = 100_000
) -> float:
    """Chunks the selections touch in all / distinct chunks touched (``1.0`` if too many).

    Above 1.0 the pattern reads some chunks more than once: a cache pays off.

    Examples
    --------
    >>> distinct_chunk_ratio([((0, 10), (0, 1)), ((0, 10), (1, 2))], (10, 10))
    2.0
    """
    total, seen = 0, set[tuple[int, ...]]()
    for sel in selections:
        ranges = [
            range(lo // c, max(lo, hi - 1) // c + 1)
            for (lo, hi), c in zip(sel, chunks, strict=True)
        ]
        n = math.prod(len(r) for r in ranges)
        total += n
        if total > limit:
            return 1.0
        seen.update(itertools.product(*ranges))
    return total / len(seen) if seen else 1.0


def cache_type_for(pattern: str) -> str:
    """The fsspec ``default_cache_type`` for file-like reads of *pattern*.

    zarr reads whole objects (or exact ranges) and does not use it; file-like readers on the
    same filesystem (h5netcdf through xarray) do: read-ahead helps a scan, hurts scattered
    small reads.
    """
    return "readahead" if pattern == "sequential" else "none"


def _level(facts: StoreFacts) -> int:
    """Requests in flight that fill the link: the curve's knee, or enough to cover a round trip."""
    knee = knee_level(facts.curve)
    if knee <= 0 or knee == max((lv for lv, _ in facts.curve), default=0):
        # no knee (still rising at the top of the curve): cover the bandwidth-delay product
        bdp = bandwidth_delay_product(facts.latency, facts.connection_rate)
        knee = max(knee, 2 * math.ceil(bdp / max(facts.chunk_bytes, 1)), 32)
    return int(min(max(knee, _MIN_LEVEL), _MAX_LEVEL))


def _s3fs_options(level: int, facts: StoreFacts, *, split: bool = False) -> dict[str, Any]:
    options: dict[str, Any] = {"default_cache_type": cache_type_for(facts.pattern)}
    pool = level
    if split:  # parallel ranged GETs inside one large object
        block = max(5 * 2**20, math.ceil(facts.largest_chunk / _SPLIT_PARTS))
        options.update(max_concurrency=_SPLIT_PARTS, default_block_size=block)
        pool = level * _SPLIT_PARTS
    elif facts.largest_chunk <= _S3FS_BLOCK:
        # max_concurrency > 1 makes s3fs send a HEAD before every whole-object GET (to learn
        # the size); with objects below the block size it never splits anyway
        options["max_concurrency"] = 1
    options["config_kwargs"] = {"max_pool_connections": int(min(pool, 1024))}
    return options


def plan_candidates(facts: StoreFacts) -> tuple[Candidate, ...]:
    """The settings worth trying on this store, the settings given first.

    Examples
    --------
    >>> facts = StoreFacts(0.02, 5e6, ((1, 5e6), (16, 6e7), (64, 6.2e7)), 65536, 65536, True)
    >>> [c.name for c in plan_candidates(facts)]
    ['as-given', 's3fs-16', 's3fs-32']
    """
    level = _level(facts)
    out = [
        Candidate(
            "as-given",
            facts.engine,
            facts.concurrency,
            why="the settings given, for comparison",
            baseline=True,
        )
    ]
    for lv in dict.fromkeys((level, min(2 * level, _MAX_LEVEL))):
        out.append(
            Candidate(
                f"s3fs-{lv}",
                "s3fs",
                lv,
                _s3fs_options(lv, facts),
                f"{lv} requests in flight with a connection pool as large, no HEAD per GET",
            )
        )
    if facts.largest_chunk >= _SPLIT_FROM:
        out.append(
            Candidate(
                f"s3fs-split-{level}",
                "s3fs",
                level,
                _s3fs_options(level, facts, split=True),
                f"chunks up to {facts.largest_chunk:,} B fetched as {_SPLIT_PARTS} ranges each",
            )
        )
    if facts.reread_ratio > 1.0:
        out.append(
            Candidate(
                f"s3fs-{level}-cached",
                "s3fs",
                level,
                _s3fs_options(level, facts),
                f"the pattern reads chunks {facts.reread_ratio:.1f} times: a read cache on top",
                cache=True,
            )
        )
    if facts.obstore:
        out.append(
            Candidate(
                f"obstore-{level}",
                "obstore",
                level,
                {"zdu_engine": "obstore"},
                "obstore (Rust object-store client): no HEAD, no connection-pool cap",
            )
        )
    return tuple(out)


def choose_candidate(
    candidates: Sequence[Candidate], trials: Mapping[str, Mapping[str, Any]]
) -> Choice:
    """Pick the fastest candidate that read the same bytes as the settings given.

    *trials* maps a candidate name to its measurement: ``{"seconds", "bytes_needed",
    "digest"}``, or ``{"error": "..."}`` when it failed.  A candidate wins only if it is at
    least :data:`MIN_GAIN` times faster than the settings given; ties go to the earlier
    candidate (s3fs before obstore, fewer requests in flight first).
    """
    base = next(c for c in candidates if c.baseline)
    ref = trials.get(base.name, {})
    rejected: dict[str, str] = {}
    rates: dict[str, float] = {}
    for cand in candidates:
        trial = trials.get(cand.name)
        if trial is None:
            rejected[cand.name] = "not tried"
        elif trial.get("error"):
            rejected[cand.name] = str(trial["error"])
        elif ref.get("digest") and trial.get("digest") != ref.get("digest"):
            rejected[cand.name] = "read other bytes than the settings given"
        else:
            rates[cand.name] = float(trial["bytes_needed"]) / max(float(trial["seconds"]), 1e-9)
    if base.name not in rates:
        return Choice(base.name, base.name, 1.0, rejected, "the settings given could not be read")
    best = max(rates, key=lambda name: (rates[name], name == base.name))
    speedup = rates[best] / max(rates[base.name], 1e-9)
    if best == base.name or speedup < MIN_GAIN:
        return Choice(
            base.name,
            base.name,
            1.0,
            rejected,
            f"no candidate read {MIN_GAIN:.2f}x faster than the settings given",
        )
    return Choice(
        best,
        base.name,
        speedup,
        rejected,
        f"{best} read the pattern {speedup:.2f}x faster than the settings given, same bytes",
    )
