"""Pure chunk choice: which chunk (and shard) shape to propose for an array.

Used by ``analyze_chunks`` (:func:`recommend_chunks`, :func:`consistent_chunks`: the shape that
minimises the :mod:`~zarr_dask_utils._core.pure.cost_model` time of the access patterns) and by the
doctor (:func:`suggest_chunks`: today's chunks scaled towards a target size); conversion and ML
loaders choose their target chunks here too.  No I/O and no Dask.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zarr_dask_utils._core.pure.access_patterns import AccessPattern
from zarr_dask_utils._core.pure.cost_model import CostParams, PatternCost, pattern_cost

__all__ = ["Recommendation", "consistent_chunks", "recommend_chunks", "suggest_chunks"]


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


def suggest_chunks(
    shape: Sequence[int], chunks: Sequence[int], itemsize: int, target: int
) -> tuple[int, ...]:
    """Scale *chunks* towards *target* bytes, keeping their proportions, within *shape*.

    Growing multiplies every axis by the same factor (capped at the axis length; the slack of
    capped axes goes to the others); shrinking divides the longest chunk axes first.
    """
    new = [max(1, min(int(c), int(s))) for c, s in zip(chunks, shape, strict=True)]
    want = max(1, target // max(itemsize, 1))
    for _ in range(len(new) * 4):
        size = math.prod(new)
        if size == want:
            break
        open_axes = [i for i, (c, s) in enumerate(zip(new, shape, strict=True)) if c < s]
        if size < want:
            if not open_axes:
                break
            factor = (want / size) ** (1 / len(open_axes))
            if factor < 1.01:
                break
            for i in open_axes:
                new[i] = min(int(shape[i]), max(new[i] + 1, round(new[i] * factor)))
        else:
            i = max(range(len(new)), key=lambda k: new[k])
            if new[i] == 1:
                break
            new[i] = max(1, math.ceil(new[i] * want / size))
    return tuple(new)
