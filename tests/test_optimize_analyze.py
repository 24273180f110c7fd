"""analyze_chunks and estimate_performance on real stores; predictions vs a counting store."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from zarr_dask_utils import (
    InvalidOptionError,
    analyze_chunks,
    estimate_performance,
    open_store,
)
from zarr_dask_utils._core.pure.access_patterns import resolve_patterns
from zarr_dask_utils._core.pure.cost_model import CostParams
from zarr_dask_utils.testing.counting import CountingStore

pytestmark = pytest.mark.cluster

SHAPE = (200, 20, 30)
DIMS = ("time", "lat", "lon")


def _dataset(store, zarr_format, chunks=(1, 20, 30), shards=None, compressors="auto"):
    group = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    dim_kw = {"dimension_names": DIMS} if zarr_format == 3 else {}
    attrs = {} if zarr_format == 3 else {"_ARRAY_DIMENSIONS": list(DIMS)}
    t2m = group.create_array(
        "t2m",
        shape=SHAPE,
        chunks=chunks,
        shards=shards,
        dtype="f4",
        attributes=attrs,
        compressors=compressors,
        **dim_kw,
    )
    t2m[:] = np.random.default_rng(0).standard_normal(SHAPE, dtype="f4")
    time = group.create_array(
        "time",
        shape=(SHAPE[0],),
        chunks=(SHAPE[0],),
        dtype="i8",
        attributes={} if zarr_format == 3 else {"_ARRAY_DIMENSIONS": ["time"]},
        **({"dimension_names": ("time",)} if zarr_format == 3 else {}),
    )
    time[:] = np.arange(SHAPE[0])
    return group


@pytest.mark.parametrize("store_case", ["v2-local", "v3-s3"], indirect=True)
def test_analyze_recommends_known_answers(store_case, client):
    _dataset(store_case.store(), store_case.zarr_format)
    kwargs = {
        "min_chunk_bytes": "2KiB",
        "max_chunk_bytes": "4MiB",
        "storage_options": store_case.storage_options,
        "client": client,
        "progress": False,
    }
    ts = analyze_chunks(store_case.url, "time-series", **kwargs)
    assert ts.recommended("t2m")[0] == SHAPE[0]
    assert ts.recommended("time") == (SHAPE[0],)  # shared dimension, same chunks
    assert not ts.ok
    (finding,) = ts.findings_with("chunking-mismatch")
    assert finding.location == "t2m"
    assert "zdu rechunk" in finding.fix
    row = next(a for a in ts.arrays if a["path"] == "t2m")
    assert row["dims"] == list(DIMS)
    assert row["current"][0]["chunks_touched"] == 4 * SHAPE[0]  # one chunk per step per point
    assert row["recommended"][0]["requests"] == 4
    assert "distributed" in ts.engine
    sp = analyze_chunks(store_case.url, "spatial", **kwargs)
    assert sp.recommended("t2m") == (1, 20, 30)
    assert sp.ok  # the store is already chunked for maps
    assert sp.recommended("time")[0] == 1
    text = str(ts)
    assert "why:" in text
    assert "time-series" in ts._repr_html_()
    assert ts.to_dict()["bounds"]["min_chunk_bytes"] == 2048


def test_analyze_weighted_user_selections_and_shards(tmp_path, client):
    group = _dataset(str(tmp_path / "s.zarr"), 3, chunks=(10, 5, 5))
    pattern = [({"lat": 3, "lon": 4}, 3.0), ((slice(0, 10),), 1.0)]
    report = analyze_chunks(
        group,
        pattern,
        min_chunk_bytes=1,
        max_chunk_bytes="64KiB",
        shard_bytes="1MiB",
        client=client,
        progress=False,
    )
    assert [p["name"] for p in report.patterns] == ["selection-0", "selection-1"]
    row = next(a for a in report.arrays if a["path"] == "t2m")
    assert row["recommended_shards"] is not None
    assert row["recommended_chunks"][0] > 10


@pytest.mark.parametrize(
    ("zarr_format", "chunks", "shards"),
    [(2, (7, 6, 8), None), (3, (7, 6, 8), None), (3, (4, 5, 6), (8, 10, 12))],
    ids=["v2", "v3", "v3-sharded"],
)
@pytest.mark.parametrize("pattern", ["sequential", "time-series", "spatial", "random"])
def test_predicted_counts_match_a_counting_store(tmp_path, zarr_format, chunks, shards, pattern):
    """Requests, bytes and chunks predicted equal what zarr really asks the store for."""
    inner = open_store(str(tmp_path / "c.zarr"), read_only=False)
    group = _dataset(inner, zarr_format, chunks=chunks, shards=shards, compressors=None)
    estimate = estimate_performance(
        group["t2m"], None, pattern, params={"latency": 0.001}, progress=False
    )
    counting = CountingStore(inner)
    arr = zarr.open_array(counting, path="t2m", mode="r")
    counting.reset()
    for p in resolve_patterns(pattern, SHAPE, DIMS):
        for sel in p.selections:
            arr[tuple(slice(a, b) for a, b in sel)]
    assert counting.gets == estimate.requests
    assert counting.bytes_read == estimate.bytes_read
    assert estimate.shards == shards
    assert estimate.params["source"] == "given"


def test_estimate_with_probe_on_the_cluster(tmp_path, client):
    _dataset(str(tmp_path / "p.zarr"), 3, chunks=(10, 20, 30))
    est = estimate_performance(
        str(tmp_path / "p.zarr" / "t2m"),
        (200, 5, 5),
        "time-series",
        client=client,
        progress=False,
    )
    assert est.params["source"] == "probe on a worker"
    assert est.params["latency"] > 0
    assert est.params["bandwidth"] > 0
    assert est.params["compression_ratio"] >= 1.0
    assert est.requests == 4
    assert est.chunks == (200, 5, 5)
    assert est.seconds > 0
    assert "distributed" in est.engine
    assert "predicted" in str(est)
    fixed = estimate_performance(
        str(tmp_path / "p.zarr" / "t2m"),
        None,
        "sequential",
        params=CostParams(latency=1.0, concurrency=1),
        progress=False,
    )
    assert fixed.requests == 20
    assert fixed.seconds >= 20.0
    with pytest.raises(InvalidOptionError, match="group"):
        estimate_performance(str(tmp_path / "p.zarr"), params={}, progress=False)


def test_analyze_array_without_dimension_names_and_counting_ranges(tmp_path, client):
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    arr = zarr.create_array(
        str(tmp_path / "plain.zarr"), shape=(50, 40), chunks=(50, 1), dtype="i2", zarr_format=2
    )
    report = analyze_chunks(arr, "spatial", min_chunk_bytes=1, client=client, progress=False)
    row = report.arrays[0]
    assert row["dims"] == [None, None]
    assert report.recommended("")[0] == 1  # axis 0 is taken as time
    counting = CountingStore(open_store(str(tmp_path / "plain.zarr")))
    values = sync(counting.get_partial_values(default_buffer_prototype(), [(".zarray", None)]))
    assert counting.gets == 1
    assert counting.bytes_read == len(values[0])
    assert counting.keys == [".zarray"]
