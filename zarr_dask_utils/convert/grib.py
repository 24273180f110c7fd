"""``grib_to_zarr``: GRIB1/2 files → one Zarr group per hypercube, on the cluster, resumable.

Every file is first scanned message by message with eccodes: a truncated or corrupt message
is a :class:`~zarr_dask_utils.convert.errors.GribCorruptError` naming the file, the message
number and its byte offset, and how many messages before it are readable
(``skip_corrupt=True`` converts those and reports what was left out).  The hypercubes are
found with ``cfgrib.open_datasets`` (a file mixing levels or step types makes several; plain
``xarray.open_dataset`` fails on them with "multiple values for unique key"); each becomes a
group named from the keys that separate it (``isobaricInhPa``, ``surface``…; a single
hypercube is the root).  cfgrib's index files go to a temporary directory removed at the
end, never beside the inputs (which may be read-only).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from distributed import Client

from zarr_dask_utils._core.pure.reports import Finding
from zarr_dask_utils._core.storage.locations import StoreLike, redact
from zarr_dask_utils.convert.errors import ConversionInputError, GribCorruptError
from zarr_dask_utils.convert.progress import ConversionProgress
from zarr_dask_utils.convert.report import ConversionReport
from zarr_dask_utils.convert.run import convert_datasets
from zarr_dask_utils.convert.sources import SourceFile, expand_sources

__all__ = ["grib_to_zarr", "open_grib_groups", "scan_grib"]

_SPLIT_KEYS = ("typeOfLevel", "stepType", "level", "shortName")


def scan_grib(path: str) -> tuple[int, int, str | None]:
    """Read every message header of *path*: ``(readable messages, their bytes, error)``."""
    try:
        import eccodes
    except ImportError as err:  # pragma: no cover - the convert extra is missing
        raise ImportError(
            "grib_to_zarr needs eccodes: pip install 'zarr-dask-utils[convert]'"
        ) from err
    count = 0
    with open(path, "rb") as f:
        while True:
            pos = f.tell()
            try:
                handle = eccodes.codes_grib_new_from_file(f)
            except Exception as err:  # eccodes' errors share no useful base class
                return count, pos, f"{type(err).__name__}: {err}"
            if handle is None:
                return count, pos, None
            eccodes.codes_release(handle)
            count += 1


def _check_files(
    files: Sequence[SourceFile], skip_corrupt: bool, tmp: str
) -> tuple[list[SourceFile], list[Finding]]:
    out, findings = [], []
    for i, f in enumerate(files):
        count, good, error = scan_grib(f.path)
        if error is None:
            out.append(f)
            continue
        where = f"{f.path!r}: message {count + 1} at byte {good}"
        before = (
            f"the {count} message(s) before it (bytes 0-{good - 1})"
            if count
            else "no message before it"
        )
        if not skip_corrupt or not count:
            raise GribCorruptError(
                f"GRIB file {where} is truncated or corrupt ({error}); {before} "
                + ("are readable. " if count else "is readable. ")
                + "Re-download the file, or convert the readable messages only with "
                "skip_corrupt=True (zdu convert --skip-corrupt)."
            )
        trimmed = os.path.join(tmp, f"readable-{i}-{os.path.basename(f.path)}")
        with open(f.path, "rb") as src, open(trimmed, "wb") as dst:
            dst.write(src.read(good))
        out.append(SourceFile(trimmed, f.kind, good))
        findings.append(
            Finding(
                "warning",
                "grib-truncated",
                f.path,
                f"GRIB file {where} is truncated or corrupt ({error}); converted {before}, "
                f"the {f.nbytes - good} byte(s) from there on were left out.",
                "Re-download the file and convert it into a new target; this one holds the rest.",
            )
        )
    return out, findings


def _group_name(keys: Mapping[str, Any], varying: set[str]) -> str:
    parts = [str(keys[k]) for k in _SPLIT_KEYS if k in keys and k in varying]
    return "-".join(parts) or "data"


def open_grib_groups(
    files: Sequence[SourceFile],
    tmp: str,
    *,
    filter_by_keys: Mapping[str, Any] | None = None,
    variables: Sequence[str] | None = None,
    chunks: Mapping[str, int] | None = None,
) -> list[tuple[str, Any, str]]:
    """Each hypercube as one raw (``decode_cf=False``) lazily read dataset: ``(group, ds, note)``.

    Hypercubes of the same keys in several files are combined by their coordinates.
    """
    import cfgrib
    import xarray as xr

    cubes: dict[tuple[tuple[str, Any], ...], list[Any]] = {}
    for i, f in enumerate(files):
        kwargs: dict[str, Any] = {"indexpath": os.path.join(tmp, f"{i}-{{short_hash}}.idx")}
        if filter_by_keys:
            kwargs["filter_by_keys"] = dict(filter_by_keys)
        try:
            decoded = cfgrib.open_datasets(f.path, backend_kwargs=kwargs, chunks={})
        except Exception as err:  # cfgrib raises many kinds
            raise ConversionInputError(
                f"cfgrib cannot read {f.path!r} ({type(err).__name__}: {err}). Check that it is "
                "a complete GRIB file (zdu convert names the first bad message)."
            ) from err
        for cube in decoded:
            parts = []
            names = [n for n in cube.data_vars if not variables or n in variables]
            for name in names:
                fbk = dict(cube[name].encoding.get("filter_by_keys", {}))
                parts.append(
                    xr.open_dataset(
                        f.path,
                        engine="cfgrib",
                        decode_cf=False,
                        chunks=dict(chunks or {}),
                        backend_kwargs={**kwargs, "filter_by_keys": fbk},
                    )
                )
            if not parts:
                continue
            raw = xr.merge(parts, compat="override", join="exact", combine_attrs="override")
            keys = {
                k: v
                for k, v in cube[names[0]].encoding.get("filter_by_keys", {}).items()
                if k != "paramId"
            }
            cubes.setdefault(tuple(sorted(keys.items())), []).append(raw)
    if not cubes:
        raise ConversionInputError(
            f"No GRIB message of {len(files)} file(s) matches the filter or variables given. "
            "Drop filter_by_keys/variables to see what the files hold."
        )
    varying = {k for key in cubes for k, _ in key} if len(cubes) > 1 else set()
    out = []
    for key, parts in cubes.items():
        keys = dict(key)
        if len(parts) > 1:
            with xr.set_options(use_new_combine_kwarg_defaults=True):  # type: ignore[no-untyped-call]
                ds = xr.combine_by_coords(parts, combine_attrs="override")
        else:
            ds = parts[0]
        name = _group_name(keys, varying) if len(cubes) > 1 else ""
        note = (
            f"GRIB hypercube {keys}: the files hold {len(cubes)} hypercubes that cannot share "
            "one dataset (different levels or step types), so each is its own group"
            if len(cubes) > 1
            else ""
        )
        out.append((name, ds, note))
    return out


def grib_to_zarr(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    dst: StoreLike,
    *,
    filter_by_keys: Mapping[str, Any] | None = None,
    variables: Sequence[str] | None = None,
    chunks: Mapping[str, int] | None = None,
    zarr_format: int = 3,
    compressor: str | None = None,
    shards: Mapping[str, int] | None = None,
    access_pattern: Any = "sequential",
    target_storage_options: Mapping[str, Any] | None = None,
    skip_corrupt: bool = False,
    overwrite: bool = False,
    resume: bool = True,
    verify: bool | None = None,
    client: Client | None = None,
    progress: bool | ConversionProgress | None = None,
) -> ConversionReport:
    """Convert GRIB1/2 files to Zarr: one group per hypercube, in one Dask graph; resumable.

    Parameters
    ----------
    sources
        Local GRIB file paths or globs.
    dst
        Target path, URL or zarr Store (see :func:`~zarr_dask_utils.netcdf_to_zarr`).
    filter_by_keys
        cfgrib's filter (``{"typeOfLevel": "surface"}``): only matching messages.
    variables
        Variables (cfgrib names, e.g. ``t2m``) to keep.
    skip_corrupt
        Convert the readable messages before a truncated/corrupt one (a warning finding
        says what was left out) instead of failing.
    chunks, zarr_format, compressor, shards, access_pattern
        As for :func:`~zarr_dask_utils.netcdf_to_zarr`.
    target_storage_options, overwrite, resume, verify, client, progress
        As for :func:`~zarr_dask_utils.netcdf_to_zarr`.

    Returns
    -------
    ConversionReport
        ``groups`` explains the split into hypercubes.

    Raises
    ------
    GribCorruptError
        A truncated or corrupt message (file, message number, byte offset named).
    ConversionInputError
        A missing or unreadable input, or one that is not GRIB.
    """
    names = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    remote = [os.fspath(n) for n in names if "://" in os.fspath(n)]
    if remote:
        raise ConversionInputError(
            f"{redact(remote[0])} is a URL: GRIB files are read with cfgrib/ecCodes, which need "
            "local paths. Copy the GRIB files to a local directory (e.g. `aws s3 cp`) and "
            "convert them from there."
        )
    files = expand_sources(sources, None, kinds=("grib",))
    tmp = tempfile.mkdtemp(prefix="zdu-grib-index-")
    try:
        readable, findings = _check_files(files, skip_corrupt, tmp)
        groups = open_grib_groups(readable, tmp, filter_by_keys=filter_by_keys, variables=variables)
        opened = [ds for _, ds, _ in groups]

        def reopen(group: str, blocks: Mapping[str, int]) -> Any:
            """The group again, read in region-sized pieces (bounded memory per task)."""
            again = open_grib_groups(
                readable, tmp, filter_by_keys=filter_by_keys, variables=variables, chunks=blocks
            )
            opened.extend(ds for _, ds, _ in again)
            return next(ds for name, ds, _ in again if name == group)

        try:
            return convert_datasets(
                groups,
                files,
                dst,
                reader="cfgrib + eccodes (index files in a temporary directory)",
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
                findings=findings,
                reopen=reopen,
            )
        finally:
            for ds in opened:
                ds.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
