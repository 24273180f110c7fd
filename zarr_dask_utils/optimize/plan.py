"""Pure rechunk planning: target chunks, the rechunker plan, task blocks and the engine choice.

Nothing here touches a store, Dask or the clock: shapes, chunk tuples and byte counts in,
frozen dataclasses out.  :func:`plan_rechunk` wraps :func:`rechunker.algorithm.rechunking_plan`
(read / intermediate / write chunks under ``max_mem``) and turns it into one or two copy
*stages*, each a grid of blocks aligned to the chunks (or shards) of the array it writes, so
no two tasks ever write the same stored object.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils.optimize.plan_blocks import aligned_block, spread_stage

__all__ = [
    "ENGINES",
    "RechunkPlan",
    "RechunkStage",
    "block_regions",
    "choose_engine",
    "normalize_chunks",
    "plan_rechunk",
    "read_amplification",
]

ENGINES = ("auto", "rechunker", "tasks", "p2p")

Region = tuple[tuple[int, int], ...]


def normalize_chunks(
    spec: Sequence[int | None] | Mapping[str, int | None] | None,
    shape: Sequence[int],
    current: Sequence[int],
    dimension_names: Sequence[str | None] | None = None,
) -> tuple[int, ...]:
    """Resolve a chunk request to a full chunk tuple.

    Parameters
    ----------
    spec
        A tuple (``-1`` or ``None``: the whole axis), a mapping dimension name → size
        (axes not named keep *current*), or ``None`` (keep *current*).
    shape, current
        The array's shape and current chunks.
    dimension_names
        Axis names used to resolve a mapping.

    Raises
    ------
    InvalidOptionError
        Wrong length, a non-positive size, or a mapping for an array without axis names.
    """
    if spec is None:
        return tuple(int(c) for c in current)
    if isinstance(spec, Mapping):
        names = list(dimension_names or [])
        if not names or not any(name in spec for name in names):
            return tuple(min(int(c), max(int(s), 1)) for c, s in zip(current, shape, strict=True))
        mapping = spec
        spec = [
            mapping.get(name, c) if name is not None else c
            for name, c in zip(names, current, strict=True)
        ]
    if len(spec) != len(shape):
        raise InvalidOptionError(
            f"Chunks {tuple(spec)} have {len(spec)} dimension(s) but the array has shape "
            f"{tuple(shape)}. Give one size per axis (-1 for a whole axis), or a mapping of "
            "dimension names to sizes."
        )
    out = []
    for size, n in zip(spec, shape, strict=True):
        if size is None or size == -1:
            out.append(max(int(n), 1))
        elif int(size) <= 0:
            raise InvalidOptionError(
                f"Chunk size {size} in {tuple(spec)} is not positive. Use a positive size, "
                "or -1 for a whole axis."
            )
        else:
            out.append(min(int(size), max(int(n), 1)))
    return tuple(out)


def block_regions(shape: Sequence[int], block: Sequence[int]) -> Iterator[Region]:
    """Yield the regions ``((start, stop), ...)`` of a regular block grid over *shape*."""
    axes = [
        [(start, min(start + b, n)) for start in range(0, n, b)] or [(0, 0)]
        for n, b in zip(shape, block, strict=True)
    ]
    yield from itertools.product(*axes)


def _touched_extent(n: int, block: int, chunk: int) -> int:
    """Elements of stored chunks read along one axis when blocks of *block* read it."""
    total = 0
    for start in range(0, n, block):
        stop = min(start + block, n)
        lo = (start // chunk) * chunk
        hi = min(-(-stop // chunk) * chunk, n)
        total += hi - lo
    return total


def read_amplification(shape: Sequence[int], block: Sequence[int], chunks: Sequence[int]) -> float:
    """Bytes of stored chunks decoded / bytes of the array, reading it block by block."""
    ratio = 1.0
    for n, b, c in zip(shape, block, chunks, strict=True):
        if n:
            ratio *= _touched_extent(n, b, c) / n
    return ratio


@dataclass(frozen=True, slots=True)
class RechunkStage:
    """One copy pass: blocks of ``block`` read from ``source`` and written to ``target``.

    ``block`` is a multiple of ``target_chunks`` (the target's stored objects: shards when
    sharded), so every task writes whole objects.
    """

    source: str
    target: str
    block: tuple[int, ...]
    target_chunks: tuple[int, ...]
    read_amplification: float

    def n_blocks(self, shape: Sequence[int]) -> int:
        """Number of tasks this stage runs on an array of *shape*."""
        return math.prod(max(-(-n // b), 1) for n, b in zip(shape, self.block, strict=True))


@dataclass(frozen=True, slots=True)
class RechunkPlan:
    """The plan for one array (chunk tuples are element counts)."""

    shape: tuple[int, ...]
    itemsize: int
    source_chunks: tuple[int, ...]
    write_unit: tuple[int, ...]
    max_mem: int
    read_chunks: tuple[int, ...]
    intermediate_chunks: tuple[int, ...]
    write_chunks: tuple[int, ...]
    stages: tuple[RechunkStage, ...]
    direct_amplification: float

    @property
    def nbytes(self) -> int:
        """Uncompressed size of the array."""
        return math.prod(self.shape) * self.itemsize

    @property
    def two_stage(self) -> bool:
        """Whether the plan goes through the temporary store."""
        return len(self.stages) == 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary."""
        return {
            "shape": list(self.shape),
            "source_chunks": list(self.source_chunks),
            "write_unit": list(self.write_unit),
            "read_chunks": list(self.read_chunks),
            "intermediate_chunks": list(self.intermediate_chunks),
            "write_chunks": list(self.write_chunks),
            "stages": [
                {
                    "source": s.source,
                    "target": s.target,
                    "block": list(s.block),
                    "read_amplification": round(s.read_amplification, 3),
                }
                for s in self.stages
            ],
            "direct_amplification": round(self.direct_amplification, 3),
        }


def plan_rechunk(
    shape: Sequence[int],
    itemsize: int,
    source_chunks: Sequence[int],
    write_unit: Sequence[int],
    max_mem: int,
    *,
    allow_two_stage: bool,
    amplification_limit: float = 2.0,
    threads: int = 0,
) -> RechunkPlan:
    """Plan copying an array from *source_chunks* to stored objects of *write_unit*.

    Parameters
    ----------
    shape, itemsize
        The array.
    source_chunks
        Chunks of the source (shards are read chunk by chunk, so the inner chunk counts).
    write_unit
        The target's stored object: its shard shape when sharded, else its chunk shape.
    max_mem
        Bytes one task may hold in a block.
    allow_two_stage
        A temporary store is available for an intermediate copy.
    amplification_limit
        Above this read amplification of the direct copy, use two stages when allowed.
    threads
        Threads that will run the copy: each stage is split into at least ``2 x threads``
        blocks where whole multiples of what it reads and writes allow (no more read
        amplification, whole stored objects per task, the intermediate chunks shrinking to
        a divisor if need be), so the end of a stage does not leave threads idle. ``0``
        keeps the largest blocks within *max_mem*.

    Raises
    ------
    InvalidOptionError
        When one stored object of the target is larger than *max_mem*.
    """
    shape = tuple(int(n) for n in shape)
    source_chunks = tuple(min(int(c), max(n, 1)) for c, n in zip(source_chunks, shape, strict=True))
    write_unit = tuple(min(int(c), max(n, 1)) for c, n in zip(write_unit, shape, strict=True))
    unit_bytes = math.prod(write_unit) * itemsize
    if unit_bytes > max_mem:
        raise InvalidOptionError(
            f"One target chunk/shard {write_unit} holds {unit_bytes} bytes, more than "
            f"max_mem={max_mem} bytes, and every task must write whole stored objects. Raise "
            "max_mem, or choose smaller target chunks or shards."
        )
    if not shape or 0 in shape:
        read = inter = write = write_unit
    elif math.prod(source_chunks) * itemsize > max_mem:
        # rechunker refuses; zarr decodes a whole source chunk per read anyway
        read = inter = write = write_unit
    else:
        # imported here: rechunker's package imports dask.array, which importing
        # zarr_dask_utils should not pay for
        from rechunker.algorithm import rechunking_plan

        read, inter, write = rechunking_plan(
            shape, source_chunks, write_unit, itemsize, max(max_mem, itemsize)
        )
    read, inter, write = tuple(read), tuple(inter), tuple(write)
    direct = read_amplification(shape, write, source_chunks)
    aligned = aligned_block(shape, itemsize, source_chunks, write_unit, max_mem)
    if aligned is not None and read_amplification(shape, aligned, source_chunks) < direct:
        read = inter = write = aligned
        direct = read_amplification(shape, write, source_chunks)
    stages: tuple[RechunkStage, ...]
    if allow_two_stage and direct > amplification_limit and inter not in (read, write):
        stage1_block = tuple(
            r if i >= r else max((r // i) * i, i) for r, i in zip(read, inter, strict=True)
        )
        if threads > 0:
            b1, b2, temp = list(stage1_block), list(write), list(inter)
            spread_stage(shape, b1, list(source_chunks), temp, 2 * threads, temp="writes")
            spread_stage(
                shape, b2, temp, list(write_unit), 2 * threads, temp="reads", other_block=b1
            )
            stage1_block, inter, stage2 = tuple(b1), tuple(temp), tuple(b2)
        else:
            stage2 = write
        stages = (
            RechunkStage(
                "source",
                "temp",
                stage1_block,
                inter,
                read_amplification(shape, stage1_block, source_chunks),
            ),
            RechunkStage(
                "temp", "target", stage2, stage2, read_amplification(shape, stage2, inter)
            ),
        )
    else:
        block = list(write)
        if threads > 0:
            spread_stage(
                shape, block, list(source_chunks), list(write_unit), 2 * threads, temp=None
            )
        one = tuple(block)
        stages = (
            RechunkStage(
                "source", "target", one, one, read_amplification(shape, one, source_chunks)
            ),
        )
    return RechunkPlan(
        shape, itemsize, source_chunks, write_unit, int(max_mem), read, inter, write, stages, direct
    )


def choose_engine(
    requested: str,
    plans: Sequence[RechunkPlan],
    *,
    has_temp: bool,
    distributed: bool,
    threads: int,
    amplification_limit: float = 2.0,
) -> tuple[str, str]:
    """Pick the engine for a set of array plans and say why.

    Returns
    -------
    (engine, reason)
        ``engine`` is ``"rechunker"`` (our block copies following the rechunker plan),
        ``"tasks"`` or ``"p2p"`` (a Dask ``rechunk`` with that method, then ``store``).
    """
    if requested not in ENGINES:
        raise InvalidOptionError(
            f"Unknown rechunk engine {requested!r}. Use one of {', '.join(ENGINES)}."
        )
    if requested == "p2p" and not distributed:
        raise InvalidOptionError(
            "engine='p2p' needs a dask.distributed cluster shared with the stores, but this "
            "work runs on threads (an in-memory store). Use engine='rechunker' or 'tasks'."
        )
    if requested != "auto":
        return requested, f"requested (engine={requested!r})"
    worst = max((p.direct_amplification for p in plans), default=1.0)
    total = sum(p.nbytes for p in plans)
    budget = max((p.max_mem for p in plans), default=1) * max(threads, 1)
    if worst <= amplification_limit:
        return "rechunker", (
            f"direct block copies read each source chunk at most ~{worst:.1f}x "
            f"(limit {amplification_limit}), so no intermediate copy is needed"
        )
    if has_temp:
        return "rechunker", (
            f"a direct copy would read the source {worst:.1f}x over; the rechunker plan "
            "goes through temp_store in two stages, reading everything once per stage"
        )
    if distributed and total > budget:
        return "p2p", (
            f"source and target chunks are orthogonal (direct copy would read {worst:.1f}x), "
            f"no temp_store was given and the data ({total} B) exceeds max_mem x threads "
            f"({budget} B): Dask's P2P shuffle rechunks with bounded memory"
        )
    return "rechunker", (
        f"direct block copies (read amplification {worst:.1f}x); the data fits in "
        "max_mem x threads or no distributed cluster is available; pass temp_store to read "
        "the source only once"
    )
