"""Pure planning of ``optimize_s3_access`` (issue 15, part 1) and the obstore option mapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.storage.obstore_engine import obstore_config, split_engine
from zarr_dask_utils.cloud.s3_settings import (
    MIN_GAIN,
    TUNING_KEYS,
    Candidate,
    StoreFacts,
    bandwidth_delay_product,
    cache_type_for,
    choose_candidate,
    distinct_chunk_ratio,
    is_consolidated,
    knee_level,
    plan_candidates,
)
from zarr_dask_utils.cloud.tune_findings import tune_findings
from zarr_dask_utils.cloud.tune_report import S3AccessReport

CURVE = ((1, 3e6), (4, 12e6), (16, 40e6), (64, 42e6))


def _facts(**kw):
    base = {
        "latency": 0.02,
        "connection_rate": 3e6,
        "curve": CURVE,
        "chunk_bytes": 65536,
        "largest_chunk": 65536,
        "consolidated": False,
        "obstore": True,
    }
    return StoreFacts(**{**base, **kw})


# --- measurements -> numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("curve", "knee"),
    [
        pytest.param(CURVE, 16, id="flattens-at-16"),
        pytest.param(((1, 5.0), (4, 5.0)), 1, id="flat"),
        pytest.param(((1, 1.0), (8, 10.0), (64, 100.0)), 64, id="still-rising"),
        pytest.param((), 0, id="no-curve"),
    ],
)
def test_knee_level(curve, knee):
    assert knee_level(curve) == knee


def test_bandwidth_delay_product():
    assert bandwidth_delay_product(0.02, 100e6) == 2_000_000
    assert bandwidth_delay_product(0.0, 100e6) == 0


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        pytest.param({".zmetadata": b"{}"}, True, id="v2-consolidated"),
        pytest.param({".zgroup": b"{}"}, False, id="v2-plain"),
        pytest.param(
            {"zarr.json": b'{"consolidated_metadata": {"kind": "inline"}}'}, True, id="v3"
        ),
        pytest.param({"zarr.json": b'{"consolidated_metadata": null}'}, False, id="v3-null"),
        pytest.param({"zarr.json": b'{"node_type": "group"}'}, False, id="v3-plain"),
    ],
)
def test_is_consolidated(docs, expected):
    assert is_consolidated(docs) is expected


def test_distinct_chunk_ratio_counts_rereads():
    # four time series through the same chunk column: each chunk read four times
    sels = [((0, 100), (i, i + 1)) for i in range(4)]
    assert distinct_chunk_ratio(sels, (10, 10)) == 4.0
    assert distinct_chunk_ratio([((0, 100), (0, 100))], (10, 10)) == 1.0
    assert distinct_chunk_ratio([((0, 10**6), (0, 10**6))], (1, 1)) == 1.0  # too many: give up


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 30)), min_size=1, max_size=6))
def test_distinct_chunk_ratio_is_at_least_one(boxes):
    sels = [((lo, lo + n),) for lo, n in boxes]
    assert distinct_chunk_ratio(sels, (7,)) >= 1.0


@pytest.mark.parametrize(("pattern", "cache"), [("sequential", "readahead"), ("random", "none")])
def test_cache_type_for(pattern, cache):
    assert cache_type_for(pattern) == cache


# --- candidates --------------------------------------------------------------------------------


def test_candidates_start_with_the_given_settings_and_avoid_heads():
    cands = plan_candidates(_facts())
    assert cands[0].baseline
    assert cands[0].name == "as-given"
    assert [c.name for c in cands[1:]] == ["s3fs-16", "s3fs-32", "obstore-16"]
    for cand in cands[1:3]:
        # small chunks: s3fs must not HEAD before each GET, and the pool must hold the level
        assert cand.options["max_concurrency"] == 1
        assert cand.options["config_kwargs"] == {"max_pool_connections": cand.concurrency}
    assert cands[-1].options == {"zdu_engine": "obstore"}


def test_rereads_get_a_cached_candidate():
    cands = {c.name: c for c in plan_candidates(_facts(reread_ratio=4.0))}
    assert cands["s3fs-16-cached"].cache
    assert cands["s3fs-16-cached"].options == cands["s3fs-16"].options
    assert not any(c.cache for c in plan_candidates(_facts()))


def test_no_obstore_candidate_without_obstore():
    names = [c.name for c in plan_candidates(_facts(obstore=False))]
    assert not any(n.startswith("obstore") for n in names)


def test_large_chunks_get_a_split_candidate_and_keep_ranged_reads():
    big = 64 * 2**20
    cands = {c.name: c for c in plan_candidates(_facts(chunk_bytes=big, largest_chunk=big))}
    split = cands["s3fs-split-16"]
    assert split.options["max_concurrency"] == 8
    assert split.options["default_block_size"] == big // 8
    assert split.options["config_kwargs"]["max_pool_connections"] == 16 * 8
    assert "max_concurrency" not in cands["s3fs-16"].options  # above the block size: keep split


def test_still_rising_curve_covers_the_bandwidth_delay_product():
    facts = _facts(curve=((1, 1e6), (4, 4e6), (16, 16e6)), connection_rate=100e6)
    level = plan_candidates(facts)[1].concurrency
    # 20 ms x 100 MB/s = 2 MB in flight needed, 64 KiB chunks -> 2 x 31 requests
    assert level == 62


def test_candidate_options_keep_credentials_and_replace_tuning():
    given_opts = {"key": "k", "secret": "s", "endpoint_url": "http://e", "max_concurrency": 4}
    cand = Candidate("c", "obstore", 8, {"zdu_engine": "obstore"})
    assert cand.storage_options(given_opts) == {
        "key": "k",
        "secret": "s",
        "endpoint_url": "http://e",
        "zdu_engine": "obstore",
    }
    base = Candidate("as-given", "s3fs", 10, baseline=True)
    assert base.storage_options(given_opts) == given_opts
    assert "max_concurrency" in TUNING_KEYS
    assert cand.zarr_config() == {"async.concurrency": 8}


# --- the choice ------------------------------------------------------------------------------

CANDS = (
    Candidate("as-given", "s3fs", 10, baseline=True),
    Candidate("s3fs-16", "s3fs", 16),
    Candidate("obstore-16", "obstore", 16),
)


def _trial(seconds, digest="d"):
    return {"seconds": seconds, "bytes_needed": 1000, "digest": digest}


@pytest.mark.parametrize(
    ("trials", "winner"),
    [
        pytest.param(
            {"as-given": _trial(2.0), "s3fs-16": _trial(1.0), "obstore-16": _trial(0.8)},
            "obstore-16",
            id="fastest",
        ),
        pytest.param(
            {"as-given": _trial(1.0), "s3fs-16": _trial(1.0 / (MIN_GAIN - 0.05))},
            "as-given",
            id="within-noise",
        ),
        pytest.param(
            {"as-given": _trial(2.0), "s3fs-16": _trial(1.0), "obstore-16": _trial(0.1, "x")},
            "s3fs-16",
            id="other-bytes-rejected",
        ),
        pytest.param(
            {"as-given": _trial(2.0), "s3fs-16": {"error": "boom"}, "obstore-16": _trial(1.5)},
            "obstore-16",
            id="failed-rejected",
        ),
    ],
)
def test_choose_candidate(trials, winner):
    choice = choose_candidate(CANDS, trials)
    assert choice.winner == winner
    assert choice.baseline == "as-given"
    if winner != "as-given":
        assert choice.speedup >= MIN_GAIN
    for name, trial in trials.items():
        if trial.get("error") or trial.get("digest") == "x":
            assert name in choice.rejected


def test_choice_stays_when_the_baseline_fails():
    choice = choose_candidate(CANDS, {"as-given": {"error": "403"}, "s3fs-16": _trial(1.0)})
    assert choice.winner == "as-given"
    assert "could not be read" in choice.reason


# --- findings and the report -----------------------------------------------------------------


def _report(**kw):
    base = {
        "location": "s3://b/x.zarr",
        "array": "a",
        "facts": {
            "chunk_bytes": 1000,
            "bdp": 50_000,
            "reread_ratio": 1.0,
            "obstore_installed": False,
        },
        "trials": {
            "as-given": {
                "calls": {"HeadObject": 3, "GetObject": 3},
                "throughput": 1e6,
                "requests": 3,
                "max_in_flight": 3,
                "seconds": 0.1,
            }
        },
        "storage_options": {"endpoint_url": "http://e", "max_concurrency": 1},
        "given_options": {"key": "AKIA", "secret": "hush", "endpoint_url": "http://e"},
        "url": "s3://b/x.zarr",
    }
    return S3AccessReport(**{**base, **kw})


def test_findings_say_heads_small_chunks_and_missing_obstore():
    report = _report(consolidate=True)
    choice = choose_candidate(CANDS, {"as-given": _trial(1.0)})
    codes = {f.code for f in tune_findings(report, choice)}
    assert {"s3-head-before-get", "s3-small-chunks", "obstore-missing"} <= codes
    assert "s3-not-consolidated" in codes


def test_report_never_shows_credentials_but_can_use_them():
    report = _report()
    text = str(report) + report.options_json() + repr(report.to_dict())
    assert "AKIA" not in text
    assert "hush" not in text
    full = report.full_storage_options()
    assert full["key"] == "AKIA"
    assert full["max_concurrency"] == 1


# --- the obstore engine's option mapping -----------------------------------------------------


def test_obstore_config_maps_s3fs_options():
    cfg = obstore_config(
        "s3://bkt/deep/x.zarr",
        {
            "key": "k",
            "secret": "s",
            "token": "t",
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"},
            "max_concurrency": 1,  # s3fs-only tuning left behind: dropped
        },
    )
    assert cfg == {
        "bucket": "bkt",
        "prefix": "deep/x.zarr",
        "access_key_id": "k",
        "secret_access_key": "s",
        "session_token": "t",
        "endpoint": "http://127.0.0.1:9",
        "region": "eu-west-1",
        "client_options": {"allow_http": True},
    }
    assert obstore_config("s3://bkt", {"anon": True}) == {
        "bucket": "bkt",
        "prefix": None,
        "skip_signature": True,
    }


@pytest.mark.parametrize(
    ("url", "options"),
    [
        pytest.param("gs://b/x", {}, id="not-s3"),
        pytest.param("s3://b/x", {"requester_pays": True}, id="unknown-option"),
        pytest.param("s3://b/x", {"client_kwargs": {"verify": False}}, id="unknown-client-kwarg"),
    ],
)
def test_obstore_config_refuses_what_it_would_ignore(url, options):
    with pytest.raises(InvalidOptionError):
        obstore_config(url, options)


def test_split_engine():
    assert split_engine({"key": "k"}) == ("s3fs", {"key": "k"})
    assert split_engine({"zdu_engine": "obstore", "key": "k"}) == ("obstore", {"key": "k"})
    with pytest.raises(InvalidOptionError, match="not an engine"):
        split_engine({"zdu_engine": "boto"})
