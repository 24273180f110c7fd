"""``zdu analyze`` and ``zdu rechunk``: exit codes, JSON, two stores, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from zarr_dask_utils.cli.chunkspec import parse_chunks, parse_patterns
from zarr_dask_utils.cli.main import cli
from zarr_dask_utils.optimize.rechunk import MARKER_PREFIX

pytestmark = pytest.mark.cluster


def _run(args, client):
    return CliRunner().invoke(
        cli, [*args, "--scheduler", client.scheduler.address], catch_exceptions=False
    )


def _array(path):
    arr = zarr.create_array(
        path, shape=(60, 8, 10), chunks=(1, 8, 10), dtype="f4", dimension_names=("time", "y", "x")
    )
    arr[:] = np.arange(4800, dtype="f4").reshape(60, 8, 10)
    return arr


def test_analyze_command(tmp_path, client):
    _array(str(tmp_path / "a.zarr"))
    res = _run(
        [
            "analyze",
            str(tmp_path / "a.zarr"),
            "--pattern",
            "time-series",
            "--min-chunk",
            "256",
            "--json",
        ],
        client,
    )
    assert res.exit_code == 1, res.output  # chunked for maps, read as series: a warning
    data = json.loads(res.stdout)
    assert data["report"] == "ChunkAnalysisReport"
    assert data["arrays"][0]["recommended_chunks"][0] == 60
    res = _run(
        ["analyze", str(tmp_path / "a.zarr"), "--pattern", "spatial=2", "--min-chunk", "256"],
        client,
    )
    assert res.exit_code == 0, res.output
    assert "recommended" in res.output


def test_rechunk_command_v3_local_to_v2_on_s3(tmp_path, s3_bucket, s3_storage_options, client):
    src = _array(str(tmp_path / "a.zarr"))
    dst = f"s3://{s3_bucket}/b.zarr"
    so = [f"--dst-storage-option={k}={v}" for k, v in s3_storage_options.items()]
    args = [
        "rechunk",
        str(tmp_path / "a.zarr"),
        dst,
        "--chunks",
        "time=60,y=2,x=5",
        "--max-mem",
        "64KiB",
        "--zarr-format",
        "2",
        "--json",
        *so,
    ]
    res = _run(args, client)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["method"] == "rechunker"
    assert data["zarr_format"] == 2
    out = zarr.open_array(
        zarr.storage.FsspecStore.from_url(dst, storage_options=s3_storage_options), mode="r"
    )
    assert out.chunks == (60, 2, 5)
    assert np.array_equal(out[:], src[:])
    again = _run(args, client)  # complete target: refused, exit 2 with a clear message
    assert again.exit_code == 2
    assert "overwrite" in json.loads(again.stdout)["error"]["message"]
    assert MARKER_PREFIX not in again.output


def test_rechunk_command_bad_chunks(tmp_path, client):
    _array(str(tmp_path / "a.zarr"))
    res = _run(
        [
            "rechunk",
            str(tmp_path / "a.zarr"),
            str(tmp_path / "b.zarr"),
            "--chunks",
            "a,b",
            "--max-mem",
            "1MiB",
        ],
        client,
    )
    assert res.exit_code == 2
    assert "not integers" in res.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3,4", (3, 4)), ("time=3, x=-1", {"time": 3, "x": -1}), (None, None)],
)
def test_parse_chunks(text, expected):
    assert parse_chunks(text) == expected


def test_parse_patterns():
    assert parse_patterns(()) == "sequential"
    assert parse_patterns(("spatial=2", "random")) == {"spatial": 2.0, "random": 1.0}
    with pytest.raises(ValueError, match="weight"):
        parse_patterns(("spatial=lots",))
