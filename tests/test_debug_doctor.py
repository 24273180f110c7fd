"""diagnose_zarr_store / zdu doctor: each finding on a store that has the problem, none on a
healthy one; facts (sizes, counts, compression) checked against what was written."""

from __future__ import annotations

import json
import math
import warnings

import dask.config
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from zarr_dask_utils import diagnose_zarr_store
from zarr_dask_utils._core.pure.chunk_choice import suggest_chunks
from zarr_dask_utils._core.pure.keys import is_metadata_key
from zarr_dask_utils._core.storage.listing import list_sizes
from zarr_dask_utils.cli.main import cli
from zarr_dask_utils.debug.diagnose_rules import (
    ArrayDiagnosis,
    Limits,
    array_findings,
    human_bytes,
)
from zarr_dask_utils.testing import corrupt

# Small thresholds so the test stores stay a few hundred KiB.
SMALL = {
    "zarr-dask-utils.doctor.min-chunk-size": "4KiB",
    "zarr-dask-utils.doctor.max-chunk-size": "256KiB",
    "zarr-dask-utils.doctor.target-chunk-size": "32KiB",
    "zarr-dask-utils.doctor.max-objects": 200,
    "zarr-dask-utils.doctor.shard-hint-chunks": 40,
}


@pytest.fixture(autouse=True)
def _small_limits():
    with dask.config.set(SMALL):
        yield


def _group(case):
    return zarr.open_group(case.store(), mode="a", zarr_format=case.zarr_format)


def _array(group, name, shape, chunks, dims, *, compressed=True, fill=True, **kw):
    fmt = group.metadata.zarr_format
    extra = {} if compressed else {"compressors": None}
    if fmt == 3:
        extra["dimension_names"] = dims
    arr = group.create_array(name, shape=shape, chunks=chunks, dtype="f4", **extra, **kw)
    if fmt == 2 and dims is not None:
        arr.attrs["_ARRAY_DIMENSIONS"] = list(dims)
    if fill:
        arr[...] = (np.arange(math.prod(shape), dtype="f4") % 7).reshape(shape)
    return arr


def _healthy(case):
    g = _group(case)
    _array(g, "t2m", (16, 32, 32), (8, 32, 32), ("time", "lat", "lon"))  # 32 KiB chunks
    _array(g, "time", (16,), (16,), ("time",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # consolidated metadata is not in the v3 spec
        zarr.consolidate_metadata(case.store())
    return case


def _diagnose(case, client):
    return diagnose_zarr_store(
        case.url, storage_options=case.storage_options, client=client, progress=False
    )


def _codes(report):
    return {f.code for f in report.findings}


def test_healthy_store_has_no_findings_and_exact_facts(store_case, client):
    report = _diagnose(_healthy(store_case), client)
    assert report.findings == (), str(report)
    assert report.ok
    assert report.consolidated == "ok"
    assert report.zarr_format == store_case.zarr_format
    assert report.groups == 1
    t2m = {a.path: a for a in report.arrays}["t2m"]
    assert t2m.chunk_bytes == 8 * 32 * 32 * 4
    assert (t2m.objects_expected, t2m.objects_present) == (2, 2)
    store = store_case.store(read_only=True)
    sizes = list_sizes(store)
    chunk_keys = [k for k in sizes if k.startswith("t2m/") and not is_metadata_key(k)]
    assert t2m.stored_bytes == sum(sizes[k] for k in chunk_keys)
    assert report.objects == len(sizes)
    assert report.total_bytes == sum(sizes.values())
    assert t2m.compression_ratio is not None
    assert t2m.compression_ratio > 1
    arrays = json.loads(json.dumps(report.to_dict()))["arrays"]
    assert {a["path"]: a["chunk_bytes"] for a in arrays}["t2m"] == 32768
    assert "t2m" in str(report)
    assert "Diagnosis" in report._repr_html_()


@pytest.mark.parametrize("store_case", ["v2-local", "v3-local", "v3-s3"], indirect=True)
def test_each_problem_is_found(store_case, client):
    g = _group(store_case)
    _array(g, "small", (1000,), (10,), ("x",))  # 40 B chunks
    _array(g, "large", (128, 1024), (128, 1024), ("y", "x2"))  # 512 KiB chunk
    _array(g, "raw", (64, 64), (32, 64), ("a", "b"), compressed=False)
    _array(g, "sparse", (64, 64), (32, 64), ("a", "b"), fill=False)[0:32] = 1.0
    _array(g, "ts", (120, 4, 4), (1, 4, 4), ("time", "lat", "lon"), fill=False)
    _array(g, "maps", (4, 12, 12), (4, 1, 1), ("time", "lat", "lon"), fill=False)
    _array(g, "odd", (7,), (7,), ("x",))  # 'x' is 1000 long in "small"
    report = _diagnose(store_case, client)
    where = {(f.code, f.location) for f in report.findings}
    assert ("chunks-too-small", "small") in where
    assert ("chunks-too-large", "large") in where
    assert ("uncompressed", "raw") in where
    assert ("chunks-not-stored", "sparse") in where
    assert ("chunking-fights-time-series", "ts") in where
    assert ("chunking-fights-maps", "maps") in where
    assert ("dimension-length-mismatch", "") in where
    assert "consolidated-missing" in _codes(report)  # a validate_metadata finding, merged
    if store_case.zarr_format == 2:
        assert ("sharding-recommended", "small") in where  # 100 chunks >= 40
    else:
        assert "sharding-recommended" not in _codes(report)
    assert ("too-many-objects", "") not in where  # < 200 objects
    small = next(f for f in report.findings if f.code == "chunks-too-small")
    assert "zdu rechunk" in (small.fix or "")
    sparse = {a.path: a for a in report.arrays}["sparse"]
    assert (sparse.objects_expected, sparse.objects_present) == (2, 1)
    for healthy in ("raw", "odd", "sparse"):
        assert ("chunks-too-small", healthy) not in where


@pytest.mark.parametrize("store_case", ["v2-local"], indirect=True)
def test_store_level_and_naming_findings(store_case, client):
    g = _group(store_case)
    _array(g, "named", (300,), (1,), ("x",))  # 300 objects > 200
    _array(g, "unnamed", (300,), (300,), None)
    corrupt.add_array_unconsolidated(store_case.url, "late")
    report = _diagnose(store_case, client)
    codes = _codes(report)
    assert "too-many-objects" in codes
    assert "dimension-names-missing" in codes
    assert report.objects > 200  # chunks equal to the fill value (0) are not stored


@pytest.mark.parametrize("store_case", ["v3-local"], indirect=True)
def test_sharded_small_shards_and_healthy_shards(store_case, client):
    g = _group(store_case)
    g.create_array(
        "good",
        shape=(64, 64),
        chunks=(8, 8),
        shards=(64, 64),
        dtype="f4",
        dimension_names=("a", "b"),
    )[:] = 1.0  # 16 KiB shards of 256 B chunks: fine
    g.create_array(
        "tiny",
        shape=(64, 64),
        chunks=(4, 4),
        shards=(8, 8),
        dtype="f4",
        dimension_names=("a", "b"),
    )[:] = 1.0  # 256 B shards
    report = _diagnose(store_case, client)
    where = {(f.code, f.location) for f in report.findings}
    assert ("chunks-too-small", "tiny") in where
    assert ("chunks-too-small", "good") not in where
    good = {a.path: a for a in report.arrays}["good"]
    assert good.shards == (64, 64)
    assert good.object_bytes == 64 * 64 * 4


@pytest.mark.parametrize("store_case", ["v3-local"], indirect=True)
def test_cli_doctor_exit_codes_and_json(store_case, client, tmp_path):
    address = ["--scheduler", client.scheduler.address]
    healthy = _healthy(store_case)
    result = CliRunner().invoke(cli, ["doctor", healthy.url, "--json", *address])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"] == "DiagnosisReport"
    _array(_group(store_case), "small", (1000,), (10,), ("x",))
    html = tmp_path / "doctor.html"
    result = CliRunner().invoke(cli, ["doctor", healthy.url, "--html", str(html), *address])
    assert result.exit_code == 1, result.output
    assert "chunks-too-small" in result.stdout
    assert "chunks-too-small" in html.read_text()
    missing = CliRunner().invoke(cli, ["doctor", str(tmp_path / "nope.zarr"), *address])
    assert missing.exit_code == 2
    assert "Traceback" not in missing.output


# --- pure rules -------------------------------------------------------------------------------


def _facts(**kw):
    base = {
        "path": "a",
        "zarr_format": 3,
        "shape": (100, 100),
        "dtype": "float32",
        "chunks": (10, 10),
        "shards": None,
        "codecs": ("zstd",),
        "fill_value": 0.0,
        "dimension_names": ("y", "x"),
        "itemsize": 4,
        "objects_expected": 100,
        "objects_present": 100,
        "stored_bytes": 100 * 200,
    }
    base.update(kw)
    return ArrayDiagnosis(**base)


@pytest.mark.parametrize(
    ("facts", "codes"),
    [
        pytest.param({}, {"chunks-too-small"}, id="400B-chunks"),
        pytest.param(
            {"chunks": (100, 100), "objects_expected": 1, "objects_present": 1},
            set(),
            id="single-chunk-fine",
        ),
        pytest.param(
            {"codecs": ("bytes", "crc32c")},
            {"chunks-too-small", "uncompressed"},
            id="no-compressor",
        ),
        pytest.param({"itemsize": None}, set(), id="variable-size-dtype"),
        pytest.param(
            {"objects_present": 40}, {"chunks-too-small", "chunks-not-stored"}, id="sparse"
        ),
        pytest.param(
            {
                "zarr_format": 2,
                "objects_expected": 20000,
                "objects_present": 20000,
                "shape": (2000, 1000),
            },
            {"chunks-too-small", "sharding-recommended"},
            id="v2-many-small",
        ),
    ],
)
def test_array_rules(facts, codes):
    assert {f.code for f in array_findings(_facts(**facts), Limits())} == codes


@pytest.mark.parametrize(
    ("shape", "chunks", "target", "expected"),
    [
        pytest.param((1000,), (10,), 400, (100,), id="grow-1d"),
        pytest.param((100, 100), (10, 10), 40000, (100, 100), id="grow-to-full"),
        pytest.param((4, 1000), (4, 10), 16000, (4, 1000), id="capped-axis-gives-slack"),
        pytest.param((1000, 1000), (1000, 1000), 40000, (10, 1000), id="shrink-longest"),
    ],
)
def test_suggest_chunks(shape, chunks, target, expected):
    assert suggest_chunks(shape, chunks, 4, target) == expected


@given(
    st.lists(st.integers(1, 500), min_size=1, max_size=4).flatmap(
        lambda shape: st.tuples(
            st.just(tuple(shape)),
            st.tuples(*(st.integers(1, s) for s in shape)),
            st.integers(1, 1 << 22),
        )
    )
)
def test_suggest_chunks_invariants(case):
    shape, chunks, target = case
    new = suggest_chunks(shape, chunks, 4, target)
    assert len(new) == len(shape)
    assert all(1 <= c <= s for c, s in zip(new, shape, strict=True))
    if math.prod(shape) * 4 <= target:
        assert math.prod(new) <= math.prod(shape)


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 << 30) == "3.0 GiB"
