"""``optimize_s3_access`` and ``zdu tune`` on the S3 latency rig (issue 15, parts 1, 4, 5).

Evidence, not timing: the rig counts requests by method (no writes during tuning, no HEADs
with the tuned settings), the trials count S3 calls and requests in flight on the worker, and
every candidate must read the bytes the given settings read.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from zarr_dask_utils import InvalidOptionError, open_store, optimize_s3_access
from zarr_dask_utils.cli.main import cli

pytestmark = [pytest.mark.s3, pytest.mark.cluster]

CHUNK = 8192  # float64 elements: 64 KiB chunks
NCHUNKS = 48


def _build(rig: Any, *, zarr_format: int = 3, two_d: bool = False) -> tuple[str, str, np.ndarray]:
    """A store of one array in a fresh rig bucket (written unthrottled); its URL and data."""
    bucket = rig.make_bucket()
    url = f"s3://{bucket}/data.zarr"
    if two_d:
        shape, chunks, dims = (NCHUNKS * 8, 64), (8, 64), ("time", "y")
    else:
        shape, chunks, dims = (NCHUNKS * CHUNK,), (CHUNK,), ("time",)
    data = np.random.default_rng(0).random(shape)
    with rig.unthrottled():
        store = zarr.storage.FsspecStore.from_url(
            url, storage_options=rig.storage_options, read_only=False
        )
        root = zarr.open_group(store, mode="w", zarr_format=zarr_format)
        kwargs: dict[str, Any] = {"compressors": None} if zarr_format == 3 else {}
        if zarr_format == 3:
            kwargs["dimension_names"] = dims
        arr = root.create_array("x", shape=shape, chunks=chunks, dtype="f8", **kwargs)
        arr[:] = data
    return bucket, url, data


def _tree(rig: Any, bucket: str) -> str:
    """A hash of every key and its bytes in *bucket*."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **rig.storage_options)
    digest = hashlib.sha256()
    with rig.unthrottled():
        for key in sorted(fs.find(bucket)):
            digest.update(key.encode() + b"\0" + fs.cat_file(key) + b"\0")
    return digest.hexdigest()


def _run(args: list[str], client: Any) -> Any:
    return CliRunner().invoke(
        cli, [*args, "--scheduler", client.scheduler.address], catch_exceptions=False
    )


def _pairs(options: dict[str, Any]) -> list[str]:
    """``-o KEY=VALUE`` arguments for *options* (values as JSON, as `zdu` reads them)."""
    out = []
    for key, value in options.items():
        out += ["-o", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return out


@pytest.mark.slow
def test_tune_measures_chooses_verifies_and_never_writes(s3_rig, client):
    bucket, url, data = _build(s3_rig)
    before = _tree(s3_rig, bucket)
    s3_rig.reset_stats()
    report = optimize_s3_access(
        url, storage_options=s3_rig.storage_options, client=client, progress=False
    )
    stats = s3_rig.stats()
    # never changes the store: no write request reached the server, the bytes are the same
    assert stats["PUT"] == stats["DELETE"] == stats["POST"] == 0
    assert _tree(s3_rig, bucket) == before

    trials = report.trials
    base = trials["as-given"]
    # s3fs's defaults: one HEAD before every chunk GET (the 2,000 HEADs for 2,000 GETs)
    assert base["calls"]["HeadObject"] == NCHUNKS
    assert stats["HEAD"] >= NCHUNKS
    assert report.findings_with("s3-head-before-get")
    for cand in report.candidates[1:]:
        trial = trials[cand["name"]]
        assert "error" not in trial, trial
        assert trial["digest"] == base["digest"]  # verified: the same bytes
        assert trial["requests"] == NCHUNKS
        # the rig's latency holds each request: the chosen level really is in flight
        assert trial["max_in_flight"] >= min(cand["concurrency"], NCHUNKS)
        if cand["engine"] == "s3fs":
            assert trial["calls"].get("HeadObject", 0) == 0
            assert trial["calls"]["GetObject"] == NCHUNKS
    assert report.facts["curve"]
    assert report.facts["latency"] >= s3_rig.latency - s3_rig.jitter
    assert report.throughput_before is not None
    assert report.throughput_after is not None

    # the winner's settings open the store and read the same bytes
    chosen = next(c for c in report.candidates if c["name"] == report.winner)
    with zarr.config.set(report.zarr_config):
        s3_rig.reset_stats()
        got = zarr.open_array(report.open_store(), path="x", mode="r")[:]
    np.testing.assert_array_equal(got, data)
    assert s3_rig.stats()["GET"] >= NCHUNKS
    if not chosen["baseline"]:
        assert s3_rig.stats()["HEAD"] == 0
    assert report.zarr_config == {"async.concurrency": chosen["concurrency"]}

    # the printed settings are the report's, as JSON; no credentials anywhere
    line = next(x for x in str(report).splitlines() if "storage_options:" in x)
    assert json.loads(line.split("storage_options:", 1)[1]) == dict(report.storage_options)
    text = json.dumps(report.to_dict()) + str(report) + report._repr_html_()
    assert "testing" not in text


@pytest.mark.slow
def test_zdu_tune_json_feeds_back_into_other_commands(s3_rig, client, tmp_path):
    bucket, url, data = _build(s3_rig, zarr_format=2, two_d=True)
    endpoint = ["-o", f"endpoint_url={s3_rig.endpoint_url}"]  # credentials: the environment
    res = _run(
        ["tune", url, *endpoint, "--pattern", "time-series", "--budget", "1MiB", "--json"], client
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["report"] == "S3AccessReport"
    assert out["pattern"] == "time-series"
    assert out["cache"] is True  # four series through the same chunk column: rereads
    assert out["consolidate"] is True  # a v2 group and array, no .zmetadata
    # the cached candidate read each distinct chunk once; the others read every series' chunks
    cached = next(c["name"] for c in out["candidates"] if c["cache"])
    assert out["trials"][cached]["requests"] == NCHUNKS
    assert out["trials"]["as-given"]["requests"] == 4 * NCHUNKS
    options = out["storage_options"]
    assert options["endpoint_url"] == s3_rig.endpoint_url
    assert "key" not in options
    assert "secret" not in options

    # pasted back into another command as -o pairs: it opens the store
    res = _run(["info", url, *_pairs(options), "--json"], client)
    assert res.exit_code == 0, res.output
    nodes = json.loads(res.stdout)["nodes"]
    assert [n["path"] for n in nodes if n["node_type"] == "array"] == ["x"]
    # the advice the findings give runs, with the tuned settings
    res = _run(["analyze", url, *_pairs(options), "--pattern", "time-series", "--json"], client)
    assert res.exit_code in (0, 1), res.output
    assert json.loads(res.stdout)["report"] == "ChunkAnalysisReport"
    res = _run(["consolidate", url, *_pairs(options), "--json"], client)
    assert res.exit_code == 0, res.output
    store = open_store(url, storage_options=s3_rig.storage_options)
    got = zarr.open_array(store, path="x", mode="r")[:]
    np.testing.assert_array_equal(got, data)
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_rig.storage_options)
    assert fs.exists(f"{bucket}/data.zarr/.zmetadata")


def test_obstore_engine_reads_the_same_bytes_without_heads(s3_rig):
    import obstore  # noqa: F401  (extra s3: installed wherever this runs)

    _, url, data = _build(s3_rig)
    options = {**s3_rig.storage_options, "zdu_engine": "obstore"}
    store = open_store(url, storage_options=options)
    assert type(store).__name__ == "ObjectStore"
    s3_rig.reset_stats()
    with zarr.config.set({"async.concurrency": 16}):
        got = zarr.open_array(store, path="x", mode="r")[:]
    np.testing.assert_array_equal(got, data)
    assert s3_rig.stats()["HEAD"] == 0
    assert NCHUNKS < s3_rig.stats()["GET"] <= NCHUNKS + 4  # the chunks and metadata documents


def test_tune_refuses_what_is_not_an_s3_url(tmp_path, client):
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=(64,), chunks=(16,), dtype="i4")
    arr[:] = 1
    with pytest.raises(InvalidOptionError, match="s3:// stores"):
        optimize_s3_access(str(tmp_path / "a.zarr"), client=client, progress=False)
    # the message points at `zdu bench STORE` for other stores: it runs
    res = _run(
        ["bench", str(tmp_path / "a.zarr"), "--concurrency", "1,2", "--chunk-size", "64", "--json"],
        client,
    )
    assert res.exit_code in (0, 1), res.output
    assert json.loads(res.stdout)["report"] == "StoreBenchmark"


def test_obstore_engine_without_obstore_names_the_extra(monkeypatch):
    import sys

    # the optional package missing: its import fails as it would when not installed
    monkeypatch.setitem(sys.modules, "obstore", None)
    monkeypatch.setitem(sys.modules, "obstore.store", None)
    from zarr_dask_utils._core.storage.obstore_engine import obstore_available

    assert not obstore_available()
    url = f"s3://no-obstore-{id(monkeypatch)}/x.zarr"  # a URL no earlier test opened
    with pytest.raises(InvalidOptionError, match=r"zarr-dask-utils\[s3\]"):
        open_store(url, storage_options={"zdu_engine": "obstore", "anon": True})
