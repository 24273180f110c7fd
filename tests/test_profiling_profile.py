"""profile_zarr_operation on real stores and the session cluster: verdicts whose answer is known.

- a compressible array behind an expensive codec (bz2) → decode-bound;
- a store behind injected latency (zarr's ``LatencyStore``, and the S3 latency rig) → latency-bound;
- many tiny chunks read as a Dask array (thousands of tasks) → task-overhead-bound;
- request and byte counts equal a counting store's exactly;
- the HTML opens in headless Chromium without console errors and draws something;
- ``zdu profile -- check STORE --deep`` prints the profile as JSON and writes the HTML.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numcodecs
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from zarr.storage import LocalStore
from zarr.testing.store import LatencyStore

from zarr_dask_utils import (
    InvalidOptionError,
    ProfileReport,
    check_data_integrity,
    open_store,
    profile_zarr_operation,
    visualize_performance,
)
from zarr_dask_utils.testing.counting import CountingStore

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def compressible(tmp_path_factory: pytest.TempPathFactory) -> str:
    """16 MB of low-entropy bytes, bz2-compressed: decoding costs far more than reading."""
    path = tmp_path_factory.mktemp("profile") / "bz2.zarr"
    data = np.random.default_rng(0).integers(0, 4, size=(4096, 4096), dtype="u1")
    zarr.create_array(
        str(path),
        data=data,
        chunks=(1024, 1024),
        zarr_format=2,
        compressors=numcodecs.BZ2(level=1),
    )
    return str(path)


def _small(path: Path, chunks: tuple[int, int] = (20, 20)) -> str:
    data = np.arange(200 * 200, dtype="f8").reshape(200, 200)
    zarr.create_array(str(path), data=data, chunks=chunks)
    return str(path)


@pytest.mark.slow
def test_compressible_array_behind_bz2_is_decode_bound(compressible, client):
    report = profile_zarr_operation(
        check_data_integrity, compressible, deep=True, progress=False, client=client
    )
    assert report.result.ok  # the check itself ran and found nothing
    assert report.verdict.kind == "decode-bound", str(report)
    assert report.facts.cpu_seconds > 0
    decode = {p.prefix: p for p in report.prefixes}["zdu-check-decode"]
    assert decode.compute > 0
    assert decode.tasks >= 1
    assert "zdu rechunk" in " ".join(report.verdict.next_steps)
    assert len(report.memory) == 2  # both workers, with a peak and a limit
    assert all(m.peak_bytes > 0 and m.limit_bytes > 0 for m in report.memory)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verdict"]["kind"] == "decode-bound"
    assert data["findings"][0]["code"] == "decode-bound"
    assert "verdict: decode-bound" in str(report)
    assert report.ok  # a verdict is an observation, not a problem


def test_store_behind_injected_latency_is_latency_bound(tmp_path, client):
    inner = LocalStore(_small(tmp_path / "slow.zarr"), read_only=True)
    slow = LatencyStore(inner, get_latency=0.02)
    report = profile_zarr_operation(
        check_data_integrity, slow, deep=True, progress=False, client=client
    )
    assert report.verdict.kind == "latency-bound", str(report)
    assert report.facts.fixed_request_seconds >= 0.02  # every get slept 20 ms first
    assert report.requests_by_op["get"] >= 100  # 100 chunks and the documents
    (store,) = report.stores
    assert store.name == f"file://{inner.root}"
    assert store.p50_ms >= 20.0
    steps = " ".join(report.verdict.next_steps)
    assert "io.concurrency" in steps
    assert f"zdu rechunk {inner.root} " in steps  # the exact command for the array read
    assert "--chunks 200,200" in steps


@pytest.mark.slow
@pytest.mark.s3
def test_s3_behind_the_latency_rig_is_latency_bound(s3_rig, client):
    bucket = s3_rig.make_bucket()
    url = f"s3://{bucket}/a.zarr"
    with s3_rig.unthrottled():
        store = zarr.storage.FsspecStore.from_url(url, storage_options=s3_rig.storage_options)
        zarr.create_array(store, data=np.arange(64 * 64, dtype="i4").reshape(64, 64), chunks=(8, 8))
    report = profile_zarr_operation(
        check_data_integrity,
        url,
        deep=True,
        storage_options=s3_rig.storage_options,
        progress=False,
        client=client,
    )
    assert report.verdict.kind == "latency-bound", str(report)
    assert report.facts.fixed_request_seconds >= 0.015  # 20 ms ± 2 ms per request
    assert [s.name for s in report.stores] == [f"s3://{bucket}/a.zarr"]


@pytest.mark.slow
def test_many_tiny_chunks_as_a_dask_array_are_task_overhead_bound(tmp_path, client):
    path = tmp_path / "tiny.zarr"
    zarr.create_array(str(path), data=np.arange(800, dtype="i4"), chunks=(2,))

    def total() -> int:
        arr = zarr.open_array(open_store(path), mode="r")  # traced: opened through zdu
        return int(da.from_array(arr, chunks=arr.chunks).sum().compute())

    report = profile_zarr_operation(total, client=client)
    assert report.result == sum(range(800))
    assert report.verdict.kind == "task-overhead-bound", str(report)
    assert report.facts.tasks >= 400
    # the chunk reads ran on the workers and were collected: 400 chunks, one request each
    chunk_gets = [a for a in report.arrays if a.name == "/"]
    assert chunk_gets
    assert chunk_gets[0].requests >= 400


def test_counts_equal_a_counting_store(tmp_path):
    path = _small(tmp_path / "count.zarr", chunks=(50, 50))
    seen: dict[str, CountingStore] = {}

    def read_all() -> float:
        counting = CountingStore(open_store(path))  # outside: counts; inside: the tracer
        seen["store"] = counting
        return float(zarr.open_array(counting, mode="r")[:].sum())

    report = profile_zarr_operation(read_all)
    counting = seen["store"]
    assert counting.gets > 16
    assert report.requests_by_op["get"] == counting.gets
    assert report.bytes_read == counting.bytes_read
    assert sum(a.bytes_read for a in report.arrays) == counting.bytes_read
    assert report.result == float(np.arange(200 * 200).sum())


def test_html_opens_in_chromium_without_errors(tmp_path, client):
    from zarr_dask_utils.testing.browser import chromium_or_skip, render_html

    report = profile_zarr_operation(
        check_data_integrity, _small(tmp_path / "h.zarr"), deep=True, progress=False, client=client
    )
    page = report.save_html(tmp_path / "profile.html")
    text = page.read_text(encoding="utf-8")
    assert "Verdict: " in text
    assert "ZDU_DASK_REPORT" in text  # Dask's performance report is inside the file
    assert "cdn.bokeh.org/bokeh/release" not in text  # BokehJS inlined: works offline
    linked = report.save_html(tmp_path / "linked.html", dask_report="link")
    assert (tmp_path / "linked.dask.html").read_text(encoding="utf-8").startswith("<!DOCTYPE")
    assert "linked.dask.html" in linked.read_text(encoding="utf-8")
    chromium = chromium_or_skip()
    seen = render_html(page, executable=chromium, wait_s=3.0)
    assert seen.console_errors == ()
    assert seen.nonblank_fraction > 0.01  # the tables and the bokeh canvases were drawn


def test_visualize_performance(tmp_path, client):
    from bokeh.models import Plot

    report = profile_zarr_operation(
        check_data_integrity, _small(tmp_path / "v.zarr"), deep=True, progress=False, client=client
    )
    assert isinstance(report, ProfileReport)
    layout = visualize_performance(report)
    titles = {p.title.text for p in layout.select({"type": Plot})}
    assert any(t.startswith("Task timeline") for t in titles)
    assert any(t.startswith("Store request latency") for t in titles)
    assert any(t.startswith("Memory per worker") for t in titles)
    assert "Store requests per array" in titles
    with pytest.raises(InvalidOptionError, match="ProfileReport or a StoreBenchmark"):
        visualize_performance(object())


def test_cli_profiles_a_deep_check(tmp_path, client):
    from zarr_dask_utils.cli.main import cli

    store = _small(tmp_path / "cli.zarr")
    html = tmp_path / "p.html"
    args = ["profile", "--json", "--html", str(html), "--scheduler", client.scheduler.address]
    result = CliRunner().invoke(cli, [*args, "--", "check", store, "--deep"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout is the profile only
    assert data["report"] == "ProfileReport"
    assert data["location"] == f"zdu check {store} --deep"
    assert data["verdict"]["kind"] in {
        "latency-bound",
        "bandwidth-bound",
        "decode-bound",
        "task-overhead-bound",
        "memory-bound",
    }
    assert data["requests_by_op"]["get"] > 0
    assert "Integrity" in result.stderr or "findings" in result.stderr  # the check's own report
    assert html.stat().st_size > 0


def test_cli_refuses_to_profile_nothing_or_itself():
    from zarr_dask_utils.cli.main import cli

    result = CliRunner().invoke(cli, ["profile", "--json", "--", "profile", "info", "x"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["kind"] == "invalid-option"
