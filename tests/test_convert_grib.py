"""grib_to_zarr on GRIB1/2 files written from eccodes' samples: hypercubes, index files, damage."""

from __future__ import annotations

import os
import stat

import cfgrib
import pytest
import xarray as xr

from zarr_dask_utils import GribCorruptError, grib_to_zarr
from zarr_dask_utils.testing.ncfiles import truncate_file, write_grib

pytestmark = pytest.mark.cluster


def _identical(path, dst, report):
    """Each target group equals cfgrib's hypercube (the ``history`` stamp aside)."""
    cubes = cfgrib.open_datasets(path, backend_kwargs={"indexpath": ""})
    assert len(cubes) == len(report.groups)
    for group, cube in zip(report.groups, cubes, strict=True):
        with xr.open_zarr(dst, group=group["path"] or None) as got:
            cube.attrs.pop("history", None)
            got.attrs.pop("history", None)
            xr.testing.assert_identical(cube, got)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory of GRIB files made read-only (listing compared before/after)."""
    d = tmp_path / "in"
    d.mkdir()
    write_grib(d / "one.grib1", edition=1)
    write_grib(d / "multi.grib2", edition=2, levels=(500, 850))
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield d
    d.chmod(stat.S_IRWXU)


def test_grib1_single_hypercube_is_the_root(read_only_dir, tmp_path, client):
    path = str(read_only_dir / "one.grib1")
    dst = str(tmp_path / "one.zarr")
    report = grib_to_zarr(path, dst, client=client, progress=False)
    assert report.ok
    assert [g["path"] for g in report.groups] == [""]
    assert report.source_format == "grib"
    _identical(path, dst, report)
    assert sorted(os.listdir(read_only_dir)) == ["multi.grib2", "one.grib1"]  # no .idx


def test_grib2_several_hypercubes_become_groups(read_only_dir, tmp_path, client):
    path = str(read_only_dir / "multi.grib2")
    dst = str(tmp_path / "multi.zarr")
    report = grib_to_zarr(path, dst, client=client, progress=False)
    names = sorted(g["path"] for g in report.groups)
    assert names == ["isobaricInhPa", "surface"]
    assert all("hypercube" in g["note"] for g in report.groups)
    assert "isobaricInhPa" in str(report)
    _identical(path, dst, report)
    assert sorted(os.listdir(read_only_dir)) == ["multi.grib2", "one.grib1"]  # no .idx


def test_truncated_grib_names_file_and_message(tmp_path, client):
    path = write_grib(tmp_path / "t.grib2", levels=(500, 850))
    size = os.path.getsize(path)
    truncate_file(path, size - 300)
    dst = tmp_path / "t.zarr"
    with pytest.raises(GribCorruptError) as info:
        grib_to_zarr(path, dst, client=client, progress=False)
    text = str(info.value)
    assert "t.grib2" in text
    assert "message 9 at byte 9368" in text
    assert "8 message(s) before it" in text
    assert "skip_corrupt" in text
    assert not dst.exists()
    report = grib_to_zarr(path, dst, skip_corrupt=True, client=client, progress=False)
    (finding,) = report.findings_with("grib-truncated")
    assert finding.severity == "warning"
    assert "8 message(s)" in finding.message
    with xr.open_zarr(dst, group="surface") as surface:
        assert surface.sizes["step"] == 3  # every readable message is there
    with xr.open_zarr(dst, group="isobaricInhPa") as upper:
        assert upper["t"].notnull().sum() == 5 * 16 * 31  # 5 of 6 upper fields were readable
