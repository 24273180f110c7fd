"""``zdu check``, ``zdu compare`` and ``zdu manifest create|verify``: exit codes and JSON."""

from __future__ import annotations

import json

import pytest
import zarr
from click.testing import CliRunner

from zarr_dask_utils.cli.main import cli
from zarr_dask_utils.testing import chunks as damage
from zarr_dask_utils.testing.builders import build_sample_hierarchy

pytestmark = pytest.mark.cluster


def _run(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


@pytest.fixture
def stores(tmp_path):
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    build_sample_hierarchy(a, zarr_format=3)
    build_sample_hierarchy(b, zarr_format=2)
    return a, b


def test_check_exit_codes(stores, client):
    a, _ = stores
    code, out = _run("check", a, "--deep", "--nan-check", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["report"] == "IntegrityReport"
    assert data["chunks_decoded"] == 17
    assert {x["path"] for x in data["arrays"]} >= {"climate/t2m", "time"}
    key = damage.chunk_keys(a, "time")[0]
    damage.truncate_chunk(a, key)
    code, out = _run("check", a, "--deep", "--no-progress")
    assert code == 1
    assert "chunk-decode-error at time/c/0" in out
    damage.delete_chunk(a, key)
    assert _run("check", a, "--json")[0] == 0  # missing chunk: info by default
    code, out = _run("check", a, "--json", "--missing-chunks", "error")
    assert code == 1
    assert json.loads(out)["counts"]["error"] == 1


def test_compare_exit_codes(stores, client, tmp_path, s3_bucket, s3_storage_options):
    a, b = stores
    code, out = _run("compare", a, b, "--json")
    assert code == 0, out
    assert json.loads(out)["report"] == "ComparisonReport"
    s3 = f"s3://{s3_bucket}/b.zarr"
    build_sample_hierarchy(s3, zarr_format=2, storage_options=s3_storage_options)
    zarr.open_array(s3, path="time", mode="r+", storage_options=s3_storage_options)[0] = 99
    opts = [f"--b-storage-option={k}={v}" for k, v in s3_storage_options.items()]
    code, out = _run("compare", a, s3, *opts, "--json")
    assert code == 1
    data = json.loads(out)
    time = next(x for x in data["arrays"] if x["path"] == "time")
    assert (time["elements_differing"], time["max_abs_diff"]) == (1, 99.0)
    code, _ = _run("compare", a, s3, *opts, "--atol", "100", "--json")
    assert code == 0
    code, out = _run("compare", a, str(tmp_path / "nothing.zarr"), "--json")
    assert code == 2
    assert json.loads(out)["error"]["kind"] == "store-not-found"


def test_manifest_commands(stores, client, tmp_path):
    a, _ = stores
    out_path = str(tmp_path / "m.json")
    code, out = _run("manifest", "create", a, out_path, "--algorithm", "sha256")
    assert code == 0
    assert "written to" in out
    assert json.loads((tmp_path / "m.json").read_text())["algorithm"] == "sha256"
    assert _run("manifest", "verify", a, out_path)[0] == 0
    damage.flip_byte(a, damage.chunk_keys(a, "climate/t2m")[0])
    code, out = _run("manifest", "verify", a, out_path, "--json")
    assert code == 1
    assert json.loads(out)["changed"] == 1


def test_verify_chunks_command(stores, client):
    a, _ = stores
    code, out = _run("verify-chunks", a, "--array", "climate/t2m", "--seed", "3", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["report"] == "ChunkSampleReport"
    assert (data["seed"], data["sampled"], data["grid_objects"]) == (3, 1, 8)
    every = _run("verify-chunks", f"{a}/climate/t2m", "--sample-rate", "1", "--seed", "3", "--json")
    assert json.loads(every[1])["decoded"] == 8
    for key in damage.chunk_keys(a, "climate/t2m"):
        damage.truncate_chunk(a, key)
    code, out = _run("verify-chunks", a, "--array", "climate/t2m", "--no-progress")
    assert code == 1
    assert "chunk-decode-error" in out
    assert "bad" in out
    group = CliRunner().invoke(cli, ["verify-chunks", a, "--no-progress"])
    assert group.exit_code == 2  # a group: the error says how to name the array
    assert "--array" in group.stderr
