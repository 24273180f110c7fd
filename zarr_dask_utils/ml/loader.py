"""``to_torch_dataloader``: dataset + chunk-shuffling sampler + DataLoader, or a Dask pipeline.

Two ways to feed a training process:

* DataLoader workers (``client=None``): each worker process reads and decodes the chunks of
  its batches (its own store: fork, forkserver and spawn are safe);
* Dask workers (``client=``): :class:`DaskBatchLoader` submits one task per batch, at most
  ``max_in_flight`` ahead of the training loop, each batch run on the worker that holds its
  buffer's chunks; the decoded batch streams back.  For a training node with few cores
  beside a cluster with many.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils.ml.dataset import SampleSource, ZarrTorchDataset, collate_batch, to_batch
from zarr_dask_utils.ml.sampler import ChunkShuffleSampler, StripedBatches

__all__ = ["DaskBatchLoader", "read_batch", "to_torch_dataloader"]


def read_batch(source: SampleSource, ids: Sequence[int]) -> dict[str, np.ndarray[Any, Any]]:
    """Dask task: read and decode the samples *ids* (module level: workers import it)."""
    return source.read_numpy(ids)


def default_workers() -> int:
    """DataLoader workers when not given: the cores but one, at most 4."""
    return min(4, max(0, (os.cpu_count() or 1) - 1))


class DaskBatchLoader:
    """Batches read and decoded by Dask workers, a bounded number in flight.

    Parameters
    ----------
    dataset
        What to read (shipped to the workers; its store must be reachable from them).
    sampler
        The sample order (a new epoch per iteration).
    batch_size, drop_last
        As for a DataLoader.
    client
        The ``distributed.Client``.
    max_in_flight
        Batches submitted ahead of the training loop (bounds memory on both sides).
    """

    def __init__(
        self,
        dataset: ZarrTorchDataset,
        sampler: ChunkShuffleSampler,
        *,
        batch_size: int,
        client: Any,
        drop_last: bool = False,
        max_in_flight: int = 8,
    ) -> None:
        if not dataset.spec.location.shareable:
            raise InvalidOptionError(
                f"{dataset.spec.location.display} is an in-memory store: Dask worker processes "
                "cannot read it. Write it to disk or object storage, or pass client=None."
            )
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = batch_size
        self.client = client
        self.drop_last = drop_last
        self.max_in_flight = max(1, int(max_in_flight))
        self.batches = StripedBatches(sampler, batch_size, 1, drop_last)

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        """Choose the sampler's epoch (each iteration otherwise starts the next one)."""
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        from dask.base import tokenize

        workers = sorted(self.client.scheduler_info().get("workers", {}))
        run = self.batches.run_length  # the batches of one buffer go to the same worker
        [shipped] = self.client.scatter([self.dataset], broadcast=True, hash=False)
        pending: deque[Any] = deque()
        token = tokenize(self.dataset.spec.location.url, self.sampler.epoch, uuid.uuid4().hex)
        try:
            for b, ids in enumerate(self.batches):
                # no workers yet (still starting, scaled to zero): no hint, tasks wait for one
                hint: dict[str, Any] = (
                    {"workers": [workers[(b // run) % len(workers)]], "allow_other_workers": True}
                    if workers
                    else {}
                )
                pending.append(
                    self.client.submit(
                        read_batch, shipped, ids, key=f"zdu-ml-read-{token}-{b}", **hint
                    )
                )
                if len(pending) >= self.max_in_flight:
                    yield self._collect(pending.popleft())
            while pending:
                yield self._collect(pending.popleft())
        finally:
            for future in pending:
                future.cancel()

    def _collect(self, future: Any) -> Any:
        arrays = future.result()
        return collate_batch(to_batch(self.dataset, arrays, self.dataset.transform))


def to_torch_dataloader(
    source: Any,
    *,
    batch_size: int,
    sample_dim: str | int | None = None,
    shuffle: bool = True,
    num_workers: int | None = None,
    buffer_chunks: int = 4,
    seed: int = 0,
    variables: str | Sequence[str] | None = None,
    patch: Mapping[str, int] | None = None,
    stride: Mapping[str, int] | None = None,
    edge: Literal["drop", "pad"] = "drop",
    transform: Callable[[Any], Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    client: Any = None,
    max_in_flight: int = 8,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    multiprocessing_context: str | None = None,
    prefetch_factor: int = 2,
) -> Any:
    """A loader of shuffled batches over zarr data, with sane defaults.

    Parameters
    ----------
    source
        A :class:`~zarr_dask_utils.ml.ZarrTorchDataset`, or anything it takes (then
        *sample_dim*, *variables*, *patch*, *stride*, *edge*, *transform* and
        *storage_options* build one).
    batch_size
        Samples per batch.
    shuffle
        Chunk-aware shuffle (:class:`~zarr_dask_utils.ml.ChunkShuffleSampler`); ``False``
        reads in storage order.
    num_workers
        DataLoader worker processes (default: cores - 1, at most 4); persistent across
        epochs, ``prefetch_factor`` batches each ahead.
    buffer_chunks
        Chunks shuffled together (k); each reader keeps about that many decoded chunks.
    seed
        Reproducible order (epoch e uses ``(seed, e)``; each iteration is a new epoch).
    client
        A ``distributed.Client``: Dask workers read and decode, the DataLoader is replaced
        by a :class:`DaskBatchLoader` with *max_in_flight* batches ahead.
    rank, world_size, drop_last
        ``DistributedSampler`` semantics for DDP; each iteration is the next epoch, or choose
        it with ``loader.batch_sampler.set_epoch(e)`` (``loader.set_epoch(e)`` with *client*).
    multiprocessing_context
        ``"fork"``, ``"forkserver"`` or ``"spawn"`` for DataLoader workers.

    Returns
    -------
    torch.utils.data.DataLoader or DaskBatchLoader
        Iterating yields a tensor per batch (one variable) or a dict of tensors.
    """
    if isinstance(source, ZarrTorchDataset):
        dataset = source
    elif sample_dim is None:
        raise InvalidOptionError(
            "to_torch_dataloader needs sample_dim=, the dimension that indexes samples "
            "(e.g. sample_dim='time', or an axis number for an array without dimension names)."
        )
    else:
        dataset = ZarrTorchDataset(
            source,
            sample_dim=sample_dim,
            variables=variables,
            patch=patch,
            stride=stride,
            edge=edge,
            transform=transform,
            storage_options=storage_options,
        )
    dataset.cache_chunks = buffer_chunks + 1  # a batch may straddle two buffers
    sampler = ChunkShuffleSampler(
        dataset,
        buffer_chunks=buffer_chunks,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
    )
    if client is not None:
        return DaskBatchLoader(
            dataset,
            sampler,
            batch_size=batch_size,
            client=client,
            drop_last=drop_last,
            max_in_flight=max_in_flight,
        )
    from torch.utils.data import DataLoader

    workers = default_workers() if num_workers is None else int(num_workers)
    return DataLoader(
        dataset,  # type: ignore[arg-type]  # map-style by protocol, not a Dataset subclass
        batch_sampler=StripedBatches(sampler, batch_size, workers, drop_last),
        num_workers=workers,
        collate_fn=collate_batch,
        pin_memory=False,  # CPU training: pinning only costs a copy
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        multiprocessing_context=multiprocessing_context if workers > 0 else None,
    )
