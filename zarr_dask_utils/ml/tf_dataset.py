"""``ZarrTFDataset``: the same sampling and chunk reading, as a ``tf.data.Dataset``.

Batches of sample ids come from :class:`~zarr_dask_utils.ml.ChunkShuffleSampler` (a new epoch
each time the dataset is iterated); each batch is read by
:meth:`~zarr_dask_utils.ml.dataset.SampleSource.read_numpy` inside ``tf.numpy_function``,
several batches in parallel (``num_parallel_calls``), in order, and prefetched
(``AUTOTUNE``).  tensorflow is imported only here (extra ``tensorflow``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from zarr_dask_utils.ml.dataset import SampleSource
from zarr_dask_utils.ml.sampler import ChunkShuffleSampler

__all__ = ["ZarrTFDataset"]

_PLUGIN_PATH = "HDF5_PLUGIN_PATH"


def _tf() -> Any:
    """Import tensorflow, leaving the process's ``HDF5_PLUGIN_PATH`` as it was.

    TensorFlow's Keras sets ``HDF5_PLUGIN_PATH=disable`` when it is imported (for its own
    h5py, which reads the variable once, when it is imported).  Left set, every netCDF-C and
    HDF5 user that starts later in this process *and in its child processes* loses its
    filter plugins: netCDF4 then fails on NCZarr shuffle or zstd-compressed variables with
    "Filter error: undefined filter encountered".  Reading zarr data must not break the
    user's netCDF reading, so the variable is restored once tensorflow is imported.
    """
    before = os.environ.get(_PLUGIN_PATH)
    try:
        import tensorflow as tf
    except ImportError as err:  # pragma: no cover - in the [tensorflow] extra
        raise ImportError(
            "ZarrTFDataset needs TensorFlow: pip install 'zarr-dask-utils[tensorflow]'."
        ) from err
    finally:
        if before is None:
            os.environ.pop(_PLUGIN_PATH, None)
        else:
            os.environ[_PLUGIN_PATH] = before
    return tf


def ZarrTFDataset(
    source: Any,
    *,
    batch_size: int,
    sample_dim: str | int,
    shuffle: bool = True,
    buffer_chunks: int = 4,
    seed: int = 0,
    variables: str | Sequence[str] | None = None,
    patch: Mapping[str, int] | None = None,
    stride: Mapping[str, int] | None = None,
    edge: Literal["drop", "pad"] = "drop",
    pad_value: Any = 0,
    storage_options: Mapping[str, Any] | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    num_parallel_calls: int | None = None,
) -> Any:
    """A ``tf.data.Dataset`` of shuffled batches over zarr data.

    Parameters
    ----------
    source, sample_dim, variables, patch, stride, edge, pad_value, storage_options
        As for :class:`~zarr_dask_utils.ml.ZarrTorchDataset`.
    batch_size, drop_last
        Samples per batch; *drop_last* makes the batch dimension static.
    shuffle, buffer_chunks, seed, rank, world_size
        As for :class:`~zarr_dask_utils.ml.ChunkShuffleSampler`.
    num_parallel_calls
        Batches read at once (default ``tf.data.AUTOTUNE``).

    Returns
    -------
    tf.data.Dataset
        Elements are a tensor (one variable) or a dict of tensors; ``element_spec`` is exact:
        ``TensorSpec((batch or None, *sample_shape), dtype)``.
    """
    tf = _tf()
    src = SampleSource(
        source,
        sample_dim=sample_dim,
        variables=variables,
        patch=patch,
        stride=stride,
        edge=edge,
        pad_value=pad_value,
        storage_options=storage_options,
        cache_chunks=buffer_chunks + 1,
    )
    sampler = ChunkShuffleSampler(
        src,
        buffer_chunks=buffer_chunks,
        shuffle=shuffle,
        seed=seed,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
    )
    names = [v.name for v in src.spec.variables]
    dtypes = [tf.as_dtype(src.dtypes[n]) for n in names]
    batch_dim = batch_size if drop_last else None
    shapes = [(batch_dim, *src.sample_shapes[n]) for n in names]

    def index_batches() -> Any:
        order = np.fromiter(iter(sampler), dtype=np.int64)
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            if drop_last and len(ids) < batch_size:
                return
            yield ids

    def read(ids: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
        arrays = src.read_numpy(ids.tolist())
        return [arrays[n] for n in names]

    def to_tensors(ids: Any) -> Any:
        out = tf.numpy_function(read, [ids], Tout=dtypes, stateful=True)
        tensors = [tf.ensure_shape(t, s) for t, s in zip(out, shapes, strict=True)]
        return tensors[0] if src.spec.single else dict(zip(names, tensors, strict=True))

    ids_spec = tf.TensorSpec(shape=(batch_dim,), dtype=tf.int64)
    ds = tf.data.Dataset.from_generator(index_batches, output_signature=ids_spec)
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    ds = ds.map(to_tensors, num_parallel_calls=parallel, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
