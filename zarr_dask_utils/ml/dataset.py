"""``ZarrTorchDataset``: a map-style dataset whose batches read each needed chunk once.

torch's DataLoader hands a whole batch of indices to ``__getitems__``; this dataset reads the
chunks the batch touches once each (and keeps the last few for the next batches, the
:class:`~zarr_dask_utils.ml.sampler.ChunkShuffleSampler` buffer), then cuts the samples out.
torch is imported only when a batch is converted to tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils.ml.patches import PatchPlan, plan_patches
from zarr_dask_utils.ml.reading import reader_for
from zarr_dask_utils.ml.sampler import chunk_groups
from zarr_dask_utils.ml.source import SourceSpec, describe_source

__all__ = ["Batch", "SampleSource", "ZarrTorchDataset", "collate_batch"]


def _torch() -> Any:
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is in the [torch] extra
        raise ImportError(
            "ZarrTorchDataset needs PyTorch: pip install 'zarr-dask-utils[torch]'."
        ) from err
    return torch


class Batch(list):  # type: ignore[type-arg]
    """The samples of one batch, carrying the already stacked batch for :func:`collate_batch`.

    torch's ``default_collate`` sees a list of samples and stacks them; ``collate_batch``
    returns :attr:`stacked` without a copy.
    """

    stacked: Any = None


def collate_batch(data: Any) -> Any:
    """DataLoader ``collate_fn``: the stacked batch of a :class:`Batch`, else torch's default."""
    if isinstance(data, Batch) and data.stacked is not None:
        return data.stacked
    from torch.utils.data import default_collate

    return default_collate(data)


class SampleSource:
    """The framework-free core: a source, its variables and samples, read as numpy batches.

    Parameters are those of :class:`ZarrTorchDataset`.
    """

    def __init__(
        self,
        source: Any,
        *,
        sample_dim: str | int,
        variables: str | Sequence[str] | None = None,
        patch: Mapping[str, int] | None = None,
        stride: Mapping[str, int] | None = None,
        edge: Literal["drop", "pad"] = "drop",
        pad_value: Any = 0,
        transform: Callable[[Any], Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_chunks: int = 4,
    ) -> None:
        self.transform = transform
        self.spec: SourceSpec = describe_source(
            source, variables=variables, storage_options=storage_options
        )
        first = self.spec.variables[0]
        if not isinstance(sample_dim, str):
            if not -len(first.dims) <= sample_dim < len(first.dims):
                raise InvalidOptionError(
                    f"sample_dim={sample_dim} is not an axis of {first.name!r} "
                    f"(dimensions {first.dims}). Pass an axis number or one of those names."
                )
            sample_dim = first.dims[sample_dim]
        sizes = self._sizes()
        self.plan: PatchPlan = plan_patches(sizes, sample_dim, patch, stride, edge)
        lacking = [v.name for v in self.spec.variables if sample_dim not in v.dims]
        if lacking:
            raise InvalidOptionError(
                f"sample_dim={sample_dim!r} is not a dimension of {lacking}: every variable "
                "must have it. Pass variables= without them."
            )
        self.pad_value = pad_value
        self.cache_chunks = cache_chunks

    def _sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for var in self.spec.variables:
            for dim, n in zip(var.dims, var.shape, strict=True):
                if sizes.setdefault(dim, n) != n:
                    raise InvalidOptionError(
                        f"Dimension {dim!r} has length {sizes[dim]} in one variable and {n} in "
                        f"{var.name!r}: read them separately, or pass variables= that agree."
                    )
        return sizes

    @property
    def chunk_groups(self) -> list[np.ndarray[Any, Any]]:
        """Sample ids per chunk of the first variable (for the sampler)."""
        first = self.spec.variables[0]
        chunks = dict(zip(first.dims, first.chunks, strict=True))
        patch_chunks = [
            np.asarray(s, np.int64) // chunks.get(d, 1 << 62)
            for d, s in zip(self.plan.patch_dims, self.plan.starts, strict=True)
        ]
        return chunk_groups(self.plan.n, chunks[self.plan.sample_dim], patch_chunks)

    def chunk_of(self) -> np.ndarray[Any, Any]:
        """The chunk group of every sample (for :func:`~zarr_dask_utils.ml.mixing.chunk_mixing`)."""
        out = np.empty(self.plan.total, np.int64)
        for g, ids in enumerate(self.chunk_groups):
            out[ids] = g
        return out

    @property
    def chunk_nbytes(self) -> int:
        """Decoded bytes of one chunk of every variable (the sampler buffer holds k of them)."""
        return sum(v.chunk_nbytes for v in self.spec.variables)

    @property
    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of one sample of each variable."""
        patch = dict(zip(self.plan.patch_dims, self.plan.sizes, strict=True))
        return {
            v.name: tuple(
                patch.get(d, n)
                for d, n in zip(v.dims, v.shape, strict=True)
                if d != self.plan.sample_dim
            )
            for v in self.spec.variables
        }

    @property
    def dtypes(self) -> dict[str, np.dtype[Any]]:
        """Element type of each variable (native byte order)."""
        return {v.name: v.dtype.newbyteorder("=") for v in self.spec.variables}

    def __len__(self) -> int:
        return self.plan.total

    def read_numpy(self, ids: Sequence[int]) -> dict[str, np.ndarray[Any, Any]]:
        """The samples *ids* of every variable, stacked along a new first axis."""
        return {
            v.name: reader_for(
                self.spec.location, v, self.cache_chunks * self._chunks_per_group(v)
            ).read(self.plan, ids, self.pad_value)
            for v in self.spec.variables
        }

    def _chunks_per_group(self, var: Any) -> int:
        """Chunks of *var* one sampler group's samples touch (patches may cross one edge)."""
        patch = dict(zip(self.plan.patch_dims, self.plan.sizes, strict=True))
        count = 1
        for dim, n, c in zip(var.dims, var.shape, var.chunks, strict=True):
            if dim in patch:
                count *= -(-patch[dim] // c) + 1
            elif dim != self.plan.sample_dim:
                count *= -(-n // c)
        return count

    def shape_output(self, arrays: dict[str, Any]) -> Any:
        """One array for a single variable, else the dict."""
        return next(iter(arrays.values())) if self.spec.single else arrays


class ZarrTorchDataset(SampleSource):
    """Samples along *sample_dim* of zarr arrays, as a map-style torch dataset.

    Parameters
    ----------
    source
        A zarr Array or Group, a path/URL (with *storage_options*), a zarr Store, or an xarray
        Dataset/DataArray opened from zarr.
    sample_dim
        Dimension name (or axis number of an unnamed array) that indexes samples.
    variables
        Arrays of a group to serve (default: every non-coordinate array); a single name makes
        items tensors instead of dicts.  Coordinates along *sample_dim* can be listed too.
    patch, stride
        Optional N-D patches: ``{"y": 64, "x": 64}`` and their strides (default: the size).
    edge
        ``"drop"`` partial patches at the far edges, or ``"pad"`` them with *pad_value*.
    pad_value
        Fill for padded patches.
    transform
        Applied to each sample (a tensor, or a dict of tensors) in the reading process.
    storage_options
        fsspec options for a URL.
    cache_chunks
        Decoded chunks kept per variable and process (the sampler's ``buffer_chunks``).

    Examples
    --------
    >>> import zarr, numpy as np
    >>> a = zarr.create_array(zarr.storage.MemoryStore(), shape=(8, 3), chunks=(4, 3), dtype="f4")
    >>> a[:] = np.arange(24, dtype="f4").reshape(8, 3)
    >>> ds = ZarrTorchDataset(a, sample_dim=0)
    >>> ds.__getitems__([5, 1]).stacked.shape
    torch.Size([2, 3])
    """

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([int(index)])[0]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """The samples *indices* (one read per needed chunk); ``.stacked`` holds the batch."""
        return to_batch(self, self.read_numpy(indices), self.transform)


def to_batch(source: SampleSource, arrays: dict[str, Any], transform: Any = None) -> Batch:
    """Numpy arrays of a batch → a :class:`Batch` of tensors (transformed per sample)."""
    torch = _torch()
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    n = len(next(iter(tensors.values())))
    samples = [source.shape_output({k: t[j] for k, t in tensors.items()}) for j in range(n)]
    if transform is not None:
        batch = Batch(transform(s) for s in samples)
        return batch
    batch = Batch(samples)
    batch.stacked = source.shape_output(tensors)
    return batch
