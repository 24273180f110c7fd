"""Build real netCDF-3/4 and GRIB1/2 files for conversion tests (and users' tests).

Every builder writes with the format's own library (``netCDF4``; ``eccodes`` from its bundled
samples ``regular_ll_sfc_grib1``/``regular_ll_sfc_grib2``) and returns the paths written, so
tests exercise what real files hold: zlib + shuffle, unlimited dimensions, packed integers
with ``scale_factor``/``add_offset``, fill values, times with calendars, strings, groups,
several GRIB hypercubes in one file, and a truncated GRIB.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_ENCODING",
    "NETCDF_KINDS",
    "truncate_file",
    "write_grib",
    "write_netcdf",
    "write_netcdf_series",
]

#: The netCDF files :func:`write_netcdf` makes.
NETCDF_KINDS = ("classic", "netcdf4", "groups", "strings")


def _grid(nc: object, ny: int, nx: int) -> None:
    nc.createDimension("time", None)  # type: ignore[attr-defined]  # unlimited
    nc.createDimension("lat", ny)  # type: ignore[attr-defined]
    nc.createDimension("lon", nx)  # type: ignore[attr-defined]
    lat = nc.createVariable("lat", "f4", ("lat",))  # type: ignore[attr-defined]
    lat.units = "degrees_north"
    lat[:] = np.linspace(-60, 60, ny)
    lon = nc.createVariable("lon", "f4", ("lon",))  # type: ignore[attr-defined]
    lon.units = "degrees_east"
    lon[:] = np.linspace(0, 350, nx)


#: The encodings :func:`write_netcdf` uses unless told otherwise (``encoding=``).
DEFAULT_ENCODING: dict[str, Any] = {
    "time_units": "days since 2000-01-01 00:00:00",
    "time_step": 1,
    "scale_factor": 0.01,
    "add_offset": 273.15,
    "t2m_fill": -32767,
    "tp_fill": 1e20,
}


def _fill(
    nc: object,
    t0: int,
    nt: int,
    ny: int,
    nx: int,
    compress: bool,
    calendar: str,
    enc: dict[str, Any],
) -> None:
    kw = {"zlib": True, "complevel": 4, "shuffle": True} if compress else {}
    time = nc.createVariable("time", "f8", ("time",))  # type: ignore[attr-defined]
    time.units = enc["time_units"]
    time.calendar = calendar
    time[:] = np.arange(t0, t0 + nt, dtype="f8") * enc["time_step"]
    rng = np.random.default_rng(t0 + 1)
    packed = nc.createVariable(  # type: ignore[attr-defined]
        "t2m", "i2", ("time", "lat", "lon"), fill_value=np.int16(enc["t2m_fill"]), **kw
    )
    packed.scale_factor = enc["scale_factor"]
    packed.add_offset = enc["add_offset"]
    packed.units = "K"
    packed.long_name = "2 metre temperature"
    packed.set_auto_maskandscale(False)
    raw = rng.integers(-3000, 3000, (nt, ny, nx)).astype("i2")
    raw[0, 0, :2] = enc["t2m_fill"]  # missing values
    packed[:] = raw
    precip = nc.createVariable(  # type: ignore[attr-defined]
        "tp", "f4", ("time", "lat", "lon"), fill_value=np.float32(enc["tp_fill"]), **kw
    )
    precip.units = "m"
    values = rng.gamma(0.5, 0.002, (nt, ny, nx)).astype("f4")
    values[:, -1, -1] = enc["tp_fill"]
    precip.set_auto_maskandscale(False)
    precip[:] = values


def write_netcdf(
    path: str | os.PathLike[str],
    kind: str = "netcdf4",
    *,
    t0: int = 0,
    nt: int = 6,
    ny: int = 12,
    nx: int = 16,
    calendar: str = "noleap",
    encoding: dict[str, Any] | None = None,
) -> str:
    """Write one netCDF file of *kind* (see :data:`NETCDF_KINDS`) and return its path.

    ``classic``: netCDF-3 classic, uncompressed.  ``netcdf4``: zlib level 4 + shuffle.
    ``groups``: netCDF-4 with the data in the root and in ``/forecast/surface``.
    ``strings``: netCDF-4 with a variable-length string variable and a char array.
    All have an unlimited ``time`` (``calendar``), a packed ``t2m`` (int16, scale/offset,
    fill value) and a float ``tp`` with a fill value; *encoding* overrides
    :data:`DEFAULT_ENCODING` (time units and step, ``t2m`` packing and fill, ``tp`` fill), so
    files of one series can disagree on them.  ``time`` holds ``(t0 + i) * time_step``.
    """
    enc = {**DEFAULT_ENCODING, **(encoding or {})}
    import netCDF4

    path = os.fspath(path)
    fmt: Any = "NETCDF3_CLASSIC" if kind == "classic" else "NETCDF4"
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.title = f"zdu test file ({kind})"
        nc.history = "written by zarr_dask_utils.testing.ncfiles"
        _grid(nc, ny, nx)
        _fill(nc, t0, nt, ny, nx, kind != "classic", calendar, enc)
        if kind == "groups":
            sub = nc.createGroup("forecast").createGroup("surface")
            sub.description = "a nested group"
            _grid(sub, ny // 2, nx // 2)
            _fill(sub, t0, nt, ny // 2, nx // 2, True, calendar, enc)
        if kind == "strings":
            nc.createDimension("station", 4)
            names = nc.createVariable("station_name", str, ("station",))
            for i, name in enumerate(["Oslo", "Lyon", "Graz", "Bern"]):
                names[i] = name
            nc.createDimension("nchar", 3)
            codes = nc.createVariable("station_code", "S1", ("station", "nchar"))
            codes[:] = netCDF4.stringtochar(np.array(["OSL", "LYS", "GRZ", "BRN"], "S3"))
    return path


def write_netcdf_series(
    directory: str | os.PathLike[str],
    kind: str = "netcdf4",
    *,
    files: int = 3,
    nt: int = 6,
    **kw: Any,
) -> list[str]:
    """Write *files* consecutive files (``part-000.nc``…) along ``time``; return their paths."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    return [
        write_netcdf(Path(directory) / f"part-{i:03d}.nc", kind, t0=i * nt, nt=nt, **kw)
        for i in range(files)
    ]


def _message(sample: str, values: np.ndarray, **keys: object) -> bytes:
    import eccodes

    handle = eccodes.codes_grib_new_from_samples(sample)
    try:
        for key, value in keys.items():
            eccodes.codes_set(handle, key, value)
        eccodes.codes_set_values(handle, values.ravel())
        return bytes(eccodes.codes_get_message(handle))
    finally:
        eccodes.codes_release(handle)


def write_grib(
    path: str | os.PathLike[str],
    *,
    edition: int = 2,
    steps: Sequence[int] = (0, 6, 12),
    levels: Sequence[int] = (),
) -> str:
    """Write a GRIB file from eccodes' own ``regular_ll_sfc_grib<edition>`` sample.

    One surface temperature field per step; with *levels*, also temperature on those
    isobaric levels: a second hypercube (``typeOfLevel=isobaricInhPa``) in the same file.
    Values have 16 bits per value so round trips are exact to the packing.
    """
    sample = f"regular_ll_sfc_grib{edition}"
    rng = np.random.default_rng(edition)
    messages = []
    for step in steps:
        values = 250 + 30 * rng.random(16 * 31)
        messages.append(_message(sample, values, step=step, bitsPerValue=16))
        for level in levels:
            values = 200 + 40 * rng.random(16 * 31)
            messages.append(
                _message(
                    sample,
                    values,
                    step=step,
                    typeOfLevel="isobaricInhPa",
                    level=level,
                    bitsPerValue=16,
                )
            )
    Path(path).write_bytes(b"".join(messages))
    return os.fspath(path)


def truncate_file(path: str | os.PathLike[str], keep: int) -> int:
    """Cut *path* to its first *keep* bytes (a negative *keep* drops that many); new size."""
    data = Path(path).read_bytes()
    data = data[:keep]
    Path(path).write_bytes(data)
    return len(data)
