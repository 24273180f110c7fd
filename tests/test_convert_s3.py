"""netcdf_to_zarr / ``zdu convert`` with netCDF inputs on S3 (the moto server), read in place."""

from __future__ import annotations

import json
import os

import dask
import fsspec
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


def test_missing_objects_and_classic_files_are_input_errors(
    tmp_path, s3_bucket, s3_storage_options
):
    so = s3_storage_options
    with pytest.raises(ConversionInputError, match="No file matches"):
        netcdf_to_zarr(f"s3://{s3_bucket}/none/*.nc", str(tmp_path / "a.zarr"), storage_options=so)
    with pytest.raises(ConversionInputError, match="does not exist"):
        netcdf_to_zarr(f"s3://{s3_bucket}/gone.nc", str(tmp_path / "b.zarr"), storage_options=so)
    classic = write_netcdf(tmp_path / "c.nc", "classic")
    url = _upload([classic], s3_bucket, so, prefix="classic")
    with pytest.raises(ConversionInputError, match="netCDF-3 file on an object store"):
        netcdf_to_zarr(f"{url}/c.nc", str(tmp_path / "c.zarr"), storage_options=so)
    with pytest.raises(ConversionInputError, match="cfgrib/ecCodes, which need local paths"):
        grib_to_zarr(f"{url}/c.grib", str(tmp_path / "d.zarr"))
    assert not os.path.exists(tmp_path / "c.zarr")  # refused before anything was written


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
