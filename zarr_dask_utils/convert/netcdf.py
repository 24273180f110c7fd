"""``netcdf_to_zarr``: netCDF-3/4 and HDF5 files → one Zarr store, on the cluster, resumable.

The files are opened once in this process with ``xarray.open_dataset(decode_cf=False)``
(lazily: only metadata and index coordinates are read here), group by group, and combined as
``xarray.open_mfdataset`` combines them.  The raw values
and attributes (``_FillValue``, ``scale_factor``/``add_offset``, ``units``, ``calendar``,
packed dtypes) are written unchanged, so ``xarray.open_zarr(dst)`` decodes exactly as
``xarray.open_mfdataset(sources)`` does, and ``decode_cf=False`` views are identical too.
Files that disagree on a variable's encoding are first harmonised exactly
(:mod:`~zarr_dask_utils.convert.consistency`: times re-encoded into one unit, differently
packed values unpacked, fill values mapped; the report's group note says which) or refused
before anything is written.
The netCDF compression keys zarr does not know are translated
(:func:`~zarr_dask_utils.convert.plan.translate_encoding`), never dropped silently.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from distributed import Client

from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils.convert.errors import ConversionInputError
from zarr_dask_utils.convert.harmonise import plan_for_files, preprocess_for
from zarr_dask_utils.convert.progress import ConversionProgress
from zarr_dask_utils.convert.report import ConversionReport
from zarr_dask_utils.convert.run import convert_datasets
from zarr_dask_utils.convert.sources import SourceFile, expand_sources, netcdf_engines, open_input

__all__ = ["netcdf_to_zarr", "open_netcdf_groups"]

Sources = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _require_xarray() -> Any:
    try:
        import xarray as xr
    except ImportError as err:  # pragma: no cover - the convert extra is missing
        raise ImportError(
            "netcdf_to_zarr needs xarray and netCDF4: pip install 'zarr-dask-utils[convert]'"
        ) from err
    return xr


def _groups_of(source: SourceFile, engine: str) -> list[str]:
    """Group paths of a netCDF-4 file (``""`` first), depth first."""
    if source.kind != "netcdf4":
        return [""]
    if engine == "netcdf4":
        import netCDF4

        opened = netCDF4.Dataset(source.path)
    else:
        import h5netcdf

        opened = h5netcdf.File(open_input(source), "r")
    out = [""]
    with opened as nc:
        stack = [("", nc)]
        while stack:
            prefix, node = stack.pop()
            for name, child in sorted(node.groups.items(), reverse=True):
                full = f"{prefix}/{name}".lstrip("/")
                out.append(full)
                stack.append((full, child))
    return out


def _open_one(xr: Any, source: SourceFile, engine: str, kwargs: Mapping[str, Any]) -> Any:
    if engine == "scipy":  # netCDF-3 on an object store: no values in the graph
        from zarr_dask_utils.convert.classic import open_classic

        return open_classic(source, **kwargs)
    return xr.open_dataset(open_input(source), engine=engine, **kwargs)


def _open_files(
    xr: Any, files: Sequence[SourceFile], engines: Sequence[str], kwargs: Mapping[str, Any]
) -> list[Any]:
    """Each file's raw dataset, lazily indexed (no Dask yet), each with its own engine.

    Only the first if it has no variables (a group of subgroups only: its attributes).
    """
    out: list[Any] = []
    try:
        for f, engine in zip(files, engines, strict=True):
            out.append(_open_one(xr, f, engine, kwargs))
            if not out[0].variables:
                break
    except BaseException:
        _close_all(out)
        raise
    return out


def _close_all(datasets: Sequence[Any]) -> None:
    for ds in datasets:
        ds.close()


def _combined(
    xr: Any,
    files: Sequence[SourceFile],
    raw: Sequence[Any],
    engines: Sequence[str],
    group: str,
    chunks: Mapping[str, int],
    concat_dim: str | None,
    plan: Any,
    index: Mapping[str, int],
) -> Any:
    """The files' raw datasets in Dask *chunks*, harmonised, combined as ``open_mfdataset``."""
    from dask.base import tokenize

    parts = [
        ds.chunk(
            dict(chunks),
            name_prefix="open_dataset-",
            token=tokenize(f.path, f.nbytes, engine, group, sorted(chunks.items())),
        )
        for f, ds, engine in zip(files, raw, engines, strict=True)
    ]
    if plan is not None:
        harmonised = preprocess_for(plan, index)
        parts = [harmonised(ds) for ds in parts]
    if concat_dim:
        out = xr.combine_nested(parts, concat_dim=[concat_dim], combine_attrs="override")
    else:
        out = xr.combine_by_coords(parts, combine_attrs="override")
    out.set_close(functools.partial(_close_all, list(raw)))
    return out


def open_netcdf_groups(
    files: Sequence[SourceFile],
    engines: Sequence[str],
    *,
    variables: Sequence[str] | None = None,
    concat_dim: str | None = None,
    chunks: Mapping[str, int] | None = None,
    groups: Sequence[str] | None = None,
    opened: dict[str, Any] | None = None,
) -> list[tuple[str, Any, str]]:
    """Each group of the files as one raw, lazily read dataset: ``(group, dataset, note)``.

    Files are combined by their coordinates (``concat_dim``: along that dimension, in the
    given order), each read by its engine in *engines* (:func:`netcdf_engines`), as
    ``xarray.open_mfdataset`` combines them with xarray's new combine
    defaults (no variable is repeated along the concatenated dimension).  Each file is opened
    once per group: *opened*, if given, keeps the files' raw datasets and the group's
    harmonisation plan between calls (a second call in the regions' *chunks* opens nothing).

    Raises
    ------
    ConversionInputError
        A file that netCDF cannot open, or files that do not combine.
    """
    xr = _require_xarray()
    out = []
    opened = {} if opened is None else opened
    if groups is None:
        try:
            groups = _groups_of(files[0], engines[0])
        except OSError as err:
            raise ConversionInputError(
                f"netCDF cannot open {files[0].path!r} ({err}). Check that it is a complete "
                "netCDF file (a truncated download fails like this): re-download it or leave "
                "it out."
            ) from err
    for group in groups:
        # raw and lazily indexed; cache=False: a task must read its region, not the variable
        kwargs: dict[str, Any] = {
            "decode_cf": False,
            "chunks": None,
            "cache": False,
            "group": group or None,
        }
        plan = None
        try:
            with xr.set_options(use_new_combine_kwarg_defaults=True), warnings.catch_warnings():
                # regions split the files' own chunks on purpose: each task reads its region
                warnings.filterwarnings("ignore", "The specified chunks separate", UserWarning)
                if group not in opened:
                    raw = _open_files(xr, files, engines, kwargs)
                    many = len(raw) > 1
                    opened[group] = (raw, *(plan_for_files(raw, files) if many else (None, {})))
                raw, plan, index = opened[group]
                if not raw[0].variables:
                    ds = raw[0]  # a group of subgroups only: its attributes
                else:
                    ds = _combined(
                        xr, files, raw, engines, group, chunks or {}, concat_dim, plan, index
                    )
        except ConversionInputError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise ConversionInputError(
                f"Cannot open {len(files)} file(s) as one dataset"
                + (f" (group /{group})" if group else "")
                + f": {type(err).__name__}: {err}. Check that every file is a complete "
                "netCDF file and that they share variables and coordinates (pass concat_dim= "
                "to concatenate along a dimension in the given order)."
            ) from err
        if variables:
            missing = sorted(set(variables) - set(ds.variables))
            if missing and not group:
                raise ConversionInputError(
                    f"variables {missing} are not in the files; they hold "
                    f"{sorted(map(str, ds.variables))}. Pick from those."
                )
            keep = [v for v in variables if v in ds.variables]
            ds = ds[keep] if keep else ds.drop_vars(list(ds.data_vars))
        note = "; ".join(
            ([f"netCDF group /{group}"] if group else []) + list(plan.notes if plan else ())
        )
        out.append((group, ds, note))
    return out


def netcdf_to_zarr(
    sources: Sources,
    dst: StoreLike,
    *,
    chunks: Mapping[str, int] | None = None,
    variables: Sequence[str] | None = None,
    concat_dim: str | None = None,
    zarr_format: int = 3,
    compressor: str | None = None,
    shards: Mapping[str, int] | None = None,
    access_pattern: Any = "sequential",
    storage_options: Mapping[str, Any] | None = None,
    target_storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = True,
    verify: bool | None = None,
    client: Client | None = None,
    progress: bool | ConversionProgress | None = None,
) -> ConversionReport:
    """Convert netCDF-3/4 (or HDF5) files to one Zarr store in one Dask graph; resumable.

    Parameters
    ----------
    sources
        A path, a glob (``"data/*.nc"``), a list of them, or ``s3://`` URLs (with
        *storage_options*).  Several files are combined as ``xarray.open_mfdataset`` does.
    dst
        Target path, URL or zarr Store: empty, a partial target of an interrupted run of
        this same conversion (resumed), or anything Zarr with ``overwrite=True``.
    chunks
        Target chunk sizes by dimension name (``{"time": 365}``, ``-1`` = whole); dimensions
        not named are chosen for *access_pattern* (as ``analyze_chunks`` does), within
        ``optimize.min-chunk``/``max-chunk``, never copied from the netCDF chunking.
    variables
        Data variables to convert (default all); coordinates come along.
    concat_dim
        Concatenate the files along this dimension in the given order (default: combine
        by coordinates).
    zarr_format
        2 or 3.
    compressor
        A compressor name for every variable (``"zstd:3"``, ``"blosc-zstd:5"``, ``"none"``…);
        default: the netCDF compression translated (zlib level *n* + shuffle →
        ``blosc-zstd:n`` with byte shuffle), zarr's ``zstd:3`` for uncompressed sources.
    shards
        Shard sizes by dimension name (format 3; multiples of the chunks).
    access_pattern
        The reads the chunks are chosen for: ``"sequential"``, ``"time-series"``,
        ``"spatial"``, ``"random"`` or a mapping of them to weights.
    storage_options, target_storage_options
        fsspec options of the source URLs and of the target URL.
    overwrite
        Replace an existing Zarr store at *dst*.
    resume
        Continue a partial target of the same conversion (``False``: start it over).
    verify
        Read every region back after writing it and compare (default: jobs up to 2 GiB).
    client
        Dask client (default: the door's: current, configured, or an embedded cluster).
    progress
        A :class:`ConversionProgress` (callback, bar), ``True``/``False``, or ``None`` for a
        bar when watched.

    Returns
    -------
    ConversionReport
        Codec chosen per variable and why, chunks, regions written/skipped, size ratio.

    Raises
    ------
    ConversionInputError
        An input is missing, unreadable, not netCDF/HDF5, the files do not combine, or
        they disagree on an encoding that cannot be harmonised exactly (different calendars,
        different non-time units): before anything is written.
    InvalidOptionError
        Bad chunks/shards/compressor, or a non-empty target that is not ours.

    Examples
    --------
    >>> import tempfile, xarray as xr
    >>> from zarr_dask_utils import netcdf_to_zarr
    >>> d = tempfile.mkdtemp()
    >>> xr.Dataset({"t": ("time", [1.0, 2.0])}).to_netcdf(f"{d}/a.nc")
    >>> netcdf_to_zarr(f"{d}/a.nc", f"{d}/a.zarr", progress=False).regions_written
    1
    """
    files = expand_sources(sources, storage_options, kinds=("netcdf3", "netcdf4"))
    engines, reader = netcdf_engines(files)
    raw: dict[str, Any] = {}  # each group's files, opened once
    groups = open_netcdf_groups(
        files, engines, variables=variables, concat_dim=concat_dim, opened=raw
    )
    opened = [ds for _, ds, _ in groups]

    def reopen(group: str, blocks: Mapping[str, int]) -> Any:
        (ds,) = [
            ds
            for _, ds, _ in open_netcdf_groups(
                files,
                engines,
                variables=variables,
                concat_dim=concat_dim,
                chunks=blocks,
                groups=[group],
                opened=raw,
            )
        ]
        opened.append(ds)
        return ds

    try:
        return convert_datasets(
            groups,
            files,
            dst,
            reader=reader,
            chunks=chunks,
            shards=shards,
            compressor=compressor,
            access_pattern=access_pattern,
            zarr_format=zarr_format,
            storage_options=target_storage_options,
            overwrite=overwrite,
            resume=resume,
            verify=verify,
            client=client,
            progress=progress,
            reopen=reopen,
        )
    finally:
        for ds in opened:
            ds.close()  # the files' handles, here (netCDF/HDF5 dislike closing in GC threads)
        for files_of_group, _, _ in raw.values():
            _close_all(files_of_group)
