"""The ``zdu`` command line: exit codes, JSON, errors, options; in-process and as a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from zarr_dask_utils.cli.main import cli, parse_storage_options
from zarr_dask_utils.testing import corrupt
from zarr_dask_utils.testing.builders import build_sample_hierarchy

pytestmark = pytest.mark.cluster


def _run(args, client=None):
    if client is not None:
        args = [*args, "--scheduler", client.scheduler.address]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result


def _so_args(case):
    args = []
    for key, value in (case.storage_options or {}).items():
        args += ["-o", f"{key}={value}"]
    return args


def test_info_lists_nodes(sample, client):
    result = _run(["info", sample.url, "--json", *_so_args(sample)], client)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    arrays = {n["path"]: n for n in data["nodes"] if n["node_type"] == "array"}
    assert arrays["climate/t2m"]["shape"] == [8, 16, 16]
    assert arrays["climate/t2m"]["chunks"] == [4, 8, 8]
    assert data["zarr_format"] == sample.zarr_format
    assert "secret" not in result.stdout or sample.where == "local"
    assert "testing" not in json.dumps(data.get("location"))


def test_validate_exit_codes_and_json(sample, client):
    ok = _run(["validate", sample.url, "--json", *_so_args(sample)], client)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    corrupt.remove_group_document(sample.store(), "climate")
    bad = _run(["validate", sample.url, "--json", *_so_args(sample)], client)
    assert bad.exit_code == 1, bad.output
    data = json.loads(bad.stdout)
    assert data["ok"] is False
    assert "group-document-missing" in {f["code"] for f in data["findings"]}


def test_repair_dry_run_then_apply(sample, client, tmp_path):
    corrupt.add_array_unconsolidated(sample.url, "late", storage_options=sample.storage_options)
    dry = _run(["repair", sample.url, *_so_args(sample)], client)
    assert dry.exit_code == 1
    assert "dry run" in dry.stdout
    html = tmp_path / "r.html"
    applied = _run(
        ["repair", sample.url, "--apply", "--html", str(html), *_so_args(sample)], client
    )
    assert applied.exit_code == 0, applied.output
    assert "write-consolidated" in applied.stdout
    assert "<table" in html.read_text() or "Metadata repair" in html.read_text()
    assert _run(["validate", sample.url, *_so_args(sample)], client).exit_code == 0


def test_consolidate_command(sample, client):
    corrupt.add_array_unconsolidated(sample.url, "late", storage_options=sample.storage_options)
    dry = _run(["consolidate", sample.url, "--dry-run", "--json", *_so_args(sample)], client)
    assert json.loads(dry.stdout)["written"] is False
    done = _run(["consolidate", sample.url, "--json", *_so_args(sample)], client)
    assert done.exit_code == 0
    assert json.loads(done.stdout)["written"] is True


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        pytest.param(["validate", "/no/such/store.zarr"], "store-not-found", id="missing-path"),
        pytest.param(["info", "/etc/hostname"], "not-a-zarr-store", id="a-file"),
        pytest.param(["validate", "/tmp", "-o", "key=x"], "invalid-option", id="options-on-local"),
        pytest.param(["validate", "/tmp", "-o", "novalue"], "invalid-option", id="bad-option"),
    ],
)
def test_bad_input_exit_2_with_clear_error(args, kind):
    result = _run([*args, "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == kind
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")


def test_missing_bucket_and_unreachable_endpoint(s3_endpoint):
    so = ["-o", f"endpoint_url={s3_endpoint}", "-o", "key=testing", "-o", "secret=testing"]
    result = _run(["validate", "s3://no-such-bucket-zdu/x.zarr", "--json", *so])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["kind"] == "store-not-found"
    dead = ["-o", "endpoint_url=http://127.0.0.1:9", "-o", "key=a", "-o", "secret=b"]
    result = _run(["info", "s3://bucket/x.zarr", "--json", *dead])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["kind"] == "endpoint-unreachable"


def test_unreachable_scheduler(tmp_path):
    import dask

    with dask.config.set({"zarr-dask-utils.cluster.connect-timeout": "1s"}):
        result = _run(["info", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "No Dask scheduler answered" in result.stderr


def test_debug_shows_traceback():
    result = CliRunner().invoke(cli, ["--debug", "validate", "/no/such/store.zarr"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_usage_error_is_exit_2():
    assert CliRunner().invoke(cli, ["validate"]).exit_code == 2
    assert CliRunner().invoke(cli, ["frobnicate"]).exit_code == 2


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        pytest.param(("anon=true",), {"anon": True}, id="json-bool"),
        pytest.param(
            ("endpoint_url=http://h:9000",), {"endpoint_url": "http://h:9000"}, id="string"
        ),
        pytest.param(
            ("client_kwargs.region_name=eu",), {"client_kwargs": {"region_name": "eu"}}, id="nested"
        ),
        pytest.param(
            ("retries=3", "a.b.c=x"), {"retries": 3, "a": {"b": {"c": "x"}}}, id="several"
        ),
    ],
)
def test_parse_storage_options(pairs, expected):
    assert parse_storage_options(pairs) == expected


@pytest.mark.slow
def test_real_process_with_embedded_cluster(tmp_path):
    path = tmp_path / "s.zarr"
    build_sample_hierarchy(str(path), zarr_format=3)
    corrupt.remove_group_document(str(path), "climate")
    zdu = [sys.executable, "-m", "zarr_dask_utils"]
    env_cfg = {"DASK_ZARR_DASK_UTILS__CLUSTER__DASHBOARD_ADDRESS": "127.0.0.1:0"}
    import os

    env = {**os.environ, **env_cfg}
    out = subprocess.run(
        [*zdu, "validate", str(path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert out.returncode == 1, out.stderr
    assert "Dask dashboard" in out.stderr
    data = json.loads(out.stdout)
    assert "distributed" in data["engine"]
    out = subprocess.run(
        [*zdu, "repair", str(path), "--apply"], capture_output=True, text=True, env=env, timeout=240
    )
    assert out.returncode == 0, out.stdout + out.stderr
