"""Value comparison of two arrays: element counts, largest difference, per storage chunk.

Arrays stored with the same chunking are compared chunk by chunk (``compare_batch_task`` in
:mod:`~zarr_dask_utils.integrity.compare`).  A rechunked or converted copy is not: reading,
for each chunk of one side, the region it covers on the other would read every chunk of the
other side many times over (64 times for a time-major copy of a space-major array).  Instead
:func:`value_diff_tasks` reads both sides once as Dask arrays, in blocks made of whole storage
chunks (decoded directly where the chain allows, :class:`DirectBlockReader`), lets Dask
rechunk the second side to the first side's blocks, and compares block by block, per storage
chunk of the first side (whose keys the report names).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dask.delayed import Delayed, delayed

from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.decoding.block_reader import DirectBlockReader
from zarr_dask_utils._core.pure.chunkgrid import ArrayGrid
from zarr_dask_utils._core.pure.inventory import MAX_LISTED
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.heap import heap_allocations
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils.integrity.tolerant_blocks import (
    Box,
    Unreadable,
    overlapping_blocks,
    tolerant_blocks,
)

__all__ = [
    "ArrayDiff",
    "compare_values",
    "bitwise_equal",
    "diff_block",
    "merge_diffs",
    "value_diff_tasks",
]


def compare_values(
    x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], *, rtol: float, atol: float
) -> tuple[int, float]:
    """Number of differing elements and the largest absolute difference (NaN equals NaN)."""
    if x.shape != y.shape:
        return max(x.size, y.size), math.inf
    if x.dtype.kind in "biufc" and y.dtype.kind in "biufc":
        floats = bool({"f", "c"} & {x.dtype.kind, y.dtype.kind})
        if np.array_equal(x, y, equal_nan=floats):  # the common case, in one pass
            return 0, 0.0
        if rtol == 0 and atol == 0:  # exact: no float64 copies
            differ = x != y
            if floats:
                differ &= ~(np.isnan(x) & np.isnan(y))  # NaN equals NaN
        else:
            xf, yf = (
                x.astype(np.complex128 if "c" in x.dtype.kind + y.dtype.kind else np.float64),
                y,
            )
            differ = ~np.isclose(xf, yf, rtol=rtol, atol=atol, equal_nan=True)
        n = int(np.count_nonzero(differ))
        if n == 0:
            return 0, 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            gap = np.abs(
                x[differ].astype(
                    np.complex128 if "c" in x.dtype.kind + y.dtype.kind else np.float64
                )
                - y[differ]
            )
        gap = np.where(np.isnan(gap), math.inf, gap)
        return n, float(gap.max())
    n = int(np.count_nonzero(x != y))
    return n, 0.0 if n == 0 else math.nan


@dataclass
class ArrayDiff:
    """Chunk comparison of one array (partial per task, merged in the reduction)."""

    chunks_compared: int = 0
    chunks_differing: int = 0
    keys: list[str] = field(default_factory=list)
    elements_differing: int = 0
    max_abs_diff: float = 0.0
    chunks_unreadable: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, reason), bounded

    def record(self, key: str, differing: int, gap: float) -> None:
        """Fold in one compared chunk: *differing* elements, largest |a-b| *gap* (NaN: n/a)."""
        self.chunks_compared += 1
        if not differing:
            return
        self.chunks_differing += 1
        self.elements_differing += differing
        if not math.isnan(gap):
            self.max_abs_diff = max(self.max_abs_diff, gap)
        if len(self.keys) < MAX_LISTED:
            self.keys.append(key)

    def record_unreadable(self, key: str, reason: str) -> None:
        """Fold in a chunk whose values could not be read on one side (*reason* says which)."""
        self.chunks_unreadable += 1
        if len(self.unreadable) < MAX_LISTED:
            self.unreadable.append((key, reason))

    def merge(self, other: ArrayDiff) -> None:
        """Fold another partial result in."""
        self.chunks_unreadable += other.chunks_unreadable
        self.unreadable = (self.unreadable + other.unreadable)[:MAX_LISTED]
        self.chunks_compared += other.chunks_compared
        self.chunks_differing += other.chunks_differing
        self.keys = (self.keys + other.keys)[:MAX_LISTED]
        self.elements_differing += other.elements_differing
        self.max_abs_diff = max(self.max_abs_diff, other.max_abs_diff)


def merge_diffs(*parts: Mapping[str, ArrayDiff]) -> dict[str, ArrayDiff]:
    """Tree-reduction step."""
    total: dict[str, ArrayDiff] = {}
    for part in parts:
        for path, diff in part.items():
            total.setdefault(path, ArrayDiff()).merge(diff)
    return total


def bitwise_equal(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """``True`` when two arrays of one dtype and shape hold the same bytes (then equal values).

    ``False`` proves nothing (``-0.0`` vs ``0.0``, NaN payloads, other layouts): compare values.
    """
    if a.dtype != b.dtype or a.shape != b.shape or a.dtype.hasobject:
        return False
    if not (a.flags.c_contiguous and b.flags.c_contiguous):
        return False
    x, y = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)
    if x.size % 8 == 0:
        x, y = x.view(np.uint64), y.view(np.uint64)
    return bool(np.array_equal(x, y))


def _excluded(
    origin: Sequence[int], shape: Sequence[int], boxes: Sequence[Box]
) -> np.ndarray[Any, Any] | None:
    """``True`` where the block at *origin* lies in an unread *box*; ``None`` if nowhere."""
    mask: np.ndarray[Any, Any] | None = None
    for box in boxes:
        local = tuple(
            slice(max(lo, o) - o, min(hi, o + n) - o)
            for (lo, hi), o, n in zip(box, origin, shape, strict=True)
        )
        if any(s.stop <= s.start for s in local):
            continue
        if mask is None:
            mask = np.zeros(tuple(shape), dtype=bool)
        mask[local] = True
    return mask


def diff_block(
    a: np.ndarray[Any, Any],
    b: np.ndarray[Any, Any],
    origin: Sequence[int],
    grid: ArrayGrid,
    path: str,
    rtol: float,
    atol: float,
    heap_threshold: int | None = None,
    unreadable_a: Sequence[Unreadable] = (),
    unreadable_b: Sequence[Sequence[Unreadable]] = (),
) -> dict[str, ArrayDiff]:
    """Worker task: compare two blocks starting at *origin*, per storage chunk of *grid*.

    *unreadable_a* are the undecodable chunks of the first side in this block;
    *unreadable_b* those of the second side's blocks overlapping it.  Their elements are not
    compared; each is recorded once (a second-side chunk by the block holding its start).
    """
    diff = ArrayDiff()
    for key, reason, _ in unreadable_a:
        diff.record_unreadable(key, reason)
    boxes = [box for _, _, box in unreadable_a]
    for part in unreadable_b:
        for key, reason, box in part:
            boxes.append(box)
            if all(o <= lo < o + n for (lo, _), o, n in zip(box, origin, a.shape, strict=True)):
                diff.record_unreadable(key, reason)
    excluded = _excluded(origin, a.shape, boxes) if boxes else None
    same = bitwise_equal(a, b)  # one fast pass proves most blocks equal
    spans = [
        range(o // c, -(-(o + n) // c))
        for o, n, c in zip(origin, a.shape, grid.chunks, strict=True)
    ]
    with heap_allocations(heap_threshold):  # comparison temporaries: heap, not fresh mmaps
        for coords in itertools.product(*spans):
            region = tuple(
                slice(max(i * c, o) - o, min((i + 1) * c, o + n) - o)
                for i, c, o, n in zip(coords, grid.chunks, origin, a.shape, strict=True)
            )
            x, y = a[region], b[region]
            if excluded is not None and excluded[region].any():
                keep = ~excluded[region]
                if not keep.any():
                    continue  # nothing of this chunk could be read: recorded as unreadable
                x, y = x[keep], y[keep]
            differing, gap = (0, 0.0) if same else compare_values(x, y, rtol=rtol, atol=atol)
            diff.record(join_key(path, grid.key(coords)), differing, gap)
    return {path: diff}


def value_diff_tasks(
    loc_a: Location,
    loc_b: Location,
    path: str,
    formats: tuple[int, int],
    *,
    rtol: float,
    atol: float,
    block_bytes: int,
    heap_threshold: int | None = None,
) -> list[Delayed]:
    """Tasks comparing the values of the array at *path* in both stores, block by block.

    Each returns ``{path: ArrayDiff}``; blocks are whole storage chunks (shards) of the first
    side and at most about *block_bytes*.  The second side is read in its own chunks and
    rechunked by Dask, so every stored object is read once.  A chunk that cannot be decoded,
    on either side, is recorded as unreadable and the comparison goes on around it
    (:mod:`~zarr_dask_utils.integrity.tolerant_blocks`).
    """
    reader_a, reader_b = (
        DirectBlockReader(loc, path, fmt, heap_threshold)
        for loc, fmt in zip((loc_a, loc_b), formats, strict=True)
    )
    grid = reader_a.grid
    side_a, unreadable_a = tolerant_blocks(reader_a, "a", block_bytes)
    side_b, unreadable_b = tolerant_blocks(reader_b, "b", block_bytes)
    rechunked_b = side_b.rechunk(side_a.chunks)
    starts = [np.cumsum((0, *c[:-1])).tolist() for c in side_a.chunks]
    blocks_a = side_a.to_delayed().ravel()
    blocks_b = rechunked_b.to_delayed().ravel()
    indices = list(itertools.product(*(range(len(c)) for c in side_a.chunks)))
    tasks = []
    for x, y, idx in zip(blocks_a, blocks_b, indices, strict=True):
        origin = tuple(s[i] for s, i in zip(starts, idx, strict=True))
        box = tuple((o, o + c[i]) for o, c, i in zip(origin, side_a.chunks, idx, strict=True))
        tasks.append(
            delayed(diff_block, pure=False)(
                x,
                y,
                origin,
                grid,
                path,
                rtol,
                atol,
                heap_threshold,
                unreadable_a[idx],
                [unreadable_b[j] for j in overlapping_blocks(side_b.chunks, box)],
                dask_key_name=task_name("compare-values"),
            )
        )
    return tasks
