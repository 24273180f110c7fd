"""Block shapes of a rechunk plan: aligned direct-copy blocks and stages split across threads.

Pure helpers of :func:`zarr_dask_utils.optimize.plan.plan_rechunk` (ints and tuples in and
out, no I/O): :func:`aligned_block` finds a direct copy rechunker's plan can miss,
:func:`spread_stage` splits a stage's blocks so every thread gets work without reading more.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

__all__ = ["aligned_block", "split_sizes", "spread_stage"]


def aligned_block(
    shape: tuple[int, ...],
    itemsize: int,
    source_chunks: tuple[int, ...],
    write_unit: tuple[int, ...],
    max_mem: int,
) -> tuple[int, ...] | None:
    """The largest block within *max_mem* made of whole source chunks *and* whole write units.

    Rechunker's plan grows the write chunks from the target's side only, so it can miss a
    direct copy that reads every source chunk once: ``(256, 16, 16) -> (1, 128, 512)`` under
    64 MiB gets write blocks ``(64, 512, 512)`` (each source chunk read 4x, hence two stages)
    while ``(256, 128, 512)`` holds whole chunks of both.  Per axis the least common multiple
    of the two chunk sizes (or the whole axis), then grown by whole multiples up to *max_mem*
    (rechunker's ``consolidate_chunks``); ``None`` when even that smallest block is too big.
    """
    if not shape or 0 in shape:
        return None
    smallest = tuple(
        min(math.lcm(c, w), n) for c, w, n in zip(source_chunks, write_unit, shape, strict=True)
    )
    if math.prod(smallest) * itemsize > max_mem:
        return None
    from rechunker.algorithm import consolidate_chunks

    return tuple(int(b) for b in consolidate_chunks(shape, smallest, itemsize, max_mem))


def split_sizes(size: int) -> Iterator[int]:
    """Proper divisors of *size*, largest first."""
    small = [k for k in range(1, math.isqrt(size) + 1) if size % k == 0]
    sizes = {size // k for k in small} | set(small)
    yield from sorted(sizes - {size}, reverse=True)


def spread_stage(
    shape: tuple[int, ...],
    block: list[int],
    reads: list[int],
    writes: list[int],
    min_blocks: int,
    *,
    temp: str | None,
    other_block: Sequence[int] | None = None,
) -> None:
    """Split one stage's *block* (in place) until the stage has *min_blocks* tasks, if it can.

    Along an axis a block shrinks to a divisor of its size that is a whole multiple of the
    chunks the stage reads there (read amplification along that axis becomes 1, the least)
    and of the objects it writes (every task writes whole objects).  The intermediate copy's
    chunk (*temp*: ``"reads"`` or ``"writes"``, which side of this stage it is) may instead
    shrink to the new size when it is a multiple of it: the other stage's blocks
    (*other_block*) must stay whole multiples of it, and read no more than before, as a
    chunk grid that refines the old one only removes boundaries' rounding.  Each step takes
    the split that keeps the intermediate chunk largest, then the block largest.
    """
    while math.prod(max(-(-n // b), 1) for n, b in zip(shape, block, strict=True)) < min_blocks:
        best: tuple[tuple[int, int], int, int] | None = None
        for axis in range(len(shape)):
            for size in split_sizes(block[axis]):
                ok, shrinks = True, False
                for side, chunks in (("reads", reads), ("writes", writes)):
                    if size % chunks[axis] == 0:
                        continue
                    shrinks = temp == side and chunks[axis] % size == 0
                    ok = ok and shrinks
                if shrinks and other_block is not None and other_block[axis] % size:
                    ok = False
                if not ok:
                    continue
                inter = reads if temp == "reads" else writes
                kept = math.prod(inter) // inter[axis] * min(inter[axis], size)
                if best is None or (kept, size) > best[0]:
                    best = ((kept, size), axis, size)
                break  # the largest valid size on this axis
        if best is None:
            return
        _, axis, size = best
        block[axis] = size
        for side, chunks in (("reads", reads), ("writes", writes)):
            if temp == side:
                chunks[axis] = min(chunks[axis], size)
