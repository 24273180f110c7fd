"""``zdu convert``: in-process runs, exit codes, and a killed conversion that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import pytest
import xarray as xr
from click.testing import CliRunner

from zarr_dask_utils.cli.main import cli
from zarr_dask_utils.testing.ncfiles import truncate_file, write_grib, write_netcdf_series

pytestmark = pytest.mark.cluster


def _run(args, client):
    return CliRunner().invoke(cli, [*args, "--scheduler", client.scheduler.address])


def _identical(paths, dst):
    # compared on threads here: the values are small, the cluster is for the conversion
    with xr.set_options(use_new_combine_kwarg_defaults=True), dask.config.set(scheduler="threads"):
        for decode in (True, False):
            with (
                xr.open_mfdataset(paths, decode_cf=decode) as want,
                xr.open_zarr(dst, decode_cf=decode) as got,
            ):
                xr.testing.assert_identical(want, got)


def test_convert_netcdf_json(tmp_path, client):
    paths = write_netcdf_series(tmp_path / "src", "netcdf4", files=2)
    dst = str(tmp_path / "out.zarr")
    result = _run(["convert", *paths, dst, "--chunks", "time=4", "--format", "2", "--json"], client)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["report"] == "ConversionReport"
    assert data["zarr_format"] == 2
    assert data["regions_written"] == 6
    assert 0 < data["size_ratio"] < 1
    _identical(paths, dst)


def test_unreadable_input_exits_2(tmp_path, client):
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a netcdf file")
    result = _run(["convert", str(junk), str(tmp_path / "o.zarr"), "--json"], client)
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "conversion-input"
    assert "junk.nc" in error["message"]
    assert not (tmp_path / "o.zarr").exists()


def test_truncated_grib_exit_2_then_skip_corrupt_advice(tmp_path, client):
    path = write_grib(tmp_path / "t.grib2")
    truncate_file(path, os.path.getsize(path) - 100)
    dst = str(tmp_path / "t.zarr")
    result = _run(["convert", path, dst, "--json"], client)
    assert result.exit_code == 2
    message = json.loads(result.stdout)["error"]["message"]
    assert "message 3" in message
    assert "zdu convert --skip-corrupt" in message
    # the advice, run: the readable messages are converted, a warning says what was left out
    result = _run(["convert", path, dst, "--skip-corrupt", "--json"], client)
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert [f["code"] for f in data["findings"]] == ["grib-truncated"]
    with xr.open_zarr(dst) as got:
        assert got.sizes["step"] == 2


def _markers(dst: Path) -> int:
    done = dst / ".zdu-rechunk" / "done" / "convert"
    if not done.is_dir():
        return 0
    return sum(1 for p in done.rglob("b*") if p.is_file() and not p.name.endswith(".partial"))


@pytest.mark.slow
@pytest.mark.timeout(900)  # two conversions and a comparison of 400 regions; slow under load
def test_killed_conversion_resumes_to_identical_result(tmp_path, client):
    paths = write_netcdf_series(tmp_path / "src", "netcdf4", files=4, nt=50, ny=24, nx=32)
    dst = tmp_path / "out.zarr"
    args = ["convert", *paths, str(dst), "--chunks", "time=1", "--no-progress", "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "zarr_dask_utils", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and _markers(dst) < 10:
            time.sleep(0.05)
        assert proc.poll() is None, "the conversion ended before it could be killed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    landed = _markers(dst)
    assert 10 <= landed < 400
    assert (dst / ".zdu-rechunk" / "partial.json").is_file()
    assert not (dst / "zarr.json").exists()  # no complete-looking target while partial
    result = _run(args, client)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["resumed"] is True
    assert data["regions_skipped"] >= landed - 2  # regions in flight may land after the count
    assert data["regions_written"] + data["regions_skipped"] == 400
    _identical(paths, str(dst))
    assert not (dst / ".zdu-rechunk").exists()
