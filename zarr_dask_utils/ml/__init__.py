"""ML loading: torch and TensorFlow datasets over zarr with chunk-aware shuffling.

torch and tensorflow are imported only when a dataset produces tensors (extras ``torch``,
``tensorflow``); importing this package needs neither.
"""

from __future__ import annotations

from zarr_dask_utils.ml.dataset import ZarrTorchDataset, collate_batch
from zarr_dask_utils.ml.loader import to_torch_dataloader
from zarr_dask_utils.ml.mixing import MixingScore, chunk_mixing
from zarr_dask_utils.ml.sampler import ChunkShuffleSampler
from zarr_dask_utils.ml.tf_dataset import ZarrTFDataset

__all__ = [
    "ChunkShuffleSampler",
    "MixingScore",
    "ZarrTFDataset",
    "ZarrTorchDataset",
    "chunk_mixing",
    "collate_batch",
    "to_torch_dataloader",
]
