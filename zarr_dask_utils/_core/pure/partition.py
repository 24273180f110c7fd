"""Pure partitioning of stored objects into batches (one task each) and of arrays into blocks.

No I/O and no Dask: object counts, sizes and shapes in, batches and block shapes out.  Every
feature that runs one task per batch of chunk keys (integrity scans and manifests, comparisons;
profiling, cloud copies and conversion next) cuts its work here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Segment",
    "aligned_block",
    "batch_bounds",
    "largest_first",
    "partition_keys",
    "plan_batches",
    "two_rounds",
]


@dataclass(frozen=True, slots=True)
class Segment:
    """Objects ``start <= index < stop`` (C order over the storage grid) of one array."""

    path: str
    start: int
    stop: int


def batch_bounds(total: int, batch_bytes: int, parallelism: int = 1) -> list[int]:
    """Byte offsets where batches end, for *total* bytes run by *parallelism* threads.

    The number of batches is the smallest that keeps them under *batch_bytes*, rounded up to
    a multiple of *parallelism* (so every thread gets the same work) unless that would make
    batches smaller than a quarter of *batch_bytes*.  With several threads each batch of the
    last round is cut into a half and two quarters: run largest first, threads that finish
    early take the small pieces, so the run ends within a quarter batch of its ideal time even
    when the scheduler has handed one thread an extra batch ahead of time.

    Examples
    --------
    >>> batch_bounds(800, 100, parallelism=1)
    [100, 200, 300, 400, 500, 600, 700, 800]
    >>> batch_bounds(800, 100, parallelism=2)
    [100, 200, 300, 400, 500, 600, 650, 675, 700, 750, 775, 800]
    """
    if total <= 0:
        return []
    count = -(-total // max(1, batch_bytes))
    if parallelism > 1:
        rounded = -(-count // parallelism) * parallelism
        if total // rounded >= batch_bytes // 4:
            count = rounded
    bounds = [(k + 1) * total // count for k in range(count)]
    if parallelism > 1 and count >= 2 * parallelism:
        head, tail = bounds[:-parallelism], bounds[-parallelism - 1 :]
        cuts = [a + (b - a) * k // 4 for a, b in itertools.pairwise(tail) for k in (2, 3)]
        bounds = head + sorted(cuts + tail[1:])
    return bounds


def two_rounds(total: int, batch_bytes: int, parallelism: int) -> int:
    """The batch size to plan *total* bytes with: at least two rounds per thread when possible.

    A scan smaller than two full rounds of *batch_bytes* per thread would run as one batch per
    thread, so a thread held up by something else (the listing that runs beside the scan)
    leaves the others idle at the end.  Two rounds let :func:`batch_bounds` cut the last one
    into pieces the free threads take; batches never shrink below an eighth of *batch_bytes*
    (each task costs a scheduling round trip and opening the array).

    Examples
    --------
    >>> two_rounds(256, 128, parallelism=2)  # 4 batches of 64, the last round cut
    64
    >>> two_rounds(2048, 128, parallelism=2), two_rounds(40, 128, parallelism=2)
    (128, 16)
    >>> two_rounds(256, 128, parallelism=1)
    128
    """
    if parallelism <= 1:
        return batch_bytes
    return max(min(batch_bytes, total // (2 * parallelism)), batch_bytes // 8, 1)


def aligned_block(
    shape: Sequence[int], chunks: Sequence[int], itemsize: int, limit: int
) -> tuple[int, ...]:
    """A block shape made of whole *chunks*, at most about *limit* bytes (at least one chunk).

    Grows the last dimensions first (contiguous in C order), doubling the chunks per block
    while it fits, never beyond the array.

    Examples
    --------
    >>> aligned_block((512, 256, 256), (512, 32, 32), 4, 32 * 2**20)
    (512, 128, 128)
    >>> aligned_block((100,), (10,), 8, 1)
    (10,)
    """
    block = [min(c, s) if s else c for c, s in zip(chunks, shape, strict=True)]
    grown = True
    while grown:
        grown = False
        for d in reversed(range(len(block))):
            bigger = min(block[d] * 2, max(shape[d], block[d]))
            if bigger == block[d]:
                continue
            if math.prod(block[:d]) * bigger * math.prod(block[d + 1 :]) * itemsize > limit:
                continue
            block[d] = bigger
            grown = True
    return tuple(block)


def plan_batches(
    arrays: Mapping[str, tuple[int, int]], batch_bytes: int, parallelism: int = 1
) -> list[tuple[Segment, ...]]:
    """Split every array's objects into batches of at most about *batch_bytes* bytes.

    Batches are cut at the byte offsets of :func:`batch_bounds` over the concatenated arrays
    (sorted by path); an object belongs to the batch its first byte falls in, so small arrays
    share a batch.  Run them in order: the small ones of the last round come last.

    Parameters
    ----------
    arrays
        Array path → (number of objects in the grid, uncompressed bytes per object).
    batch_bytes
        Largest uncompressed bytes per batch (one task each), give or take one object.
    parallelism
        Threads that will run the batches.

    Returns
    -------
    list of tuple of Segment
        Every object of every array exactly once, in path and index order.
    """
    items = [(path, arrays[path][0], max(1, arrays[path][1])) for path in sorted(arrays)]
    items = [item for item in items if item[1] > 0]
    total = sum(n * per for _, n, per in items)
    bounds = batch_bounds(total, batch_bytes, parallelism)
    batches: list[list[Segment]] = [[] for _ in bounds]
    offset = 0
    k = 0
    for path, n, per in items:
        j = 0
        while j < n:
            while bounds[k] <= offset + j * per:  # the batch this object's first byte is in
                k += 1
            # objects of batch k start below bounds[k]
            stop = min(n, max(j + 1, -(-(bounds[k] - offset) // per)))
            batches[k].append(Segment(path, j, stop))
            j = stop
        offset += n * per
    return [tuple(b) for b in batches if b]


def largest_first(
    batches: Sequence[tuple[Segment, ...]], arrays: Mapping[str, tuple[int, int]]
) -> list[tuple[Segment, ...]]:
    """*batches* by uncompressed bytes, largest first (ties keep their order).

    The order to run them in: the small pieces :func:`batch_bounds` cuts for the last round
    come last.  *arrays* is what :func:`plan_batches` was given.
    """
    return sorted(batches, key=lambda b: -sum((x.stop - x.start) * arrays[x.path][1] for x in b))


def partition_keys(
    sizes: Mapping[str, int], batch_bytes: int, max_keys: int = 10_000
) -> list[list[str]]:
    """Split keys (in order) into batches of about *batch_bytes* stored bytes each."""
    batches: list[list[str]] = []
    current: list[str] = []
    total = 0
    for key, size in sizes.items():
        if current and (total + size > batch_bytes or len(current) >= max_keys):
            batches.append(current)
            current, total = [], 0
        current.append(key)
        total += size
    if current:
        batches.append(current)
    return batches
