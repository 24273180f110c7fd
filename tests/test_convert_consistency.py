"""Files that disagree on an encoding: the pure detector/planner, then real conversions.

``netcdf_to_zarr`` writes raw values; files whose ``units`` (times), ``scale_factor`` /
``add_offset`` or fill values differ must be harmonised exactly (or refused before writing),
so ``open_zarr(dst)`` decodes as ``open_mfdataset(sources)`` does.
"""

from __future__ import annotations

import json

import dask
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from zarr_dask_utils import ConversionInputError, netcdf_to_zarr
from zarr_dask_utils.cli.main import cli
from zarr_dask_utils.convert.consistency import encoding_disagreements, harmonisation_plan
from zarr_dask_utils.testing.ncfiles import write_netcdf

FILES = ["a.nc", "b.nc"]


# -- pure: attribute dicts only ---------------------------------------------------------


def test_detector_lists_each_differing_attribute():
    a = {
        "time": {"units": "days since 2000-01-01", "calendar": "gregorian"},
        "t2m": {"scale_factor": 0.01, "add_offset": 273.15, "_FillValue": np.int16(-32767)},
        "tp": {"_FillValue": np.float32(1e20), "units": "m"},
        "only_a": {"units": "K"},
    }
    b = {
        "time": {"units": "hours since 2001-01-01", "calendar": "standard"},  # same calendar
        "t2m": {"scale_factor": 0.02, "add_offset": 273.15, "_FillValue": np.int16(-32767)},
        "tp": {"_FillValue": np.float32(np.nan), "missing_value": -1.0, "units": "m"},
    }
    found = {(d.variable, d.key): d.values for d in encoding_disagreements([a, b])}
    assert set(found) == {
        ("time", "units"),
        ("t2m", "scale_factor"),
        ("tp", "_FillValue"),
        ("tp", "missing_value"),
    }
    assert found[("tp", "missing_value")] == (None, -1.0)
    assert encoding_disagreements([a, a]) == []
    assert encoding_disagreements([a]) == []


def test_nan_fill_values_agree():
    a = {"tp": {"_FillValue": np.float32(np.nan)}}
    assert encoding_disagreements([a, {"tp": {"_FillValue": np.float64(np.nan)}}]) == []


@pytest.mark.parametrize(
    ("units", "target", "transforms"),
    [
        # the first file's unit divides the others' steps and offsets: kept
        (["hours since 2000-01-01", "days since 2000-01-07"], "hours", [(1, 0), (24, 144)]),
        # it does not: the finer common unit
        (["days since 2000-01-01", "hours since 2000-01-07"], "hours", [(24, 0), (1, 144)]),
        (["days since 2000-01-01", "days since 2000-01-01 00:00:30"], "seconds",
         [(86400, 0), (86400, 30)]),
    ],
)  # fmt: skip
def test_time_units_plan_is_exact(units, target, transforms):
    per_file = [{"time": {"units": u, "calendar": "noleap"}} for u in units]
    plan = harmonisation_plan(per_file, FILES)
    assert plan.attrs["time"]["units"].startswith(f"{target} since 2000-01-01")
    assert [(t.scale, t.offset) for t in plan.transforms["time"]] == transforms
    assert "time" in plan.notes[0]
    if target != units[0].split()[0]:
        assert "finer common unit" in plan.notes[0]


def test_packing_plan_unpacks_to_the_scale_factor_dtype():
    per_file = [
        {"t2m": {"scale_factor": np.float32(0.5), "add_offset": np.float32(1), "_FillValue": 9}},
        {"t2m": {"scale_factor": np.float32(0.25), "missing_value": -1}},
    ]
    plan = harmonisation_plan(per_file, FILES)
    (a, b) = plan.transforms["t2m"]
    assert (a.dtype, a.scale, a.offset, a.masked) == ("<f4", 0.5, 1, (9,))
    assert (b.scale, b.offset, b.masked) == (0.25, 0, (-1,))
    assert "scale_factor" not in plan.attrs["t2m"]
    assert np.isnan(plan.attrs["t2m"]["_FillValue"])
    assert "unpacked" in plan.notes[0]


def test_fill_plan_maps_to_the_first_files_fill():
    per_file = [{"tp": {"_FillValue": 1e20}}, {"tp": {"_FillValue": -1.0, "missing_value": 1e20}}]
    plan = harmonisation_plan(per_file, FILES)
    assert [t.masked for t in plan.transforms["tp"]] == [(), (-1.0,)]
    assert plan.transforms["tp"][1].fill == 1e20
    assert not harmonisation_plan([per_file[0], per_file[0]], FILES)


@pytest.mark.parametrize(
    ("a", "b", "words"),
    [
        ({"units": "days since 2000-01-01", "calendar": "noleap"},
         {"units": "days since 2000-01-01", "calendar": "360_day"}, "different calendars"),
        ({"units": "K"}, {"units": "degC"}, "different units"),
        ({"_FillValue": None}, {"_FillValue": 5}, "no fill value"),
    ],
)  # fmt: skip
def test_refusals_name_variable_files_and_attributes(a, b, words):
    with pytest.raises(ConversionInputError) as err:
        harmonisation_plan([{"v": a}, {"v": b}], FILES, {"v": "<i4"})
    message = str(err.value)
    assert words in message
    for word in ("'v'", "a.nc", "b.nc"):
        assert word in message
    assert "nothing was written" in message


# -- real files through the cluster -------------------------------------------------------


def _decoded_pair(paths, dst):
    # compared on threads here: the values are small, the cluster is for the conversion
    with (
        xr.set_options(use_new_combine_kwarg_defaults=True),
        dask.config.set(scheduler="threads"),
        xr.open_mfdataset(paths) as want,
        xr.open_zarr(dst) as got,
    ):
        return want.load(), got.load()


CASES = {
    "time-units": {"time_units": "hours since 2000-01-07", "time_step": 24},
    "packing": {"scale_factor": 0.02, "add_offset": 250.0},
    "fill-values": {"tp_fill": -1.0, "t2m_fill": -9999},
}


@pytest.mark.cluster
@pytest.mark.parametrize("case", sorted(CASES))
def test_disagreeing_files_convert_to_what_xarray_decodes(tmp_path, client, case):
    paths = [
        write_netcdf(tmp_path / "a.nc", encoding={"time_units": "days since 2000-01-01"}),
        write_netcdf(tmp_path / "b.nc", t0=0 if case == "time-units" else 6, encoding=CASES[case]),
    ]
    dst = str(tmp_path / "out.zarr")
    report = netcdf_to_zarr(paths, dst, client=client, progress=False)
    assert report.ok, str(report)
    want, got = _decoded_pair(paths, dst)
    assert got.sizes["time"] == 12
    xr.testing.assert_identical(want, got)
    note = report.groups[0]["note"]
    expected = {"time-units": "'time': times re-encoded", "packing": "'t2m': files packed",
                "fill-values": "'tp': each file's fill"}[case]  # fmt: skip
    assert expected in note
    assert expected in str(report)
    if case == "time-units":
        assert "hours since 2000-01-01" in note  # days do not divide 'hours since ...-07'
    if case == "packing":
        assert got["t2m"].dtype == np.float64
        assert int(got["t2m"].isnull().sum()) == 2 * 2  # each file's two missing values
    if case == "fill-values":
        assert int(got["tp"].isnull().sum()) == 12  # the last cell of every step
        assert int(got["t2m"].isnull().sum()) == 2 * 2  # each file's two missing values


@pytest.mark.cluster
def test_different_calendars_are_refused_by_the_cli_with_exit_2(tmp_path, client):
    paths = [
        write_netcdf(tmp_path / "a.nc", calendar="noleap"),
        write_netcdf(tmp_path / "b.nc", t0=6, calendar="360_day"),
    ]
    dst = tmp_path / "out.zarr"
    args = ["convert", *paths, str(dst), "--json", "--scheduler", client.scheduler.address]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "conversion-input"
    message = error["message"]
    for word in ("'time'", "calendar", "a.nc", "b.nc", "'noleap'", "'360_day'"):
        assert word in message
    assert "\n" not in message
    assert not dst.exists()
