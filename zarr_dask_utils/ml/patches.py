"""Where each sample lies in the arrays: the sample dimension and optional N-D patches (pure).

Sample ``i`` is position ``i // P`` along the sample dimension and patch position ``i % P``
(C order over the patch dimensions).  A patch dimension of length ``n`` with patch ``size`` and
``stride`` has starts ``0, stride, …``: with ``edge="drop"`` only whole patches (the last
``n - size`` rows or columns not reached by a stride are not served), with ``edge="pad"``
patches reach every element and the part beyond the array is filled with ``pad_value``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["PatchPlan", "plan_patches"]


@dataclass(frozen=True)
class PatchPlan:
    """The samples of a dataset.

    Attributes
    ----------
    sample_dim
        Dimension that indexes samples (dropped from each sample).
    n
        Its length.
    patch_dims
        Dimensions cut into patches.
    sizes, starts
        Per patch dimension: patch length and the start of every patch position.
    """

    sample_dim: str
    n: int
    patch_dims: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    starts: tuple[tuple[int, ...], ...] = ()

    @property
    def per_position(self) -> int:
        """Patches per position along the sample dimension."""
        return math.prod(len(s) for s in self.starts)

    @property
    def total(self) -> int:
        """Number of samples."""
        return self.n * self.per_position

    def locate(self, ids: Sequence[int]) -> tuple[np.ndarray[Any, Any], list[np.ndarray[Any, Any]]]:
        """Sample-dimension positions and per-patch-dimension starts of sample *ids*."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.total):
            bad = int(arr[(arr < 0) | (arr >= self.total)][0])
            raise IndexError(f"sample {bad} is out of range: the dataset has {self.total} samples")
        per = self.per_position
        t = arr // per
        if not self.starts:
            return t, []
        coords = np.unravel_index(arr % per, [len(s) for s in self.starts])
        return t, [np.asarray(s, np.int64)[c] for s, c in zip(self.starts, coords, strict=True)]

    def patch_chunks(self, chunks: Mapping[str, int]) -> list[np.ndarray[Any, Any]]:
        """Per patch dimension, the chunk each patch position starts in."""
        return [
            np.asarray(s, np.int64) // chunks[d]
            for d, s in zip(self.patch_dims, self.starts, strict=True)
        ]


def plan_patches(
    sizes: Mapping[str, int],
    sample_dim: str,
    patch: Mapping[str, int] | None = None,
    stride: Mapping[str, int] | None = None,
    edge: Literal["drop", "pad"] = "drop",
) -> PatchPlan:
    """Validate the sampling options against the dimension *sizes* and plan the samples.

    Raises
    ------
    InvalidOptionError
        A dimension that does not exist, patches larger than their dimension (``"drop"``),
        sizes or strides below 1, an unknown *edge*.
    """
    if sample_dim not in sizes:
        raise InvalidOptionError(
            f"sample_dim={sample_dim!r} is not a dimension of the data: its dimensions are "
            f"{sorted(sizes)}. Pass one of them (for a zarr array without dimension names, "
            "the axis number: sample_dim=0)."
        )
    if edge not in ("drop", "pad"):
        raise InvalidOptionError(f"edge must be 'drop' or 'pad', got {edge!r}.")
    patch = dict(patch or {})
    stride = dict(stride or {})
    unknown = [d for d in [*patch, *stride] if d not in sizes or d == sample_dim]
    if unknown or set(stride) - set(patch):
        raise InvalidOptionError(
            f"patch/stride name {sorted(set(unknown) | (set(stride) - set(patch)))} but the "
            f"patch dimensions must be dimensions other than {sample_dim!r} among "
            f"{sorted(sizes)}, and every stride needs a patch size."
        )
    dims, lengths, starts = [], [], []
    for dim, size in patch.items():
        step = stride.get(dim, size)
        if size < 1 or step < 1:
            raise InvalidOptionError(
                f"patch and stride must be 1 or more; {dim!r}: {size}, {step}."
            )
        n = sizes[dim]
        last = n - 1 if edge == "pad" else n - size
        if last < 0:
            raise InvalidOptionError(
                f"patch {dim}={size} is larger than the dimension ({n}): make it at most {n}, "
                "or pass edge='pad' to pad patches beyond the edge."
            )
        dims.append(dim)
        lengths.append(int(size))
        starts.append(tuple(range(0, last + 1, step)))
    return PatchPlan(sample_dim, sizes[sample_dim], tuple(dims), tuple(lengths), tuple(starts))
