"""Apply a :class:`~zarr_dask_utils.convert.consistency.HarmonisationPlan` to raw datasets.

:func:`plan_for_files` reads every opened file's raw attributes and asks the pure planner;
:func:`harmonise` rewrites one file's raw values lazily (Dask) into the target's encoding
before the files are combined (as an ``open_mfdataset`` ``preprocess`` would), so coordinates
are combined in one unit too.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from zarr_dask_utils.convert.consistency import FileTransform, HarmonisationPlan, harmonisation_plan
from zarr_dask_utils.convert.errors import ConversionInputError

__all__ = ["harmonise", "plan_for_files", "preprocess_for"]


def _source(ds: Any) -> str:
    return os.path.normpath(str(ds.encoding.get("source", "")))


def plan_for_files(
    datasets: Sequence[Any], paths: Sequence[Any]
) -> tuple[HarmonisationPlan, dict[str, int]]:
    """The plan for the raw *datasets* of *paths*, and each file's ``source`` → index.

    *datasets* are the files opened raw (``decode_cf=False``), only their attributes are
    read; *paths* are local paths or fsspec file objects (their ``path`` names them).
    """
    per_file = []
    index: dict[str, int] = {}
    for i, ds in enumerate(datasets):
        per_file.append({str(n): dict(v.attrs) for n, v in ds.variables.items()})
        index[_source(ds)] = i
    dtypes = {str(n): v.dtype.str for n, v in datasets[0].variables.items()} if datasets else {}
    urls = [str(getattr(p, "path", p)) for p in paths]
    names = [os.path.basename(u.rstrip("/")) or u for u in urls]
    return harmonisation_plan(per_file, names, dtypes), index


def _masked(data: Any, values: Sequence[Any]) -> Any:
    mask = None
    for value in values:
        hit = data != data if np.isnan(np.asarray(value, "f8")) else data == value
        mask = hit if mask is None else mask | hit
    return mask


def _transformed(data: Any, t: FileTransform) -> Any:
    xp: Any = np
    if not isinstance(data, np.ndarray):
        import dask.array as xp  # lazily: the values stay on the cluster
    mask = _masked(data, t.masked) if t.masked else None
    if t.dtype is not None:  # unpack as xarray decodes: cast, scale, offset
        dtype = np.dtype(t.dtype)
        data = data.astype(dtype) * dtype.type(t.scale) + dtype.type(t.offset)
    elif t.scale != 1 or t.offset != 0:  # times: integer factors, exact
        if data.dtype.kind in "iu":
            data = data.astype("i8")
        data = data * t.scale + t.offset
    if mask is not None:
        data = xp.where(mask, np.asarray(t.fill, dtype=data.dtype), data)
    return data


def harmonise(ds: Any, *, plan: HarmonisationPlan, index: Mapping[str, int]) -> Any:
    """One file's raw dataset rewritten into the target's encoding (lazily)."""
    import xarray as xr

    i = index.get(_source(ds))
    if i is None:  # pragma: no cover - xarray records the source of local files
        raise ConversionInputError(
            f"The input files disagree on an encoding and must be harmonised file by file, "
            f"but xarray did not say which file it opened ({ds.encoding.get('source')!r}). "
            "Copy the files to a local directory and convert them from there."
        )
    for name, transforms in plan.transforms.items():
        if name not in ds.variables:
            continue
        var = ds.variables[name]
        t = transforms[i]
        data = var.values if name in ds.indexes else var.data
        new = xr.Variable(var.dims, _transformed(data, t), dict(plan.attrs[name]), var.encoding)
        if name in ds.coords:
            ds = ds.assign_coords({name: new})
        else:
            ds[name] = new
    return ds


def preprocess_for(plan: HarmonisationPlan, index: Mapping[str, int]) -> Callable[[Any], Any]:
    """:func:`harmonise` bound to *plan* (picklable)."""
    return functools.partial(harmonise, plan=plan, index=dict(index))
