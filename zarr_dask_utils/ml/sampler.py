"""Chunk-aware shuffling (pure: numpy in, sample orders out; no zarr, no torch, no clock).

A full shuffle makes every batch touch ``batch_size`` different chunks, so a loader decodes
whole chunks to keep one sample of each.  :class:`ChunkShuffleSampler` shuffles at two levels
instead: the order of the chunks, then the samples inside a buffer of ``buffer_chunks``
consecutive chunks of that order.  Every sample is visited exactly once per epoch, each chunk
is decoded about once per epoch by a reader that keeps the buffer's chunks
(``buffer_chunks`` times the bytes of one chunk of every variable), and ``buffer_chunks`` trades
randomness for that memory.  :func:`chunk_mixing` measures the randomness honestly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["ChunkShuffleSampler", "StripedBatches", "chunk_groups", "rank_slice"]


def chunk_groups(
    n_samples: int, sample_chunk: int, patch_chunks: Sequence[np.ndarray[Any, Any]] = ()
) -> list[np.ndarray[Any, Any]]:
    """Sample ids grouped by the chunk each sample starts in, in chunk order.

    Sample ``i`` is position ``i // P`` along the sample dimension and patch position
    ``i % P`` (C order over the patch dimensions, ``P`` positions in all).

    Parameters
    ----------
    n_samples
        Length of the sample dimension.
    sample_chunk
        Chunk length along it.
    patch_chunks
        Per patch dimension, the chunk index each patch position starts in.

    Returns
    -------
    list of numpy.ndarray
        One sorted ``int64`` array of sample ids per non-empty chunk.
    """
    sizes = [len(p) for p in patch_chunks]
    per_t = math.prod(sizes)
    total = n_samples * per_t
    if total == 0:
        return []
    ids = np.arange(total, dtype=np.int64)
    key = (ids // per_t) // sample_chunk
    rest = ids % per_t
    coords = np.unravel_index(rest, sizes) if sizes else ()
    for coord, chunk_of in zip(coords, patch_chunks, strict=True):
        chunk_of = np.asarray(chunk_of, dtype=np.int64)
        key = key * (int(chunk_of.max()) + 1) + chunk_of[coord]
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    return [np.sort(g) for g in np.split(ids[order], bounds)]


def rank_slice(order: np.ndarray[Any, Any], rank: int, world_size: int, drop_last: bool) -> Any:
    """The part of an epoch's *order* one rank visits (``DistributedSampler`` semantics).

    Every rank gets the same number of samples: without *drop_last* the order is padded by
    repeating its start (as torch does), with it the tail is dropped.  Each rank takes a
    contiguous run, so ranks read different chunks.
    """
    total = len(order)
    if drop_last:
        per = total // world_size
        order = order[: per * world_size]
    else:
        per = -(-total // world_size)
        order = np.resize(order, per * world_size) if total else order
    return order[rank * per : (rank + 1) * per]


class ChunkShuffleSampler:
    """Shuffle chunk order, then samples within a buffer of *buffer_chunks* chunks.

    Parameters
    ----------
    groups
        Sample ids per chunk (:func:`chunk_groups`), or a dataset with ``chunk_groups`` and
        ``chunk_nbytes`` (:class:`~zarr_dask_utils.ml.ZarrTorchDataset`).
    buffer_chunks
        Chunks whose samples are shuffled together (k): 1 keeps chunks apart, larger mixes
        more and holds more decoded chunks in the reader (:attr:`buffer_nbytes`).
    shuffle
        ``False``: samples in storage order (no randomness, one chunk at a time).
    seed
        Same seed (and epoch) → same order, on every rank.  Each iteration advances the
        epoch; :meth:`set_epoch` chooses it (as with ``DistributedSampler``).
    rank, world_size
        The part of each epoch this process visits (as ``DistributedSampler``).
    drop_last
        With several ranks: drop the tail instead of padding it by repeating samples.

    Examples
    --------
    >>> s = ChunkShuffleSampler(chunk_groups(10, 5), buffer_chunks=2, seed=1)
    >>> sorted(s) == list(range(10))
    True
    """

    def __init__(
        self,
        groups: Any,
        *,
        buffer_chunks: int = 4,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        chunk_nbytes = getattr(groups, "chunk_nbytes", None)
        if hasattr(groups, "chunk_groups"):
            groups = groups.chunk_groups
        if buffer_chunks < 1:
            raise InvalidOptionError(f"buffer_chunks must be 1 or more, got {buffer_chunks}.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise InvalidOptionError(
                f"rank {rank} is not in range for world_size {world_size}: pass "
                "0 <= rank < world_size (torch.distributed.get_rank(), get_world_size())."
            )
        self.groups: list[np.ndarray[Any, Any]] = [np.asarray(g, np.int64) for g in groups]
        self.buffer_chunks = int(buffer_chunks)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.chunk_nbytes: int | None = chunk_nbytes
        self.total = sum(len(g) for g in self.groups)

    @property
    def buffer_nbytes(self) -> int | None:
        """Decoded bytes the reader holds for the buffer (``None`` when not known)."""
        return None if self.chunk_nbytes is None else self.buffer_chunks * self.chunk_nbytes

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (a new order per epoch, the same on every rank)."""
        self.epoch = int(epoch)

    def epoch_order(self, epoch: int | None = None) -> np.ndarray[Any, Any]:
        """Every sample id once, in the order of *epoch* (before the rank split)."""
        if not self.groups:
            return np.empty(0, dtype=np.int64)
        if not self.shuffle:
            return np.concatenate(self.groups)
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch])
        chunks = rng.permutation(len(self.groups))
        parts = []
        for start in range(0, len(chunks), self.buffer_chunks):
            window = np.concatenate(
                [self.groups[c] for c in chunks[start : start + self.buffer_chunks]]
            )
            parts.append(rng.permutation(window))
        return np.concatenate(parts)

    def __iter__(self) -> Iterator[int]:
        """The samples of this rank for the current epoch; the next iteration is a new epoch.

        Lazy: the epoch advances when the first sample is drawn (torch creates and drops an
        unused iterator when it starts workers).
        """
        order = rank_slice(self.epoch_order(), self.rank, self.world_size, self.drop_last)
        self.epoch += 1
        yield from order.tolist()

    def __len__(self) -> int:
        if self.drop_last:
            return self.total // self.world_size
        return -(-self.total // self.world_size)


class StripedBatches:
    """Batches of a :class:`ChunkShuffleSampler`, so each DataLoader worker reads its own chunks.

    A DataLoader hands batch ``p`` to worker ``p % num_workers``.  Cut in order, the batches of
    one buffer would go to every worker, and each worker would decode every chunk of it.  Here
    the batches (the same sets of samples) are grouped in runs of one buffer and run ``s`` goes
    to worker ``s % num_workers``, so each chunk is decoded about once per epoch in all.

    Parameters
    ----------
    sampler
        The sample order.
    batch_size, drop_last
        As for a DataLoader.
    num_workers
        DataLoader workers (0 or 1: batches in order).
    """

    def __init__(
        self, sampler: ChunkShuffleSampler, batch_size: int, num_workers: int, drop_last: bool
    ) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.num_workers = max(1, int(num_workers))
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the sampler's epoch (``loader.batch_sampler.set_epoch(e)`` for DDP)."""
        self.sampler.set_epoch(epoch)

    @property
    def run_length(self) -> int:
        """Batches of one buffer (given to one worker in a row)."""
        per_chunk = self.sampler.total / max(1, len(self.sampler.groups))
        return max(1, math.ceil(self.sampler.buffer_chunks * per_chunk / self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        size = self.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        if self.drop_last and batches and len(batches[-1]) < size:
            batches.pop()
        if self.num_workers == 1:
            yield from batches
        else:
            yield from self._stripe(batches, self.run_length)

    def _stripe(self, batches: list[list[int]], run: int) -> list[list[int]]:
        """Position p goes to worker p % W: each worker takes the next run when its own ends."""
        runs = [batches[i : i + run] for i in range(0, len(batches), run)]
        runs.reverse()
        current: list[list[list[int]]] = [[] for _ in range(self.num_workers)]
        interleaved: list[list[int]] = []
        while len(interleaved) < len(batches):
            w = len(interleaved) % self.num_workers
            if not current[w]:
                if runs:
                    current[w] = list(reversed(runs.pop()))
                else:  # the tail: take from the worker with the most left
                    w = max(range(self.num_workers), key=lambda i: len(current[i]))
            interleaved.append(current[w].pop())
        return interleaved
