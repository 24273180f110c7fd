"""Pure cost model: chunks touched, requests and bytes of a selection, predicted time, advice.

Counts follow what zarr-python 3 does: one ``get`` per chunk touched (missing chunks too);
for a sharded array, one ``get`` of the whole shard when every inner chunk of the shard is
selected, else one request for the shard index plus one per inner chunk touched.  Stored
chunks are always whole (edge chunks are padded), so bytes read count whole chunks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zarr_dask_utils.optimize.patterns import AccessPattern

__all__ = [
    "CostParams",
    "PatternCost",
    "Recommendation",
    "SelectionCost",
    "consistent_chunks",
    "pattern_cost",
    "recommend_chunks",
    "selection_cost",
]

Selection = tuple[tuple[int, int], ...]
_INDEX_ENTRY = 16  # bytes per inner chunk in a shard index (offset + length, uint64)
_INDEX_CRC = 4  # crc32c of the index


@dataclass(frozen=True, slots=True)
class CostParams:
    """Cost-model parameters: per-request latency (s), bandwidth and decode rate (bytes/s)."""

    latency: float = 0.01
    bandwidth: float = 200e6
    decode_rate: float = 1e9
    concurrency: int = 16
    compression_ratio: float = 1.0
    source: str = "defaults"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe parameters."""
        return {
            "latency": self.latency,
            "bandwidth": self.bandwidth,
            "decode_rate": self.decode_rate,
            "concurrency": self.concurrency,
            "compression_ratio": self.compression_ratio,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class SelectionCost:
    """What reading one selection costs."""

    chunks_touched: int
    requests: int
    bytes_read: int
    bytes_decoded: int
    bytes_needed: int

    def __add__(self, other: SelectionCost) -> SelectionCost:
        return SelectionCost(
            self.chunks_touched + other.chunks_touched,
            self.requests + other.requests,
            self.bytes_read + other.bytes_read,
            self.bytes_decoded + other.bytes_decoded,
            self.bytes_needed + other.bytes_needed,
        )

    def seconds(self, params: CostParams) -> float:
        """Predicted time: request latency (overlapped ``concurrency`` deep) + transfer + decode."""
        waves = math.ceil(self.requests / max(params.concurrency, 1))
        return (
            waves * params.latency
            + self.bytes_read / params.bandwidth
            + self.bytes_decoded / params.decode_rate
        )


def _axis_touched(lo: int, hi: int, chunk: int) -> tuple[int, int]:
    """(first chunk index, number of chunks) overlapped by ``[lo, hi)``."""
    if hi <= lo:
        return lo // chunk, 0
    first = lo // chunk
    return first, (hi - 1) // chunk - first + 1


def _shard_axis(lo: int, hi: int, chunk: int, shard: int) -> tuple[int, int, int]:
    """Along one axis: (shards touched, chunks touched, chunks in fully-covered shards)."""
    per = shard // chunk
    first, count = _axis_touched(lo, hi, chunk)
    by_shard: dict[int, int] = {}
    for c in range(first, first + count):
        by_shard[c // per] = by_shard.get(c // per, 0) + 1
    full = sum(t for t in by_shard.values() if t == per)
    return len(by_shard), count, full


def selection_cost(
    selection: Selection,
    chunks: Sequence[int],
    itemsize: int,
    *,
    shards: Sequence[int] | None = None,
    compression_ratio: float = 1.0,
) -> SelectionCost:
    """Exact chunk/request counts for reading a box *selection*.

    Parameters
    ----------
    selection
        ``((start, stop), ...)`` per axis.
    chunks, shards
        Inner chunk shape; shard shape (``None``: not sharded).
    itemsize
        Bytes per element.
    compression_ratio
        Decoded / stored bytes (1.0 for uncompressed).
    """
    needed = math.prod(hi - lo for lo, hi in selection) * itemsize
    chunk_bytes = math.prod(chunks) * itemsize
    ratio = max(compression_ratio, 1e-9)
    if needed == 0:
        return SelectionCost(0, 0, 0, 0, 0)
    if not shards:
        touched = math.prod(
            _axis_touched(lo, hi, c)[1] for (lo, hi), c in zip(selection, chunks, strict=True)
        )
        stored = round(touched * chunk_bytes / ratio)
        return SelectionCost(touched, touched, stored, touched * chunk_bytes, needed)
    axes = [
        _shard_axis(lo, hi, c, s) for (lo, hi), c, s in zip(selection, chunks, shards, strict=True)
    ]
    n_shards = math.prod(a[0] for a in axes)
    touched = math.prod(a[1] for a in axes)
    in_full = math.prod(a[2] for a in axes)
    per_shard = math.prod(s // c for s, c in zip(shards, chunks, strict=True))
    full_shards = in_full // per_shard if per_shard else 0
    partial = n_shards - full_shards
    index_bytes = per_shard * _INDEX_ENTRY + _INDEX_CRC
    requests = n_shards + (touched - in_full)
    stored = round(touched * chunk_bytes / ratio) + n_shards * index_bytes
    del partial
    return SelectionCost(touched, requests, stored, touched * chunk_bytes, needed)


@dataclass(frozen=True, slots=True)
class PatternCost:
    """A pattern's total cost for one chunking."""

    pattern: str
    weight: float
    cost: SelectionCost
    seconds: float

    @property
    def amplification(self) -> float:
        """Bytes decoded / bytes needed."""
        return self.cost.bytes_decoded / max(self.cost.bytes_needed, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary."""
        return {
            "pattern": self.pattern,
            "weight": self.weight,
            "chunks_touched": self.cost.chunks_touched,
            "requests": self.cost.requests,
            "bytes_read": self.cost.bytes_read,
            "bytes_decoded": self.cost.bytes_decoded,
            "bytes_needed": self.cost.bytes_needed,
            "amplification": round(self.amplification, 4),
            "seconds": self.seconds,
        }


def pattern_cost(
    pattern: AccessPattern,
    chunks: Sequence[int],
    itemsize: int,
    params: CostParams,
    *,
    shards: Sequence[int] | None = None,
) -> PatternCost:
    """Sum of :func:`selection_cost` over the pattern's selections, and its predicted time."""
    total = SelectionCost(0, 0, 0, 0, 0)
    seconds = 0.0
    for sel in pattern.selections:
        cost = selection_cost(
            sel, chunks, itemsize, shards=shards, compression_ratio=params.compression_ratio
        )
        total = total + cost
        seconds += cost.seconds(params)
    return PatternCost(pattern.name, pattern.weight, total, seconds)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Recommended chunks (and shards), with the reasoning and per-pattern costs."""

    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    reasoning: str
    costs: tuple[PatternCost, ...] = field(default=())


def _candidates(n: int, current: int) -> list[int]:
    values = {n, max(current, 1), 1}
    p = 1
    while p < n:
        values.add(p)
        p *= 2
    values.update(max(1, -(-n // k)) for k in (2, 3, 4, 6, 8, 10, 12, 16))
    return sorted(v for v in values if 1 <= v <= max(n, 1))


def recommend_chunks(
    shape: Sequence[int],
    itemsize: int,
    patterns: Sequence[AccessPattern],
    *,
    current: Sequence[int],
    min_bytes: int,
    max_bytes: int,
    params: CostParams | None = None,
    zarr_format: int = 3,
    shard_bytes: int = 0,
    dims: Sequence[str | None] | None = None,
) -> Recommendation:
    """Chunk shape minimising the weighted, normalised predicted time within size bounds.

    Each pattern's time is divided by its best time over all candidates, so a full scan and a
    point query weigh by their ``weight`` only.  Ties go to fewer, larger chunks.
    """
    params = params or CostParams()
    shape = tuple(int(n) for n in shape)
    total = math.prod(shape) * itemsize
    low = min(min_bytes, total)
    axes = [_candidates(n, c) for n, c in zip(shape, current, strict=True)]
    combos = [
        c for c in itertools.product(*axes) if low <= math.prod(c) * itemsize <= max_bytes
    ] or [tuple(current)]
    times = {c: [pattern_cost(p, c, itemsize, params).seconds for p in patterns] for c in combos}
    best = [min(t[i] for t in times.values()) or 1e-12 for i in range(len(patterns))]
    weight = sum(p.weight for p in patterns) or 1.0

    def score(c: tuple[int, ...]) -> tuple[float, int, float]:
        s = sum(p.weight * t / b for p, t, b in zip(patterns, times[c], best, strict=True))
        far = sum(abs(math.log(a / b)) for a, b in zip(c, current, strict=True))
        return round(s / weight, 6), -math.prod(c), far

    chosen = min(combos, key=score)
    shards = None
    if zarr_format == 3 and shard_bytes and math.prod(chosen) * itemsize * 4 <= shard_bytes:
        shards = _grow_shard(shape, chosen, itemsize, patterns, shard_bytes)
    costs = tuple(pattern_cost(p, chosen, itemsize, params, shards=shards) for p in patterns)
    names = [
        str(d) if d is not None else f"axis {i}" for i, d in enumerate(dims or [None] * len(shape))
    ]
    long_axes = [names[i] for i, (c, n) in enumerate(zip(chosen, shape, strict=True)) if c == n > 1]
    short_axes = [names[i] for i, c in enumerate(chosen) if c == 1 and shape[i] > 1]
    parts = [
        f"{p.pattern} (weight {p.weight:g}): {p.cost.requests} request(s), "
        f"x{p.amplification:.1f} read amplification"
        for p in costs
    ]
    reasoning = (
        f"chunks {chosen} ({math.prod(chosen) * itemsize} B, bounds {low}-{max_bytes} B) "
        f"minimise the weighted predicted time: " + "; ".join(parts)
    )
    if long_axes:
        reasoning += f"; whole along {', '.join(long_axes)}"
    if short_axes:
        reasoning += f"; one element along {', '.join(short_axes)}"
    if shards:
        reasoning += f"; shards {shards} group small chunks into fewer objects"
    return Recommendation(tuple(chosen), shards, reasoning, costs)


def _grow_shard(
    shape: Sequence[int],
    chunks: Sequence[int],
    itemsize: int,
    patterns: Sequence[AccessPattern],
    shard_bytes: int,
) -> tuple[int, ...] | None:
    """Multiply chunks along the axes the patterns read widely until ~``shard_bytes``."""
    wide = [
        any(
            sum(hi - lo for lo, hi in [s[i] for s in p.selections]) / len(p.selections) > c
            for p in patterns
        )
        for i, c in enumerate(chunks)
    ]
    shard = list(chunks)
    grown = True
    while grown and math.prod(shard) * itemsize * 2 <= shard_bytes:
        grown = False
        for i, n in enumerate(shape):
            if wide[i] and shard[i] < n and math.prod(shard) * itemsize * 2 <= shard_bytes:
                shard[i] *= 2
                grown = True
    if tuple(shard) == tuple(chunks):
        return None
    return tuple(min(s, -(-n // c) * c) for s, n, c in zip(shard, shape, chunks, strict=True))


def consistent_chunks(
    arrays: Sequence[Mapping[str, Any]],
) -> dict[str, tuple[int, ...]]:
    """Make arrays that share dimension names agree on their chunk size along them.

    *arrays* are dicts with ``path``, ``dims``, ``shape``, ``nbytes`` and ``chunks``; the
    largest array having a dimension decides its chunk size (clipped to each array's length).
    """
    decided: dict[str, int] = {}
    for a in sorted(arrays, key=lambda a: -int(a["nbytes"])):
        for dim, c in zip(a["dims"], a["chunks"], strict=True):
            if dim is not None and dim not in decided:
                decided[str(dim)] = int(c)
    out = {}
    for a in arrays:
        out[a["path"]] = tuple(
            min(decided.get(str(d), c), max(n, 1)) if d is not None else c
            for d, c, n in zip(a["dims"], a["chunks"], a["shape"], strict=True)
        )
    return out
