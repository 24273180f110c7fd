r"""The input files of a conversion: expand paths and globs, read the magic bytes, pick engines.

A netCDF-3 file starts with ``CDF\\x01``/``\\x02``/``\\x05``, netCDF-4 and HDF5 with
``\\x89HDF``, GRIB with ``GRIB``.  Each file gets its engine (:func:`netcdf_engines`): local
files share one, ``h5netcdf`` for netCDF-4/HDF5 only (less CPU per region read than the
netCDF4 library: see ``benchmarks/README.md``), else ``netcdf4`` (it reads netCDF-3 and -4).
An input that is missing, unreadable or of another kind is a :class:`ConversionInputError`
(``zdu convert`` exit 2) naming it, before anything is written; storage failures of URLs
(denied, endpoint unreachable, no bucket) are the project's storage errors
(``translate_storage_error``).

Inputs on an object store (``s3://…``) are read in place through fsspec file objects
(:func:`open_input`): globs are expanded by fsspec; netCDF-4/HDF5 is read by ``h5netcdf``, whose
file objects Dask pickles as "reopen this URL" so every worker reads only the byte ranges of
its regions.  netCDF-3 is read by xarray's ``scipy`` engine (neither h5netcdf nor the netCDF4
library reads it from a file object), which reads a file object's values whole when it opens
it: :mod:`~zarr_dask_utils.convert.classic` keeps the values out of the graph, and a process
reading regions of a file downloads it whole and keeps its last two files for the next ones.
A mix of kinds is combined as one dataset, each file read by its own engine.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zarr_dask_utils._core.errors import ZarrDaskUtilsError
from zarr_dask_utils._core.storage.locations import redact
from zarr_dask_utils._core.storage.storeio import translate_storage_error
from zarr_dask_utils.convert.errors import ConversionInputError

__all__ = [
    "SourceFile",
    "detect_kind",
    "expand_sources",
    "netcdf_engines",
    "open_input",
]

_MAGIC = {
    b"CDF\x01": "netcdf3",
    b"CDF\x02": "netcdf3",
    b"CDF\x05": "netcdf3",
    b"\x89HDF": "netcdf4",
    b"GRIB": "grib",
}


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One input: its path or URL, its kind and its size in bytes."""

    path: str
    kind: str  # "netcdf3", "netcdf4" (netCDF-4 or HDF5) or "grib"
    nbytes: int
    storage_options: Mapping[str, Any] | None = None  # fsspec options of a URL

    @property
    def is_remote(self) -> bool:
        """Whether the file is a URL read through fsspec (not a local path)."""
        return _is_remote(self.path)


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def detect_kind(head: bytes) -> str | None:
    r"""The kind of a file from its first bytes (``None``: not netCDF/HDF5/GRIB).

    Examples
    --------
    >>> detect_kind(b"CDF\\x01...")
    'netcdf3'
    >>> detect_kind(b"PK\\x03\\x04") is None
    True
    """
    return _MAGIC.get(head[:4])


def _fs(url: str, storage_options: Mapping[str, Any] | None) -> Any:
    import fsspec

    fs, _ = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return fs


def _remote_error(err: Exception, url: str) -> Exception:
    """The storage error of a URL (denied, unreachable, no bucket), else *err* itself."""
    return translate_storage_error(err, redact(url)) or err


def _expand_one(item: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    if "://" in item:
        protocol = item.split("://", 1)[0]
        try:
            fs = _fs(item, storage_options)
            found = sorted(fs.glob(item)) if glob.has_magic(item) else [item]
        except Exception as err:
            raise _remote_error(err, item) from err
        return [f if "://" in f else f"{protocol}://{f}" for f in found]
    if storage_options:
        raise ConversionInputError(
            f"storage_options were given but {item!r} is a local path: they would be ignored. "
            "Drop them, or pass an s3:// URL."
        )
    if glob.has_magic(item):
        return sorted(glob.glob(os.path.expanduser(item)))
    return [os.path.abspath(os.path.expanduser(item))]


def _read_head(path: str, storage_options: Mapping[str, Any] | None) -> tuple[bytes, int]:
    try:
        if "://" in path:
            try:
                fs = _fs(path, storage_options)
                with fs.open(path, "rb", block_size=2**16) as f:
                    return f.read(8), int(f.size)
            except FileNotFoundError:
                raise
            except Exception as err:
                raise _remote_error(err, path) from err
        with open(path, "rb") as f:
            return f.read(8), os.path.getsize(path)
    except ZarrDaskUtilsError:
        raise  # a storage error of a URL, already clear
    except FileNotFoundError as err:
        raise ConversionInputError(
            f"Input {path!r} does not exist. Check the path (globs are expanded: quote them "
            "so the shell does not)."
        ) from err
    except IsADirectoryError as err:
        raise ConversionInputError(
            f"Input {path!r} is a directory. Pass the files in it, e.g. '{path}/*.nc'."
        ) from err
    except OSError as err:
        raise ConversionInputError(
            f"Input {path!r} cannot be read ({type(err).__name__}: {err}). Check its "
            "permissions (or credentials for a URL)."
        ) from err


def expand_sources(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    storage_options: Mapping[str, Any] | None = None,
    *,
    kinds: Sequence[str] = ("netcdf3", "netcdf4", "grib"),
) -> list[SourceFile]:
    """Every input file (globs expanded, in the given order), with its kind, checked readable.

    Raises
    ------
    ConversionInputError
        No file matches, a file is missing or unreadable, or its kind is not in *kinds*.
    """
    items = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    paths: list[str] = []
    for item in items:
        found = _expand_one(os.fspath(item), storage_options)
        if not found:
            raise ConversionInputError(
                f"No file matches {os.fspath(item)!r}. Check the pattern and the directory."
            )
        paths.extend(found)
    if not paths:
        raise ConversionInputError("No input files were given: pass at least one path or URL.")
    out = []
    for path in paths:
        head, size = _read_head(path, storage_options)
        kind = detect_kind(head)
        if kind is None or kind not in kinds:
            what = "an empty file" if not head else f"a file starting with {head[:4]!r}"
            raise ConversionInputError(
                f"Input {path!r} is {what}, not {' or '.join(kinds)} (identified by its first "
                "bytes). Remove it from the inputs, or re-download it if it was truncated."
            )
        options = dict(storage_options or {}) if _is_remote(path) else None
        out.append(SourceFile(path, kind, size, options))
    return out


def open_input(source: SourceFile) -> Any:
    """What xarray opens for *source*: its local path, or a fresh fsspec file object of a URL.

    A file object pickles as its URL and options (fsspec reopens it), so the Dask tasks that
    read a region open the file on the worker and fetch only the byte ranges they need.
    """
    if not source.is_remote:
        return source.path
    try:
        fs = _fs(source.path, source.storage_options)
        return fs.open(source.path, "rb")
    except Exception as err:
        raise _remote_error(err, source.path) from err


def _local_engine(kinds: set[str]) -> tuple[str, str]:
    """The engine of the local files (one for all of them) and why."""
    if "netcdf3" not in kinds and importlib.util.find_spec("h5netcdf") is not None:
        return "h5netcdf", (
            "netCDF-4/HDF5 only: h5netcdf reads a region with ~2/3 of the netCDF4 engine's CPU "
            "(benchmarks/README.md, bench_convert)"
        )
    if importlib.util.find_spec("netCDF4") is not None:
        return "netcdf4", f"netCDF4 library: reads {' and '.join(sorted(kinds))}"
    if "netcdf3" in kinds:
        raise ConversionInputError(
            "netCDF-3 inputs need the netCDF4 library (h5netcdf reads only netCDF-4/HDF5). "
            "Install zarr-dask-utils[convert]."
        )
    return "h5netcdf", "h5netcdf: netCDF4 library not installed"


_REMOTE = {
    "netcdf4": (
        "h5netcdf",
        "h5netcdf",
        "netCDF-4/HDF5 on an object store: h5netcdf reads fsspec file objects on the workers, "
        "byte ranges only",
    ),
    "netcdf3": (
        "scipy",
        "scipy",
        "netCDF-3 on an object store: scipy reads fsspec file objects, each file whole, once "
        "per process that reads it",
    ),
}


def netcdf_engines(files: Sequence[SourceFile]) -> tuple[tuple[str, ...], str]:
    """The xarray engine of each file, and the report's reader line saying which read what.

    Local files share one engine: ``h5netcdf`` for netCDF-4/HDF5 only, else ``netcdf4``
    (it reads both).  Files on an object store are read through fsspec file objects:
    netCDF-4/HDF5 by ``h5netcdf`` (byte ranges), netCDF-3 by ``scipy``
    (:func:`~zarr_dask_utils.convert.classic.open_classic`: whole files).
    """
    local = {f.kind for f in files if not f.is_remote}
    engines: dict[str, str] = {}  # engine -> why, in the order of first use
    if local:
        engine, why = _local_engine(local)
        engines[engine] = why
    chosen = []
    for f in files:
        if not f.is_remote:
            chosen.append(next(iter(engines)))
            continue
        engine, module, why = _REMOTE[f.kind]
        if importlib.util.find_spec(module) is None:  # pragma: no cover - [convert] has it
            raise ConversionInputError(
                f"{redact(f.path)} is read with {module}, which is not installed. "
                "Install zarr-dask-utils[convert]."
            )
        engines[engine] = f"{engines[engine]}; {why}" if engine in engines else why
        chosen.append(engine)
    reader = "; ".join(f"{engine} engine ({why})" for engine, why in engines.items())
    return tuple(chosen), f"xarray {reader}"
