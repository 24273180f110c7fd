"""How random a sample order is, measured against chunk membership (pure).

Two samples of one batch that come from the same chunk are correlated the way a chunk-aligned
loader correlates them.  :func:`chunk_mixing` compares the fraction of such pairs in an
order's batches with what a full shuffle gives on average.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["MixingScore", "chunk_mixing"]


@dataclass(frozen=True)
class MixingScore:
    """Chunk correlation of batches.

    Attributes
    ----------
    same_chunk_pairs
        Fraction of sample pairs inside a batch that share a chunk (1: chunk-aligned).
    full_shuffle_pairs
        The same fraction expected for a full shuffle.
    randomness
        ``(1 - same_chunk_pairs) / (1 - full_shuffle_pairs)``: 1 mixes chunks like a full
        shuffle, 0 like reading chunk by chunk.
    """

    same_chunk_pairs: float
    full_shuffle_pairs: float
    randomness: float

    def to_dict(self) -> dict[str, float]:
        """JSON-safe form."""
        return asdict(self)


def chunk_mixing(
    order: np.ndarray[Any, Any], chunk_of: np.ndarray[Any, Any], batch_size: int
) -> MixingScore:
    """Score *order* cut into batches of *batch_size*; ``chunk_of[i]`` is sample i's chunk.

    Examples
    --------
    >>> chunk_of = np.repeat(np.arange(4), 8)
    >>> chunk_mixing(np.arange(32), chunk_of, 8).randomness
    0.0
    """
    order = np.asarray(order)
    chunks = np.asarray(chunk_of)[order]
    same = pairs = 0
    for start in range(0, len(chunks), batch_size):
        _, counts = np.unique(chunks[start : start + batch_size], return_counts=True)
        n = int(counts.sum())
        same += int((counts * (counts - 1)).sum())
        pairs += n * (n - 1)
    f = same / pairs if pairs else 0.0
    _, sizes = np.unique(np.asarray(chunk_of), return_counts=True)
    total = int(sizes.sum())
    f_rand = float((sizes * (sizes - 1)).sum()) / (total * (total - 1)) if total > 1 else 0.0
    randomness = (1.0 - f) / (1.0 - f_rand) if f_rand < 1 else 1.0
    return MixingScore(round(f, 4), round(f_rand, 4), round(randomness, 4))
