"""What planning needs of one array, and fitting a selection to a byte budget.

Shared by the profiling feature (``benchmark_store``) and the cloud feature
(``optimize_s3_access``): both plan reads of the user's arrays from an :class:`ArraySpec`
(shape, chunks, shards, item size, dimension names), never from the array itself.  Pure: the
hierarchy nodes are already walked; no I/O, no Dask, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from zarr_dask_utils._core.pure.access_patterns import time_axis
from zarr_dask_utils._core.pure.cost_model import selection_cost

__all__ = ["ArraySpec", "Selection", "array_specs", "fit_selection"]

Selection = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """What planning needs of one array (from the hierarchy walk)."""

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    itemsize: int
    shards: tuple[int, ...] | None = None
    dims: tuple[str | None, ...] | None = None

    @property
    def nbytes(self) -> int:
        """Decoded size of the whole array."""
        return math.prod(self.shape) * self.itemsize


def array_specs(nodes: Iterable[Any]) -> list[ArraySpec]:
    """An :class:`ArraySpec` per walked array node with a fixed item size and chunks.

    *nodes* are the ``arrays`` of a hierarchy walk (objects with ``path``, ``dtype``,
    ``shape``, ``chunks``, ``shards`` and ``dimension_names``); variable-length and
    zero-size dtypes and scalar arrays are left out.

    Examples
    --------
    >>> from types import SimpleNamespace as N
    >>> a = N(path="t", dtype="f4", shape=(4,), chunks=(2,), shards=None, dimension_names=None)
    >>> array_specs([a])[0].nbytes
    16
    """
    specs = []
    for node in nodes:
        try:
            itemsize = int(np.dtype(node.dtype).itemsize)
        except TypeError:
            continue  # variable-length strings: no fixed bytes per element
        if not node.shape or not node.chunks or itemsize == 0 or np.dtype(node.dtype) == object:
            continue
        specs.append(
            ArraySpec(
                node.path,
                tuple(node.shape),
                tuple(node.chunks),
                itemsize,
                tuple(node.shards) if node.shards else None,
                tuple(node.dimension_names) if node.dimension_names else None,
            )
        )
    return specs


def fit_selection(sel: Selection, spec: ArraySpec, budget: int) -> tuple[Selection, bool]:
    """Shrink *sel* along its time axis until reading it stays under *budget* stored bytes.

    The cut stays on chunk boundaries (whole chunks are read anyway); at least one chunk
    along the axis is kept.  Returns the selection and whether it was cut.
    """
    cost = selection_cost(sel, spec.chunks, spec.itemsize, shards=spec.shards)
    if cost.bytes_decoded <= budget or not sel:
        return sel, False
    axis = time_axis(spec.dims)
    lo, hi = sel[axis]
    step = (spec.shards or spec.chunks)[axis]
    keep = max(1, math.floor((hi - lo) * budget / max(cost.bytes_decoded, 1)))
    keep = max(step, keep // step * step)
    fitted = tuple((lo, min(hi, lo + keep)) if i == axis else s for i, s in enumerate(sel))
    return fitted, fitted != sel
