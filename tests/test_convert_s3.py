"""netcdf_to_zarr / ``zdu convert`` with netCDF inputs on S3 (the moto server), read in place."""

from __future__ import annotations

import json
import os
import pickle

import dask
import fsspec
import netCDF4
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from zarr_dask_utils import (
    ConversionInputError,
    StoreAccessDeniedError,
    grib_to_zarr,
    netcdf_to_zarr,
)
from zarr_dask_utils.cli.main import cli
from zarr_dask_utils.convert.classic import ClassicArray, open_classic
from zarr_dask_utils.convert.sources import expand_sources
from zarr_dask_utils.testing.ncfiles import write_netcdf, write_netcdf_series

pytestmark = [pytest.mark.cluster, pytest.mark.s3]


def _upload(paths, bucket, options, prefix="src"):
    fs = fsspec.filesystem("s3", **options)
    for p in paths:
        fs.put(str(p), f"{bucket}/{prefix}/{os.path.basename(p)}")
    return f"s3://{bucket}/{prefix}"


def _assert_identical(paths, dst, groups=("",), decodes=(True, False)):
    """``open_zarr(dst)`` equals ``open_mfdataset`` of the local copies, decoded and raw."""
    with xr.set_options(use_new_combine_kwarg_defaults=True), dask.config.set(scheduler="threads"):
        for group in groups:
            for decode in decodes:
                with (
                    xr.open_mfdataset(paths, decode_cf=decode, group=group or None) as want,
                    xr.open_zarr(dst, decode_cf=decode, group=group or None) as got,
                ):
                    xr.testing.assert_identical(want, got)


@pytest.mark.slow
def test_s3_glob_converts_identical_to_local_copies(
    tmp_path, client, s3_bucket, s3_storage_options
):
    # groups, and files that disagree on packing (harmonised per file: needs each file's name)
    paths = write_netcdf_series(tmp_path / "src", "groups", files=2, nt=6)
    paths.append(
        write_netcdf(
            tmp_path / "src" / "part-002.nc",
            "groups",
            t0=12,
            nt=6,
            encoding={"scale_factor": 0.02, "add_offset": 250.0},
        )
    )
    url = _upload(paths, s3_bucket, s3_storage_options)
    dst = str(tmp_path / "out.zarr")
    report = netcdf_to_zarr(
        f"{url}/*.nc",
        dst,
        storage_options=s3_storage_options,
        chunks={"time": 4},
        client=client,
        progress=False,
    )
    assert report.ok, str(report)
    assert report.sources == tuple(f"{url}/{os.path.basename(p)}" for p in paths)
    assert "h5netcdf" in report.reader
    assert "object store" in report.reader
    assert "'t2m': files packed" in report.groups[0]["note"]
    groups = [g["path"] for g in report.groups if g["path"] != "forecast"]  # no data there
    assert len(groups) >= 2
    # packed and unpacked files differ raw: decoded, they are what xarray makes of the files
    # (raw identity: test_cli_reads_s3_sources_with_storage_options)
    _assert_identical(paths, dst, groups, decodes=(True,))


def test_cli_reads_s3_sources_with_storage_options(tmp_path, client, s3_bucket, s3_storage_options):
    paths = write_netcdf_series(tmp_path / "src", "netcdf4", files=2, nt=4)
    url = _upload(paths, s3_bucket, s3_storage_options)
    dst = str(tmp_path / "cli.zarr")
    opts = [x for k, v in s3_storage_options.items() for x in ("-o", f"{k}={v}")]
    result = CliRunner().invoke(
        cli,
        ["convert", f"{url}/*.nc", dst, *opts, "--json", "--scheduler", client.scheduler.address],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["regions_written"] >= 2
    assert "testing" not in result.stdout  # credentials never printed
    _assert_identical(paths, dst)


def _with_station_codes(path):
    """*path* with a char array (``S1``, one code shorter) and a ``missing_value`` variable."""
    with netCDF4.Dataset(path, "a") as nc:
        nc.createDimension("station", 4)
        nc.createDimension("nchar", 3)
        codes = nc.createVariable("station_code", "S1", ("station", "nchar"))
        codes[:] = netCDF4.stringtochar(np.array(["OSL", "LY", "GRZ", "BRN"], "S3"))
        height = nc.createVariable("height", "f8", ("station",))
        height.missing_value = -999.0
        height.units = "m"
        height[:] = [12.0, -999.0, 353.0, 540.0]
    return path


@pytest.mark.slow
@pytest.mark.parametrize("last", ["classic", "netcdf4", "packed"])
def test_s3_netcdf3_converts_identical_to_local_copies(
    tmp_path, client, s3_bucket, s3_storage_options, last
):
    paths = write_netcdf_series(tmp_path / "src", "classic", files=3, nt=4, calendar="360_day")
    mix = last == "netcdf4"  # scipy and h5netcdf read one dataset together
    if last != "classic":  # packed: a classic file packed otherwise (harmonised per file)
        enc = {"scale_factor": 0.02, "add_offset": 250.0} if last == "packed" else None
        kind = "netcdf4" if mix else "classic"
        paths[-1] = write_netcdf(paths[-1], kind, t0=8, nt=4, calendar="360_day", encoding=enc)
    paths = [_with_station_codes(p) for p in paths]
    url = _upload(paths, s3_bucket, s3_storage_options)
    dst = str(tmp_path / "out.zarr")
    report = netcdf_to_zarr(
        f"{url}/*.nc",
        dst,
        storage_options=s3_storage_options,
        chunks={"time": 3},  # regions straddle files
        client=client,
        progress=False,
    )
    assert report.ok, str(report)
    assert report.regions_written >= 4
    assert "scipy engine (netCDF-3 on an object store" in report.reader
    assert ("h5netcdf engine (netCDF-4/HDF5 on an object store" in report.reader) is mix
    if last == "packed":  # raw values differ (unpacked): decoded, they are xarray's
        assert "'t2m': files packed" in report.groups[0]["note"]
        _assert_identical(paths, dst, decodes=(True,))
    else:  # decoded and raw: fill values, packing, missing_value, calendar, char arrays
        _assert_identical(paths, dst)


def test_remote_netcdf3_graph_holds_no_values(tmp_path, s3_bucket, s3_storage_options):
    path = write_netcdf(tmp_path / "c.nc", "classic", nt=40, ny=32, nx=32)
    url = _upload([path], s3_bucket, s3_storage_options, prefix="classic")
    (source,) = expand_sources(f"{url}/c.nc", s3_storage_options)
    with (
        open_classic(source, decode_cf=False, chunks=None, cache=False) as got,
        xr.open_dataset(path, engine="netcdf4", decode_cf=False) as want,
    ):
        xr.testing.assert_identical(got.compute(), want.load())  # a copy: got stays lazy
        lazy = got.chunk({"time": 10})["t2m"].data
        assert len(pickle.dumps(dict(lazy.dask))) < lazy.nbytes // 4  # URLs, not values
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(lazy)).compute(), want["t2m"])
    array = ClassicArray(source, "tp", (40, 32, 32), "f4")
    assert pickle.loads(pickle.dumps(array)).source == source


def _write_netcdf3(path, fmt):
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.createDimension("x", 3)
        v = nc.createVariable("v", "f4", ("x",), fill_value=np.float32(-1))
        v[:] = [1.0, -1.0, 3.0]
    return str(path)


def test_remote_64bit_offset_reads_and_cdf5_is_refused(tmp_path, s3_bucket, s3_storage_options):
    so = s3_storage_options
    offset = _write_netcdf3(tmp_path / "offset.nc", "NETCDF3_64BIT_OFFSET")
    cdf5 = _write_netcdf3(tmp_path / "cdf5.nc", "NETCDF3_64BIT_DATA")
    url = _upload([offset, cdf5], s3_bucket, so, prefix="v")
    (source,) = expand_sources(f"{url}/offset.nc", so)
    for decode in (True, False):
        with (
            open_classic(source, decode_cf=decode, chunks=None, cache=False) as got,
            xr.open_dataset(offset, decode_cf=decode) as want,
        ):
            xr.testing.assert_identical(got.compute(), want.load())
    with pytest.raises(ConversionInputError, match="CDF-5"):  # scipy cannot: refused
        netcdf_to_zarr(f"{url}/cdf5.nc", str(tmp_path / "c.zarr"), storage_options=so)
    assert not os.path.exists(tmp_path / "c.zarr")


def test_missing_objects_are_input_errors_grib_on_s3_is_refused(
    tmp_path, s3_bucket, s3_storage_options
):
    so = s3_storage_options
    with pytest.raises(ConversionInputError, match="No file matches"):
        netcdf_to_zarr(f"s3://{s3_bucket}/none/*.nc", str(tmp_path / "a.zarr"), storage_options=so)
    with pytest.raises(ConversionInputError, match="does not exist"):
        netcdf_to_zarr(f"s3://{s3_bucket}/gone.nc", str(tmp_path / "b.zarr"), storage_options=so)
    url = f"s3://{s3_bucket}/grib"
    with pytest.raises(ConversionInputError, match="cfgrib/ecCodes, which need local paths"):
        grib_to_zarr(f"{url}/c.grib", str(tmp_path / "d.zarr"))
    assert not os.path.exists(tmp_path / "d.zarr")  # refused before anything was written


@pytest.mark.slow  # botocore retries the dead endpoint for ~3 s
def test_bad_credentials_and_unreachable_endpoint(tmp_path, s3_auth_server):
    bad = s3_auth_server.storage_options(secret="wrong-secret")
    with pytest.raises(StoreAccessDeniedError, match="denied") as info:
        netcdf_to_zarr(f"s3://{s3_auth_server.bucket}/*.nc", str(tmp_path / "a.zarr"),
                       storage_options=bad)  # fmt: skip
    assert info.value.kind == "access-denied"
    assert "wrong-secret" not in str(info.value)
    with pytest.raises(StoreAccessDeniedError, match="denied"):  # one object named
        netcdf_to_zarr(f"s3://{s3_auth_server.bucket}/x.nc", str(tmp_path / "b.zarr"),
                       storage_options=bad)  # fmt: skip
    # the CLI maps the unreachable endpoint (EndpointUnreachableError) to exit 2
    result = CliRunner().invoke(
        cli, ["convert", "s3://bucket/*.nc", str(tmp_path / "c.zarr"), "--json",
              "-o", "endpoint_url=http://127.0.0.1:9", "-o", "key=a", "-o", "secret=b"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"]["kind"] == "endpoint-unreachable"
