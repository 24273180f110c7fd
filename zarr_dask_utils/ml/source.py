"""What a dataset reads: a zarr Array/Group, a path/URL or a zarr-backed xarray object.

:func:`describe_source` opens the source once (in the calling process) and returns a small
picklable :class:`SourceSpec`: the store's
:class:`~zarr_dask_utils._core.storage.locations.Location` and, per variable, its path,
dimension names, shape, dtype and storage chunks.  Readers in DataLoader workers (fork,
forkserver, spawn) or Dask workers reopen the store from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from zarr_dask_utils._core.decoding.pipeline_decoder import grid_of
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.storage.locations import Location, resolve_location
from zarr_dask_utils._core.storage.storeio import storage_errors

__all__ = ["SourceSpec", "VariableSpec", "describe_source"]


@dataclass(frozen=True)
class VariableSpec:
    """One array read by a dataset (path relative to the location's node)."""

    name: str
    path: str
    zarr_format: int
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    chunks: tuple[int, ...]  # one stored object (a shard when sharded)

    @property
    def chunk_nbytes(self) -> int:
        """Decoded bytes of one stored object."""
        return int(np.prod(self.chunks)) * self.dtype.itemsize


@dataclass(frozen=True)
class SourceSpec:
    """The store and the variables a dataset reads; ``single`` yields arrays, not dicts."""

    location: Location
    variables: tuple[VariableSpec, ...]
    single: bool


def _dims_of(array: zarr.Array[Any]) -> tuple[str, ...]:
    md = array.metadata
    names: Any = (
        getattr(md, "dimension_names", None)
        if md.zarr_format == 3
        else array.attrs.get("_ARRAY_DIMENSIONS")
    )
    if not names:
        return tuple(f"dim_{i}" for i in range(array.ndim))
    return tuple(str(n) if n is not None else f"dim_{i}" for i, n in enumerate(names))


def _variable(name: str, path: str, array: zarr.Array[Any]) -> VariableSpec:
    grid = grid_of(array, path)
    return VariableSpec(
        name=name,
        path=path,
        zarr_format=array.metadata.zarr_format,
        dims=_dims_of(array),
        shape=tuple(array.shape),
        dtype=np.dtype(array.dtype),
        chunks=tuple(grid.chunks),
    )


def _coordinate_names(arrays: Mapping[str, zarr.Array[Any]]) -> set[str]:
    """Arrays xarray treats as coordinates: dimension coordinates and ``coordinates`` attrs."""
    coords = {name for name, a in arrays.items() if _dims_of(a) == (name,)}
    for a in arrays.values():
        listed = a.attrs.get("coordinates")
        if isinstance(listed, str):
            coords.update(listed.split())
    return coords


def _zarr_array_behind(data_array: Any) -> zarr.Array[Any] | None:
    """The whole zarr array an xarray DataArray lazily reads (``None`` when there is none).

    Follows xarray's lazy wrappers (``.array``) down to its ``ZarrArrayWrapper``, through the
    dask graph of a chunked DataArray; a subset (``isel``) has another shape and is refused.
    """
    data = data_array.variable._data
    todo = [data]
    if hasattr(data, "__dask_graph__"):
        todo = [v for v in dict(data.__dask_graph__()).values() if hasattr(v, "array")]
    for obj in todo:
        for _ in range(10):
            found = getattr(obj, "_array", None)
            if isinstance(found, zarr.Array):
                return found if tuple(found.shape) == tuple(data_array.shape) else None
            if not hasattr(obj, "array"):
                break
            obj = obj.array
    return None


def _xarray_source(source: Any) -> tuple[Any, list[str] | None]:
    """The zarr store (or array) behind an xarray object, and its data variables."""
    is_array = type(source).__name__ == "DataArray"
    where = source.encoding.get("source")
    if where is None and is_array:
        where = _zarr_array_behind(source)
        if where is not None:
            return where, None
    if where is None:
        raise InvalidOptionError(
            f"This xarray {type(source).__name__} does not say which zarr store it was opened "
            "from (its .encoding has no 'source', or it is a subset or in memory): pass the "
            "store path or URL itself, e.g. ZarrTorchDataset('data.zarr', sample_dim='time', "
            "variables=[...]), or open it with xarray.open_zarr(path)."
        )
    if is_array:
        return where, [str(source.name)]
    return where, [str(v) for v in source.data_vars]


def describe_source(
    source: Any,
    *,
    variables: str | Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> SourceSpec:
    """Open *source* once and describe the arrays to read.

    Parameters
    ----------
    source
        A zarr Array or Group, a path/URL, a zarr Store, or an xarray Dataset/DataArray
        opened from zarr (its ``encoding["source"]``).
    variables
        Array names in a group (default: every array that is not a coordinate); one name
        (a string) makes items plain arrays instead of dicts.
    storage_options
        fsspec options for a URL.

    Raises
    ------
    InvalidOptionError
        A variable that does not exist, or a source that is not zarr-backed.
    """
    single = isinstance(variables, str)
    wanted: list[str] | None = (
        [variables]
        if isinstance(variables, str)
        else None
        if variables is None
        else list(variables)
    )
    if type(source).__name__ in ("Dataset", "DataArray") and hasattr(source, "encoding"):
        is_array = type(source).__name__ == "DataArray"
        source, default = _xarray_source(source)
        single = single or is_array
        wanted = wanted if wanted is not None else default
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    location = resolve_location(source, storage_options=storage_options)
    with storage_errors(location.display):
        node = zarr.open(store=location.open_store(), path=location.path, mode="r")
    if isinstance(node, zarr.Array):
        name = str(node.basename or "data")
        return SourceSpec(location, (_variable(name, "", node),), True)
    arrays = {str(k): v for k, v in node.arrays()}
    if wanted is None:
        coords = _coordinate_names(arrays)
        wanted = sorted(k for k in arrays if k not in coords)
    missing = [w for w in wanted if w not in arrays]
    if missing or not wanted:
        raise InvalidOptionError(
            f"{location.display} has no array named {', '.join(map(repr, missing)) or '(none)'}; "
            f"its arrays are {sorted(arrays)}. Pass variables= with names from that list."
        )
    specs = tuple(_variable(w, w, arrays[w]) for w in wanted)
    return SourceSpec(location, specs, single and len(specs) == 1)
