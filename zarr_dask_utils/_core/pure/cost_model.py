"""Pure cost model: chunks touched, requests and bytes of a selection, and predicted time.

Counts follow what zarr-python 3 does: one ``get`` per chunk touched (missing chunks too);
for a sharded array, one ``get`` of the whole shard when every inner chunk of the shard is
selected, else one request for the shard index plus one per inner chunk touched.  Stored
chunks are always whole (edge chunks are padded), so bytes read count whole chunks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from zarr_dask_utils._core.pure.access_patterns import AccessPattern

__all__ = [
    "Calibration",
    "CostParams",
    "PatternCost",
    "SelectionCost",
    "as_cost_params",
    "pattern_cost",
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


@runtime_checkable
class Calibration(Protocol):
    """Anything that measured a store and can say its cost-model parameters.

    The calibration hook of the estimators: a ``StoreBenchmark`` (``benchmark_store``) passed
    as ``params=`` calibrates the estimate on the store the user has.
    """

    def cost_params(self) -> CostParams:
        """The measured parameters."""
        ...


def as_cost_params(params: CostParams | Calibration | Mapping[str, Any]) -> CostParams:
    """Parameters from a :class:`CostParams`, a :class:`Calibration` or a mapping of fields.

    Examples
    --------
    >>> as_cost_params({"latency": 0.5}).source
    'given'
    """
    if isinstance(params, CostParams):
        return params
    if isinstance(params, Calibration):
        return params.cost_params()
    return CostParams(**{"source": "given", **dict(params)})


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
