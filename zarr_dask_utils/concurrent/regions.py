"""Pure planning for concurrent writes: regions → storage keys → locks.

The unit a writer must lock is the **storage key**: the shard when the array is sharded
(writing part of a shard rewrites the whole shard object), the chunk otherwise.  Everything here
is ints, tuples and strings in, frozen dataclasses out: no zarr I/O, no Dask, no clock.

A storage block is *fully covered* by a region when the region contains every element of the
block that lies inside the array (edge blocks are clipped to the array shape).  Writing a fully
covered block needs no read-modify-write, so it needs no lock: two writers covering the same
block completely race only on which complete value wins, never on a partial merge.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = [
    "BlockAlignment",
    "RegionPlan",
    "block_alignment",
    "block_range",
    "lock_name",
    "lock_names",
    "normalize_region",
    "plan_region",
    "region_shape",
]

Region = tuple[slice, ...]
Index = tuple[int, ...]


def normalize_region(region: Any, shape: Sequence[int], *, where: str = "the array") -> Region:
    """Turn *region* into one ``slice(start, stop)`` per dimension, checked against *shape*.

    Parameters
    ----------
    region
        ``None`` (the whole array), a slice, or a tuple of slices (step 1) and ``Ellipsis``;
        missing trailing dimensions mean "all of it".  Negative bounds count from the end.
    shape
        Shape of the target array.
    where
        How to name the array in error messages.

    Returns
    -------
    tuple of slice
        Concrete, non-negative ``start`` and ``stop`` for every dimension.

    Raises
    ------
    InvalidOptionError
        For non-slice entries, steps other than 1, empty or out-of-bounds ranges.
    """
    ndim = len(shape)
    if region is None:
        items: list[Any] = []
    elif isinstance(region, slice):
        items = [region]
    elif isinstance(region, tuple | list):
        items = list(region)
    else:
        raise InvalidOptionError(
            f"The region for {where} must be a tuple of slices, got {type(region).__name__} "
            f"{region!r}. Pass e.g. (slice(0, 10), slice(5, 20))."
        )
    if items.count(Ellipsis) > 1:
        raise InvalidOptionError(f"The region for {where} has more than one '...'.")
    if Ellipsis in items:
        pos = items.index(Ellipsis)
        fill = ndim - (len(items) - 1)
        items = items[:pos] + [slice(None)] * max(fill, 0) + items[pos + 1 :]
    if len(items) > ndim:
        raise InvalidOptionError(
            f"The region for {where} has {len(items)} dimensions, but the array has {ndim} "
            f"(shape {tuple(shape)}). Give at most one slice per dimension."
        )
    items += [slice(None)] * (ndim - len(items))
    out = []
    for dim, (item, size) in enumerate(zip(items, shape, strict=True)):
        if not isinstance(item, slice):
            raise InvalidOptionError(
                f"The region for {where} must hold slices only; dimension {dim} is "
                f"{item!r}. Use slice({item!r}, {item!r} + 1) for a single index."
            )
        if item.step not in (None, 1):
            raise InvalidOptionError(
                f"The region for {where} has step {item.step} in dimension {dim}; only "
                "contiguous regions (step 1) can be written safely."
            )
        start = 0 if item.start is None else int(item.start)
        stop = size if item.stop is None else int(item.stop)
        start = start + size if start < 0 else start
        stop = stop + size if stop < 0 else stop
        if not 0 <= start < stop <= size:
            raise InvalidOptionError(
                f"The region for {where} is out of bounds or empty in dimension {dim}: "
                f"{item.start}:{item.stop} resolves to {start}:{stop}, but the dimension has "
                f"length {size}. Pass a non-empty range inside 0:{size}."
            )
        out.append(slice(start, stop))
    return tuple(out)


def region_shape(region: Region) -> tuple[int, ...]:
    """Shape of a normalized region."""
    return tuple(s.stop - s.start for s in region)


def block_range(start: int, stop: int, block: int) -> range:
    """Indices of the blocks of size *block* that ``start:stop`` touches."""
    return range(start // block, (stop - 1) // block + 1)


def _covers(region: Region, index: Index, shape: Sequence[int], grid: Sequence[int]) -> bool:
    for s, i, size, block in zip(region, index, shape, grid, strict=True):
        lo, hi = i * block, min((i + 1) * block, size)
        if s.start > lo or s.stop < hi:
            return False
    return True


@dataclass(frozen=True)
class RegionPlan:
    """The storage keys one region write touches, and which of them need a lock.

    Attributes
    ----------
    region
        The normalized region.
    keys
        Every touched storage key, sorted.
    partial_keys
        Keys only partly covered (read-modify-write): these are locked, in this sorted order.
    full_keys
        Keys fully covered (written whole, no lock needed).
    """

    region: Region
    keys: tuple[str, ...]
    partial_keys: tuple[str, ...]
    full_keys: tuple[str, ...]

    @property
    def aligned(self) -> bool:
        """``True`` when no key needs a read-modify-write."""
        return not self.partial_keys


def plan_region(
    region: Region,
    shape: Sequence[int],
    grid: Sequence[int],
    encode_key: Callable[[Index], str],
) -> RegionPlan:
    """List the storage keys *region* touches and which need a read-modify-write.

    Parameters
    ----------
    region
        A normalized region (:func:`normalize_region`).
    shape
        Array shape.
    grid
        Storage block shape: the shard shape when sharded, the chunk shape otherwise.
    encode_key
        Maps a block index to its store key (e.g. ``"t2m/c/0/4"``); a pure function.

    Returns
    -------
    RegionPlan
    """
    ranges = [block_range(s.start, s.stop, b) for s, b in zip(region, grid, strict=True)]
    full: list[str] = []
    partial: list[str] = []
    for index in itertools.product(*ranges):
        key = encode_key(index)
        (full if _covers(region, index, shape, grid) else partial).append(key)
    return RegionPlan(
        region, tuple(sorted(full + partial)), tuple(sorted(partial)), tuple(sorted(full))
    )


def lock_name(url: str, key: str) -> str:
    """The cluster-wide lock name of one storage key: ``zdu-lock/<store url>/<key>``.

    *url* must already be free of credentials (use ``Location.display``).
    """
    return f"zdu-lock/{url.rstrip('/')}/{key}"


def lock_names(url: str, keys: Sequence[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated lock names of *keys* (the deadlock-free acquisition order)."""
    return tuple(sorted({lock_name(url, k) for k in keys}))


@dataclass(frozen=True)
class BlockAlignment:
    """How the blocks of a Dask array map onto the storage keys of the target.

    Attributes
    ----------
    n_blocks
        Number of Dask blocks written.
    n_keys
        Number of storage blocks touched.
    misaligned_blocks
        Block indices whose edges are not on storage-block boundaries (or the array end).
    shared_keys
        Storage block indices written by more than one Dask block: parallel writes of these
        race (read-modify-write) and lose updates unless locked.
    """

    n_blocks: int
    n_keys: int
    misaligned_blocks: tuple[Index, ...]
    shared_keys: tuple[Index, ...]

    @property
    def aligned(self) -> bool:
        """``True`` when no storage block is written by two Dask blocks."""
        return not self.shared_keys


def block_alignment(
    block_chunks: Sequence[Sequence[int]],
    offset: Sequence[int],
    shape: Sequence[int],
    grid: Sequence[int],
) -> BlockAlignment:
    """Check the blocks of a Dask array written at *offset* against a storage grid.

    Parameters
    ----------
    block_chunks
        ``dask_array.chunks``: block sizes per dimension.
    offset
        Where the Dask array starts in the target (the region start; zeros for a whole write).
    shape
        Target array shape.
    grid
        Storage block shape of the target (shard shape when sharded).

    Returns
    -------
    BlockAlignment
    """
    edges_per_dim: list[list[tuple[int, int]]] = []
    for sizes, off in zip(block_chunks, offset, strict=True):
        starts = list(itertools.accumulate([off, *sizes]))
        edges_per_dim.append(list(itertools.pairwise(starts)))
    owners: dict[Index, int] = {}
    misaligned = []
    n_blocks = 0
    for bindex in itertools.product(*[range(len(e)) for e in edges_per_dim]):
        spans = [edges_per_dim[d][i] for d, i in enumerate(bindex)]
        if any(hi <= lo for lo, hi in spans):
            continue  # an empty block writes nothing
        n_blocks += 1
        ok = all(
            (lo % b == 0 or lo == size) and (hi % b == 0 or hi == size)
            for (lo, hi), b, size in zip(spans, grid, shape, strict=True)
        )
        if not ok:
            misaligned.append(bindex)
        for key in itertools.product(
            *[block_range(lo, hi, b) for (lo, hi), b in zip(spans, grid, strict=True)]
        ):
            owners[key] = owners.get(key, 0) + 1
    shared = tuple(sorted(k for k, n in owners.items() if n > 1))
    return BlockAlignment(n_blocks, len(owners), tuple(misaligned), shared)
