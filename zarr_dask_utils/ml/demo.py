"""A small labelled zarr store for the ML loaders' examples, notebook, tests and benchmark.

Values identify their place: ``t2m[t, y, x] = t * 10_000 + y * 100 + x`` (exact in float32
for ``t < 1600``), ``label[t] = t``, so a batch shows which samples it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

from zarr_dask_utils._core.storage.locations import open_store

__all__ = ["write_ml_demo_store"]


def write_ml_demo_store(
    store: Any,
    *,
    n_time: int = 64,
    ny: int = 16,
    nx: int = 16,
    chunks: tuple[int, int, int] = (8, 16, 16),
    shards: tuple[int, int, int] | None = None,
    dtype: str = "float32",
    zarr_format: int = 3,
    storage_options: Mapping[str, Any] | None = None,
) -> str | Any:
    """Write variables ``t2m(time, y, x)`` and ``label(time)`` with coordinates.

    Parameters
    ----------
    store
        A path/URL (with *storage_options*) or a zarr Store.
    n_time, ny, nx
        Dimension lengths.
    chunks, shards
        Chunking of ``t2m`` (``label`` and ``time`` are chunked like its first dimension).
    dtype
        Type of ``t2m``.
    zarr_format
        2 or 3.

    Returns
    -------
    The *store* argument, for chaining.
    """
    target = open_store(store, storage_options=storage_options, read_only=False)
    root = zarr.open_group(target, mode="w", zarr_format=zarr_format)  # type: ignore[arg-type]
    t, y, x = np.ogrid[:n_time, :ny, :nx]
    values = (t * 10_000 + y * 100 + x).astype(dtype)

    def add(
        name: str, data: np.ndarray[Any, Any], dims: tuple[str, ...], chunk: Any, **kw: Any
    ) -> None:
        names: dict[str, Any] = {"dimension_names": dims} if zarr_format == 3 else {}
        arr = root.create_array(
            name, shape=data.shape, chunks=chunk, dtype=data.dtype, **names, **kw
        )
        arr[...] = data
        if zarr_format == 2:
            arr.attrs["_ARRAY_DIMENSIONS"] = list(dims)

    add("t2m", values, ("time", "y", "x"), chunks, shards=shards)
    add("label", np.arange(n_time, dtype="int64"), ("time",), (chunks[0],))
    add("time", np.arange(n_time, dtype="int64"), ("time",), (chunks[0],))
    add("y", np.arange(ny, dtype="float64"), ("y",), (ny,))
    add("x", np.arange(nx, dtype="float64"), ("x",), (nx,))
    return store
