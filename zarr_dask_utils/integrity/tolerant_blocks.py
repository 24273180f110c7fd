"""Read an array as Dask blocks that carry their undecodable chunks instead of failing.

A value comparison of two copies stored with different chunking reads each side once as a
Dask array and rechunks the second side to the first side's blocks.  One undecodable chunk
must not end that comparison (every other difference in the store would go unreported), so
each block is read by :func:`read_block_tolerant`: the whole block at once in the common case,
and only when that fails chunk by chunk, placing fill data where a chunk cannot be decoded and
returning the key, reason and region of each such chunk beside the values.
:func:`tolerant_blocks` builds the Dask array of the values and, per block, the list of
undecodable chunks, from one read task per block (every stored object is read once).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.decoding.block_reader import DirectBlockReader
from zarr_dask_utils._core.errors import ChunkUnreadableError
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.pure.partition import aligned_block

__all__ = [
    "Box",
    "Unreadable",
    "overlapping_blocks",
    "read_block_tolerant",
    "tolerant_blocks",
    "unreadable_reason",
]

#: A region of the array: ``(start, stop)`` per dimension.
Box = tuple[tuple[int, int], ...]
#: An undecodable storage chunk: its key, why, and the region of the block it left unread.
Unreadable = tuple[str, str, Box]


def unreadable_reason(err: ChunkUnreadableError, side: str) -> str:
    """A short reason naming the side (``"a"`` or ``"b"``) whose chunk cannot be decoded."""
    cause = err.__cause__
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(err)
    return f"cannot be decoded in {side} ({detail[:300]})"


def read_block_tolerant(
    reader: DirectBlockReader, region: Box, side: str
) -> tuple[np.ndarray[Any, Any], list[Unreadable]]:
    """Worker task: the block *region* of *reader*, and the chunks in it that cannot be decoded.

    The block is read at once; only if that fails is it read again chunk by chunk, each
    undecodable chunk's part left as zeros and listed as ``(key, reason, box)``.  Storage
    errors (credentials, network) are raised as usual.
    """
    whole = tuple(slice(a, b) for a, b in region)
    try:
        return reader[whole], []
    except ChunkUnreadableError:
        pass  # name each undecodable chunk below (the error path only)
    out = np.zeros(tuple(b - a for a, b in region), dtype=reader.dtype)
    grid = reader.grid
    bad: list[Unreadable] = []
    spans = [range(a // c, -(-b // c)) for (a, b), c in zip(region, grid.chunks, strict=True)]
    for coords in itertools.product(*spans):
        inside = tuple(
            slice(max(i * c, a), min((i + 1) * c, b))
            for i, c, (a, b) in zip(coords, grid.chunks, region, strict=True)
        )
        target = tuple(
            slice(s.start - a, s.stop - a) for s, (a, _) in zip(inside, region, strict=True)
        )
        try:
            out[target] = reader[inside]
        except ChunkUnreadableError as err:
            key = join_key(reader.path, grid.key(coords))
            box = tuple((s.start, s.stop) for s in inside)
            bad.append((key, unreadable_reason(err, side), box))
    return out, bad


def overlapping_blocks(chunks: Sequence[Sequence[int]], box: Box) -> list[tuple[int, ...]]:
    """Indices of the blocks of a Dask *chunks* structure that intersect *box*.

    Examples
    --------
    >>> overlapping_blocks(((4, 4), (2, 2, 2, 2)), ((0, 4), (3, 6)))
    [(0, 1), (0, 2)]
    """
    spans = []
    for sizes, (lo, hi) in zip(chunks, box, strict=True):
        edges = np.cumsum((0, *sizes)).tolist()
        spans.append([i for i in range(len(sizes)) if edges[i] < hi and edges[i + 1] > lo])
    return list(itertools.product(*spans))


def tolerant_blocks(
    reader: DirectBlockReader, side: str, block_bytes: int
) -> tuple[Any, dict[tuple[int, ...], Delayed]]:
    """The array of *reader* as a Dask array, and per block index its undecodable chunks.

    Blocks are whole storage chunks of at most about *block_bytes*; one task reads each
    block (:func:`read_block_tolerant`), the array's block and the ``list[Unreadable]`` are
    its two parts.
    """
    import dask.array as da

    chunks = da.core.normalize_chunks(  # type: ignore[no-untyped-call]  # dask: unannotated
        aligned_block(reader.shape, reader.grid.chunks, reader.dtype.itemsize, block_bytes),
        reader.shape,
    )
    read, values, bad = (task_name(n) for n in ("read-blocks", "read-values", "read-unreadable"))
    source = f"{read}-reader"
    starts = [np.cumsum((0, *c[:-1])).tolist() for c in chunks]
    read_layer: dict[Any, Any] = {source: reader}
    values_layer: dict[Any, Any] = {}
    bad_layer: dict[Any, Any] = {}
    for idx in itertools.product(*(range(len(c)) for c in chunks)):
        region = tuple((starts[d][i], starts[d][i] + chunks[d][i]) for d, i in enumerate(idx))
        read_layer[(read, *idx)] = (read_block_tolerant, source, region, side)
        values_layer[(values, *idx)] = (operator.getitem, (read, *idx), 0)
        bad_layer[(bad, *idx)] = (operator.getitem, (read, *idx), 1)
    graph = HighLevelGraph(
        {read: read_layer, values: values_layer, bad: bad_layer},
        {read: set(), values: {read}, bad: {read}},
    )
    meta = np.empty((0,) * reader.ndim, dtype=reader.dtype)
    array = da.Array(graph, values, chunks, meta=meta)  # type: ignore[no-untyped-call]
    unreadable = {
        key[1:]: Delayed(key, graph, layer=bad)  # type: ignore[no-untyped-call]  # unannotated
        for key in bad_layer
    }
    return array, unreadable
