"""netcdf_to_zarr on real netCDF-3/4 files: identity with xarray, encodings, progress, errors."""

from __future__ import annotations

import os

import dask
import pytest
import xarray as xr
import zarr

from zarr_dask_utils import (
    ConversionInputError,
    ConversionProgress,
    InvalidOptionError,
    netcdf_to_zarr,
)
from zarr_dask_utils.testing.ncfiles import truncate_file, write_netcdf, write_netcdf_series

pytestmark = pytest.mark.cluster


def assert_same_as_xarray(paths, dst, groups=("",)):
    """``open_zarr(dst)`` is identical to ``open_mfdataset(paths)``, decoded and raw."""
    # compared on threads here: the values are small, the cluster is for the conversion
    with xr.set_options(use_new_combine_kwarg_defaults=True), dask.config.set(scheduler="threads"):
        for group in groups:
            for decode in (True, False):
                with (
                    xr.open_mfdataset(paths, decode_cf=decode, group=group or None) as want,
                    xr.open_zarr(dst, decode_cf=decode, group=group or None) as got,
                ):
                    xr.testing.assert_identical(want, got)


@pytest.mark.parametrize(
    ("kind", "zarr_format", "calendar"),
    [
        ("classic", 3, "standard"),
        ("netcdf4", 2, "360_day"),
        ("groups", 3, "noleap"),
        ("strings", 3, "julian"),
    ],
)
def test_files_convert_identical_to_open_mfdataset(tmp_path, client, kind, zarr_format, calendar):
    paths = write_netcdf_series(tmp_path / "src", kind, files=3, calendar=calendar)
    dst = str(tmp_path / "out.zarr")
    report = netcdf_to_zarr(
        paths, dst, zarr_format=zarr_format, chunks={"time": 4}, client=client, progress=False
    )
    assert report.ok, str(report)
    groups = [g["path"] for g in report.groups if g["path"] != "forecast"]  # /forecast: no data
    assert_same_as_xarray(paths, dst, groups)
    rows = {v["path"]: v for v in report.variables}
    assert rows["t2m"]["chunks"] == [4, 12, 16]
    assert report.regions_written == 2 * 5 * (len(groups))  # 18 steps / 4 -> 5 regions, 2 vars
    assert report.verified
    assert report.resumed is False
    assert not any(k.startswith(".zdu") for k in os.listdir(dst))  # markers gone
    expected = "blosc-zstd:4" if kind != "classic" else "zstd:3"
    assert rows["t2m"]["compressor"] == expected
    if kind == "groups":
        assert "forecast/surface/t2m" in rows
        assert zarr.open_group(dst, mode="r")["forecast"].attrs.asdict() == {}


def test_encodings_translated_and_reported(tmp_path, client):
    paths = write_netcdf_series(tmp_path / "src", "netcdf4", files=2)
    dst = str(tmp_path / "out.zarr")
    report = netcdf_to_zarr(paths, dst, client=client, progress=False)
    t2m = zarr.open_array(dst, path="t2m", mode="r")
    codecs = [c.to_dict()["name"] for c in t2m.metadata.codecs]
    assert "blosc" in codecs
    blosc = next(c for c in t2m.metadata.codecs if c.to_dict()["name"] == "blosc")
    assert blosc.to_dict()["configuration"]["cname"] == "zstd"
    assert blosc.to_dict()["configuration"]["shuffle"] == "shuffle"
    row = next(v for v in report.variables if v["path"] == "t2m")
    assert row["source"] == "zlib level 4 + shuffle"
    assert "zstd" in row["reason"]
    assert report.source_bytes == sum(os.path.getsize(p) for p in paths)
    assert 0 < report.size_ratio < 1  # compressed as well as the netCDF files, or better
    data = report.to_dict()
    assert data["size_ratio"] == pytest.approx(report.size_ratio, abs=1e-3)
    assert "blosc-zstd:4" in str(report)


def test_requested_compressor_shards_and_variables(tmp_path, client):
    paths = write_netcdf_series(tmp_path / "src", "netcdf4", files=2)
    dst = str(tmp_path / "out.zarr")
    report = netcdf_to_zarr(
        paths,
        dst,
        variables=["t2m"],
        chunks={"time": 2, "lat": 6},
        shards={"time": 4, "lat": -1},
        compressor="zstd:5",
        client=client,
        progress=False,
    )
    arr = zarr.open_array(dst, path="t2m", mode="r")
    assert arr.chunks == (2, 6, 16)
    assert arr.shards == (4, 12, 16)
    assert "tp" not in zarr.open_group(dst, mode="r")
    assert report.regions_written == 3  # 12 steps / shard of 4
    with (
        xr.set_options(use_new_combine_kwarg_defaults=True),
        xr.open_mfdataset(paths) as want,
        xr.open_zarr(dst) as got,
    ):
        xr.testing.assert_identical(want[["t2m"]], got)


def test_regions_cover_whole_netcdf_chunks(tmp_path, client):
    # the netCDF chunks are one whole (lat, lon) field per step: target chunks of a quarter
    # of a field are written by regions of whole fields, so no task decodes a field twice
    paths = write_netcdf_series(tmp_path / "src", "netcdf4", files=2)
    dst = str(tmp_path / "out.zarr")
    report = netcdf_to_zarr(paths, dst, chunks={"time": 3, "lat": 3}, client=client, progress=False)
    assert zarr.open_array(dst, path="t2m", mode="r").chunks == (3, 3, 16)
    assert report.regions_written == 2 * 4  # t2m, tp: 12 steps / 3 (not 4 lat regions each)
    row = next(v for v in report.variables if v["path"] == "t2m")
    assert row["region"] == [3, 12, 16]
    assert "regions (3, 12, 16) (whole source chunks)" in str(report)
    with (
        xr.set_options(use_new_combine_kwarg_defaults=True),
        xr.open_mfdataset(paths, decode_cf=False) as want,
        xr.open_zarr(dst, decode_cf=False) as got,
    ):
        xr.testing.assert_identical(want, got)


def test_progress_callback_counts_every_region_from_workers(tmp_path, client):
    paths = write_netcdf_series(tmp_path / "src", "netcdf4", files=3)
    seen: list[tuple[int, int]] = []
    tracker = ConversionProgress(lambda done, total: seen.append((done, total)), bar=False)
    report = netcdf_to_zarr(
        paths, tmp_path / "out.zarr", chunks={"time": 3}, client=client, progress=tracker
    )
    assert tracker.done_regions == tracker.total_regions == report.regions_written == 12
    assert seen[-1] == (report.bytes_written, report.bytes_written)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) == 12


def test_rerun_of_finished_target_needs_overwrite(tmp_path, client):
    paths = write_netcdf_series(tmp_path / "src", "classic", files=1)
    dst = tmp_path / "out.zarr"
    netcdf_to_zarr(paths, dst, client=client, progress=False)
    with pytest.raises(InvalidOptionError, match="overwrite"):
        netcdf_to_zarr(paths, dst, client=client, progress=False)
    report = netcdf_to_zarr(paths, dst, overwrite=True, client=client, progress=False)
    assert report.ok
    assert_same_as_xarray(paths, str(dst))


def _file(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: str(d / "missing.nc"), "does not exist"),
        (lambda d: _file(d / "x.nc", b""), "empty file"),
        (lambda d: _file(d / "x.nc", b"hello world"), "not netcdf"),
        (lambda d: str(d / "*.nc"), "No file matches"),
        (lambda d: str(d), "directory"),
    ],
    ids=["missing", "empty", "junk", "glob-empty", "directory"],
)
def test_unreadable_inputs_fail_before_writing(tmp_path, make, match):
    src = make(tmp_path)
    dst = tmp_path / "out.zarr"
    with pytest.raises(ConversionInputError, match=match):
        netcdf_to_zarr(src, dst, progress=False)
    assert not dst.exists()


def test_truncated_netcdf_is_an_input_error(tmp_path):
    path = write_netcdf(tmp_path / "a.nc", "netcdf4")
    truncate_file(path, os.path.getsize(path) // 3)
    with pytest.raises(ConversionInputError, match="complete netCDF"):
        netcdf_to_zarr(path, tmp_path / "out.zarr", progress=False)


def test_partial_target_of_another_run_is_restarted(tmp_path, client):
    paths = write_netcdf_series(tmp_path / "src", "classic", files=1)
    dst = tmp_path / "out.zarr"
    (dst / ".zdu-rechunk").mkdir(parents=True)
    (dst / ".zdu-rechunk" / "partial.json").write_text('{"token": "another run"}')
    (dst / "t2m").mkdir()
    (dst / "t2m" / "zarr.json").write_text("{}")  # half-written leftovers of that run
    report = netcdf_to_zarr(paths, dst, client=client, progress=False)
    assert report.restarted
    assert not report.resumed
    assert_same_as_xarray(paths, str(dst))
