"""``benchmark_store`` / ``zdu bench``: the plan (pure), real stores on the cluster, S3, figures.

No timing thresholds: counts are compared with a counting store and the cost model, the S3
rig's injected latency is a lower bound on every measured first byte, and the figures are
looked at in headless Chromium.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from zarr_dask_utils import (
    InvalidOptionError,
    ReadOnlyStoreError,
    StoreBenchmark,
    benchmark_store,
    estimate_performance,
    open_store,
)
from zarr_dask_utils._core.pure.access_patterns import resolve_patterns
from zarr_dask_utils._core.pure.cost_model import CostParams, as_cost_params
from zarr_dask_utils.cli.main import cli
from zarr_dask_utils.profiling.bench_figures import store_benchmark_figures
from zarr_dask_utils.profiling.bench_plan import (
    ArraySpec,
    calibrated_params,
    fit_selection,
    percentiles,
    plan_benchmark,
    requests_at,
    scratch_prefix,
    summarize_curve,
)
from zarr_dask_utils.testing.counting import CountingStore

_METADATA = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")
SHAPE = (48, 20, 30)
DIMS = ("time", "y", "x")
SMALL = {"chunk_sizes": [512, 2048], "concurrency": [1, 4, 16], "latency_samples": 6}


def _dataset(url: str, zarr_format: int = 3, **kwargs: Any) -> zarr.Group:
    group = zarr.open_group(url, mode="w", zarr_format=zarr_format, **kwargs)
    arr = group.create_array(
        "t2m",
        shape=SHAPE,
        chunks=(12, 10, 15),
        dtype="f4",
        **({"dimension_names": DIMS} if zarr_format == 3 else {}),
    )
    arr[:] = np.random.default_rng(0).random(SHAPE, dtype="f4")
    return group


def _tree(root: Path) -> dict[str, str]:
    """Every file (and folder, as "dir") under *root* with a hash of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# --- the plan (pure) -------------------------------------------------------------------------

SPEC = ArraySpec("t2m", SHAPE, (12, 10, 15), 4, None, DIMS)


def test_plan_orders_levels_sizes_and_cycles_objects() -> None:
    sample = {"t2m/zarr.json": 300, "t2m/c/0/0/0": 7000, "t2m/c/1/0/0": 9000, "zarr.json": 10}
    pats = resolve_patterns(["sequential", "random"], SHAPE, DIMS)
    plan = plan_benchmark(sample, [SPEC], pats, levels=(16, 1, 4, 4), sizes=(4096, 1024))
    assert plan.levels == (1, 4, 16)
    assert plan.sizes == (1024, 4096)
    assert plan.curve_size == 1024
    assert plan.objects == (("t2m/c/1/0/0", 9000), ("t2m/c/0/0/0", 7000))  # no metadata
    assert plan.reads(8192, 3) == (
        ("t2m/c/1/0/0", 8192),
        ("t2m/c/0/0/0", 7000),
        ("t2m/c/1/0/0", 8192),
    )
    assert [p.pattern for p in plan.patterns] == ["sequential", "random"]
    assert plan.scratch is None
    assert plan.write_levels == ()
    assert plan.writes(1024, 1) == ()
    assert [requests_at(v) for v in (1, 8, 64)] == [8, 8, 64]


@pytest.mark.parametrize(
    ("levels", "sizes"),
    [((0, 1), (10,)), ((1,), (0,)), ((), (10,))],
    ids=["level0", "size0", "none"],
)
def test_plan_rejects_non_positive(levels: tuple[int, ...], sizes: tuple[int, ...]) -> None:
    with pytest.raises(InvalidOptionError, match="positive"):
        plan_benchmark({"a/c/0": 10}, [], (), levels=levels, sizes=sizes)


def test_plan_without_objects_needs_write() -> None:
    with pytest.raises(InvalidOptionError, match="nothing to benchmark"):
        plan_benchmark({}, [], ())
    plan = plan_benchmark({}, [], (), write=True, node_path="g", token="abc", sizes=(10,))
    assert plan.scratch == "g/.zdu-bench-abc"
    assert plan.writes(10, 16)[0] == "g/.zdu-bench-abc/10-16-0"
    assert len(plan.writes(10, 16)) == 16


def test_scratch_prefix_never_reuses_existing_keys() -> None:
    assert scratch_prefix("", "x", ["a/b", ".zdu-bench-xy/c"]) == ".zdu-bench-x"
    with pytest.raises(InvalidOptionError, match="already holds objects"):
        scratch_prefix("", "x", [".zdu-bench-x/0"])


def test_fit_selection_cuts_along_time_on_chunk_boundaries() -> None:
    full = ((0, 48), (0, 20), (0, 30))
    assert fit_selection(full, SPEC, 10**9) == (full, False)
    one_chunk_row = 12 * 20 * 30 * 4  # 12 time steps of every chunk
    fitted, cut = fit_selection(full, SPEC, one_chunk_row * 2 + 5)
    assert cut
    assert fitted == ((0, 24), (0, 20), (0, 30))
    tiny, cut = fit_selection(full, SPEC, 1)
    assert cut
    assert tiny[0] == (0, 12)


def test_percentiles_and_curve_summary() -> None:
    assert percentiles([]) == {}
    assert percentiles([3.0, 1.0, 2.0, 4.0]) == {"p50": 2.0, "p95": 4.0, "p99": 4.0}
    rows = [
        {"scope": "cluster", "op": "read", "level": 4, "size": 10, "requests": 8, "bytes": 80,
         "start": 10.0, "end": 12.0},
        {"scope": "cluster", "op": "read", "level": 4, "size": 10, "requests": 8, "bytes": 80,
         "start": 11.0, "end": 14.0},
    ]  # fmt: skip
    (merged,) = summarize_curve(rows)
    assert merged["workers"] == 2
    assert merged["requests"] == 16
    assert merged["bytes"] == 160
    assert merged["seconds"] == 4.0
    assert merged["throughput"] == 40.0


def test_calibration_takes_latency_out_of_bandwidth() -> None:
    curve = [
        {"scope": "worker", "op": "read", "level": 1, "requests": 10, "bytes": 10_000,
         "seconds": 2.0, "throughput": 5000.0},
        {"scope": "worker", "op": "read", "level": 64, "requests": 64, "bytes": 64_000,
         "seconds": 0.2, "throughput": 320_000.0},
    ]  # fmt: skip
    pats = [{"bytes_decoded": 400, "bytes_read": 100, "decode_seconds": 2.0}]
    params = calibrated_params([0.1, 0.1, 0.3], curve, pats, concurrency=10, source="t")
    assert params.latency == 0.1
    # level 1: 10 waves x 0.1 s = 1 s of latency out of 2 s -> 10_000 B in 1 s
    assert params.bandwidth == pytest.approx(10_000.0)  # level 64 is above zarr's 10
    assert params.decode_rate == 200.0
    assert params.compression_ratio == 4.0
    assert params.concurrency == 10
    assert params.source == "t"
    assert as_cost_params(params) is params
    assert as_cost_params({"latency": 2.0}).source == "given"


# --- real stores -----------------------------------------------------------------------------


def _replay(store: Any, path: str, selections: Any) -> CountingStore:
    counting = CountingStore(store)
    arr = zarr.open_array(counting, path=path, mode="r")
    counting.reset()
    for sel in selections:
        arr[tuple(slice(lo, hi) for lo, hi in sel)]
    return counting


@pytest.mark.slow
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_local_store_on_the_cluster(tmp_path: Path, client: Any, zarr_format: int) -> None:
    url = str(tmp_path / "b.zarr")
    _dataset(url, zarr_format)
    before = _tree(tmp_path)
    bench = benchmark_store(url, pattern_budget="40KiB", client=client, progress=False, **SMALL)
    assert _tree(tmp_path) == before  # reading changes nothing
    assert isinstance(bench, StoreBenchmark)
    assert bench.ok
    assert bench.workers == 2
    assert "distributed" in bench.engine
    assert len(bench.latency) == 6
    assert min(bench.latency) > 0
    assert bench.listing is not None
    assert bench.listing["objects"] == len([p for p in before.values() if p != "dir"])
    worker = bench.steps("worker", "read")
    assert sorted({(r["level"], r["size"]) for r in worker}) == [
        (1, 512), (1, 2048), (4, 512), (16, 512)
    ]  # fmt: skip
    assert all(r["requests"] == requests_at(r["level"]) and r["workers"] == 1 for r in worker)
    every = bench.steps("cluster", "read")
    assert [r["level"] for r in every] == [1, 4, 16]
    assert all(r["workers"] == 2 and r["requests"] == 2 * requests_at(r["level"]) for r in every)
    assert all(r["bytes"] == r["requests"] * 512 for r in every)  # chunks are > 512 B
    # the pattern reads: measured counts equal a counting store's and the model's prediction
    store = open_store(url)
    assert {r["pattern"] for r in bench.patterns} == {
        "sequential",
        "time-series",
        "spatial",
        "random",
    }
    for row in bench.patterns:
        sels = [s for p in resolve_patterns(row["pattern"], SHAPE, DIMS) for s in p.selections]
        sels = [fit_selection(s, SPEC, 40 * 1024)[0] for s in sels]
        counting = _replay(store, "t2m", sels)
        assert row["requests"] == counting.gets == row["predicted_requests"]
        assert row["bytes_read"] == counting.bytes_read
        assert row["predicted_seconds"] > 0
    assert any(row["cut"] for row in bench.patterns)  # 40 KiB budget < the 115 KiB array
    assert bench.findings_with("bench-pattern-cut")
    assert bench.requests == (
        6 + sum(r["requests"] for r in bench.curve) + sum(r["requests"] for r in bench.patterns)
    )
    # calibrated on this store, and the estimators take it as params
    params = bench.cost_params()
    assert params.source == f"benchmark_store on {url}"
    assert params.latency == percentiles(bench.latency)["p50"]
    estimate = estimate_performance(f"{url}/t2m", None, "sequential", params=bench, progress=False)
    assert estimate.params == params.to_dict()
    data = json.loads(json.dumps(bench.to_dict()))
    assert data["report"] == "StoreBenchmark"
    assert data["params"]["concurrency"] >= 1
    text = str(bench)
    assert "first-byte latency p50" in text
    assert "predicted" in text


@pytest.mark.slow
def test_write_leaves_the_store_byte_identical(tmp_path: Path, client: Any) -> None:
    url = str(tmp_path / "w.zarr")
    _dataset(url)
    before = _tree(tmp_path)
    bench = benchmark_store(
        url, write=True, patterns="spatial", client=client, progress=False, **SMALL
    )
    assert _tree(tmp_path) == before  # scratch objects and their folder are gone
    assert bench.scratch is not None
    assert bench.scratch.startswith(".zdu-bench-")
    writes = bench.steps("worker", "write")
    assert sorted((r["size"], r["level"]) for r in writes) == [
        (512, 1), (512, 16), (2048, 1), (2048, 16)
    ]  # fmt: skip
    assert all(r["bytes"] == r["size"] * requests_at(r["level"]) for r in writes)
    assert "removed afterwards" in str(bench)


@pytest.mark.slow
def test_memory_store_runs_on_threads_and_counts_every_request(tmp_path: Path) -> None:
    inner = zarr.storage.MemoryStore()
    _dataset(inner)  # type: ignore[arg-type]
    counting = CountingStore(inner)
    bench = benchmark_store(counting, patterns="random", progress=False, **SMALL)
    assert bench.workers == 0
    assert "threads" in bench.engine
    assert bench.steps("cluster", "read") == []
    # every data request of the benchmark reached the store; the rest are metadata reads
    metadata = [k for k in counting.keys if k.endswith(_METADATA)]
    # a memory store lists no sizes: the listing asks each chunk's size (a get) once
    chunks = [k for k in inner._store_dict if not k.endswith(_METADATA)]
    assert len(chunks) == 16
    assert counting.gets - len(metadata) - len(chunks) == bench.requests
    assert bench.requests == 6 + sum(r["requests"] for r in bench.curve) + sum(
        r["requests"] for r in bench.patterns
    )


def test_write_refused_on_read_only_stores(tmp_path: Path) -> None:
    _dataset(str(tmp_path / "z.zarr"))
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as zf:
        for path in (tmp_path / "z.zarr").rglob("*"):
            if path.is_file():
                zf.write(path, str(path.relative_to(tmp_path / "z.zarr")))
    before = _tree(tmp_path)
    with pytest.raises(ReadOnlyStoreError, match=r"write=True.*read-only") as info:
        benchmark_store(str(tmp_path / "z.zip"), write=True, progress=False)
    assert "without write=True" in str(info.value)
    assert info.value.kind == "read-only"
    ro = zarr.storage.LocalStore(str(tmp_path / "z.zarr"), read_only=True)
    with pytest.raises(ReadOnlyStoreError, match="zdu bench without --write"):
        benchmark_store(ro, write=True, progress=False)
    assert _tree(tmp_path) == before


# --- S3 ----------------------------------------------------------------------------------------


def _s3_objects(url: str, options: dict[str, Any]) -> dict[str, str]:
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    fs.invalidate_cache()
    return {p: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in fs.find(url)}


@pytest.mark.slow
@pytest.mark.s3
def test_s3_write_leaves_bucket_identical(
    s3_bucket: str, s3_storage_options: dict[str, Any], client: Any
) -> None:
    url = f"s3://{s3_bucket}/b.zarr"
    _dataset(url, storage_options=s3_storage_options)
    before = _s3_objects(f"s3://{s3_bucket}", s3_storage_options)
    bench = benchmark_store(
        url,
        write=True,
        patterns="time-series",
        storage_options=s3_storage_options,
        client=client,
        progress=False,
        **SMALL,
    )
    assert _s3_objects(f"s3://{s3_bucket}", s3_storage_options) == before
    assert bench.steps("worker", "write")
    assert bench.steps("cluster", "read")
    assert "testing" not in json.dumps(bench.to_dict())  # no credentials in the report


@pytest.mark.slow
@pytest.mark.s3
def test_s3_rig_latency_is_a_lower_bound(s3_rig: Any, client: Any) -> None:
    bucket = s3_rig.make_bucket()
    url = f"s3://{bucket}/lat.zarr"
    with s3_rig.unthrottled():
        _dataset(url, storage_options=s3_rig.storage_options)
    bench = benchmark_store(
        url,
        patterns="spatial",
        chunk_sizes=[1024],
        concurrency=[1, 8],
        latency_samples=8,
        storage_options=s3_rig.storage_options,
        client=client,
        progress=False,
    )
    injected = s3_rig.latency - s3_rig.jitter
    assert len(bench.latency) == 8
    assert min(bench.latency) >= injected  # every request waited at least the injected delay
    assert bench.cost_params().latency >= injected
    # one request in flight cannot beat one injected delay per request
    (one,) = [r for r in bench.steps("worker", "read") if r["level"] == 1]
    assert one["seconds"] >= one["requests"] * injected


# --- figures, HTML, CLI ------------------------------------------------------------------------


def _fake_bench() -> StoreBenchmark:
    curve = [
        {"scope": s, "op": "read", "level": lv, "size": 1024, "workers": w, "requests": 8,
         "bytes": 8192, "seconds": 0.1 / lv, "throughput": 81920.0 * lv}
        for s, w in (("worker", 1), ("cluster", 2))
        for lv in (1, 4, 16)
    ]  # fmt: skip
    patterns = [
        {"array": "t2m", "pattern": "sequential", "requests": 8, "bytes_read": 1000,
         "seconds": 0.2, "predicted_requests": 8, "predicted_bytes_read": 1000,
         "predicted_seconds": 0.25, "cut": False},
    ]  # fmt: skip
    return StoreBenchmark(
        location="/tmp/x.zarr",
        engine="test",
        workers=2,
        latency=tuple(0.001 * (1 + i % 5) for i in range(20)),
        listing={"seconds": 0.01, "keys": 3, "objects": 3, "bytes": 100},
        curve=tuple(curve),
        patterns=tuple(patterns),
        params=CostParams(source="t").to_dict(),
        requests=50,
    )


def test_figures_layout_has_the_three_figures() -> None:
    layout = store_benchmark_figures(_fake_bench())
    from bokeh.models import Title

    titles = {m.text for m in layout.select({"type": Title})}
    assert {
        "Throughput vs requests in flight",
        "First-byte latency",
        "Access patterns: measured vs predicted (calibrated)",
    } <= titles
    html = _fake_bench()._repr_html_()
    assert "Bokeh" in html
    assert "measured / predicted" in html
    assert "<script" in html


@pytest.mark.slow
def test_saved_html_renders_in_chromium(tmp_path: Path, client: Any) -> None:
    from zarr_dask_utils.testing.browser import chromium_or_skip, render_html

    chromium = chromium_or_skip()
    url = str(tmp_path / "h.zarr")
    _dataset(url)
    bench = benchmark_store(url, patterns="spatial", client=client, progress=False, **SMALL)
    page = bench.save_html(tmp_path / "bench.html")
    assert "cdn.bokeh.org" not in page.read_text()  # offline: BokehJS inlined
    seen = render_html(page, wait_s=2.0, executable=chromium)
    assert seen.console_errors == ()
    assert seen.nonblank_fraction > 0.05  # figures drawn, not a blank page
    # the CLI's --html file (the report's HTML) renders too
    out = tmp_path / "cli.html"
    result = CliRunner().invoke(
        cli,
        ["bench", url, "--chunk-size", "1KiB", "--concurrency", "1,2", "--pattern", "random",
         "--json", "--html", str(out), "--scheduler", client.scheduler.address],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["report"] == "StoreBenchmark"
    assert [r["level"] for r in data["curve"] if r["scope"] == "worker"] == [1, 2]
    assert {r["pattern"] for r in data["patterns"]} == {"random"}
    seen = render_html(out, wait_s=2.0, executable=chromium)
    assert seen.console_errors == ()
    assert seen.nonblank_fraction > 0.05


def test_cli_bad_concurrency_is_bad_input(tmp_path: Path) -> None:
    _dataset(str(tmp_path / "c.zarr"))
    result = CliRunner().invoke(
        cli, ["bench", str(tmp_path / "c.zarr"), "--concurrency", "1,x", "--json"]
    )
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["kind"] == "invalid-option"
