"""rechunk_array on real stores: bit-exact copies, both formats, local and S3, safety, memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr

from zarr_dask_utils import InvalidOptionError, NotAZarrStoreError, open_node, open_store
from zarr_dask_utils._core.storage.storeio import list_keys, read_keys
from zarr_dask_utils.optimize import rechunk_array
from zarr_dask_utils.optimize.plan import plan_rechunk
from zarr_dask_utils.optimize.rechunk import MARKER_PREFIX
from zarr_dask_utils.testing import corrupt

pytestmark = pytest.mark.cluster

SHAPE = (48, 20, 24)


def _data() -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.standard_normal(SHAPE).astype("f4")
    data[3, :, 5] = np.nan
    data[7] = -0.0
    return data


def _source(url, zarr_format, storage_options=None, chunks=(1, 20, 24)):
    store = open_store(url, storage_options=storage_options, read_only=False)
    dims = {"_ARRAY_DIMENSIONS": ["time", "lat", "lon"]} if zarr_format == 2 else {}
    arr = zarr.create_array(
        store,
        shape=SHAPE,
        chunks=chunks,
        dtype="f4",
        fill_value=np.nan,
        zarr_format=zarr_format,
        attributes={"units": "K", "long_name": "air temperature", **dims},
        dimension_names=("time", "lat", "lon") if zarr_format == 3 else None,
    )
    data = _data()
    arr[:] = data
    return data


def _snapshot(url, storage_options=None):
    store = open_store(url, storage_options=storage_options)
    keys = list_keys(store)
    return read_keys(store, keys)


def _assert_same(target, data, storage_options=None, zarr_format=3):
    arr = zarr.open_array(open_store(target, storage_options=storage_options), mode="r")
    out = arr[:]
    assert out.dtype == data.dtype
    assert np.array_equal(out, data, equal_nan=True)
    assert np.array_equal(np.signbit(out), np.signbit(data))  # -0.0 kept bit for bit
    assert np.isnan(arr.fill_value)
    assert arr.attrs["units"] == "K"
    assert arr.metadata.zarr_format == zarr_format
    names = (
        arr.metadata.dimension_names if zarr_format == 3 else tuple(arr.attrs["_ARRAY_DIMENSIONS"])
    )
    assert tuple(names) == ("time", "lat", "lon")
    keys = list_keys(open_store(target, storage_options=storage_options))
    assert not any(k.startswith(MARKER_PREFIX) for k in keys)
    return arr


def test_rechunk_across_formats_and_locations(store_case, client):
    """Source in the case's format and place; target in the other format beside it."""
    data = _source(store_case.url, store_case.zarr_format, store_case.storage_options)
    before = _snapshot(store_case.url, store_case.storage_options)
    other = 5 - store_case.zarr_format
    target = store_case.child("target.zarr")
    report = rechunk_array(
        store_case.url,
        (48, 5, 6),
        target,
        max_mem="40KiB",
        zarr_format=other,
        storage_options=store_case.storage_options,
        target_storage_options=store_case.storage_options,
        client=client,
        progress=False,
    )
    arr = _assert_same(target, data, store_case.storage_options, zarr_format=other)
    assert arr.chunks == (48, 5, 6)
    assert report.ok
    assert report.method == "rechunker"
    assert report.blocks_written > 1
    assert report.bytes_written == data.nbytes
    assert "distributed" in report.engine
    assert report.to_dict()["arrays"][0]["target_chunks"] == [48, 5, 6]
    assert _snapshot(store_case.url, store_case.storage_options) == before  # source untouched


def test_v2_local_to_v3_sharded_on_s3(tmp_path, s3_bucket, s3_storage_options, client):
    src = str(tmp_path / "src.zarr")
    data = _source(src, 2)
    target = f"s3://{s3_bucket}/out.zarr"
    report = rechunk_array(
        src,
        (48, 5, 6),
        target,
        target_shards=(48, 10, 12),
        max_mem="400KiB",
        zarr_format=3,
        target_storage_options=s3_storage_options,
        temp_store=str(tmp_path / "tmp.zarr"),
        client=client,
        progress=False,
    )
    arr = _assert_same(target, data, s3_storage_options)
    assert arr.chunks == (48, 5, 6)
    assert arr.shards == (48, 10, 12)
    for stage in report.arrays[0]["plan"]["stages"]:
        if stage["target"] == "target":  # every block is whole shards
            assert all(
                b % s == 0 or b == n
                for b, s, n in zip(stage["block"], (48, 10, 12), SHAPE, strict=False)
            )
    assert report.temp_store is not None
    assert list_keys(open_store(str(tmp_path / "tmp.zarr"))) == []


def test_two_stage_plan_through_temp_store(tmp_path, client):
    src = str(tmp_path / "src.zarr")
    data = _source(src, 3)
    report = rechunk_array(
        src,
        (48, 2, 2),
        str(tmp_path / "out.zarr"),
        max_mem=48 * 8 * 8 * 4,
        temp_store=str(tmp_path / "tmp.zarr"),
        client=client,
        progress=False,
    )
    assert len(report.arrays[0]["plan"]["stages"]) == 2, report
    assert "two stages" in report.method_reason
    _assert_same(str(tmp_path / "out.zarr"), data)
    assert "stages 2" in str(report)


def test_two_stages_split_into_two_blocks_per_thread(tmp_path, client):
    # issue 13: the client's 2 threads get >= 4 blocks per stage (3 in stage 2 before), with
    # the temp copy's chunks shrunk to fit, and the values come out exact
    src = str(tmp_path / "src.zarr")
    data = _source(src, 3)
    max_mem = math.prod(SHAPE) * 4 // 2
    before = plan_rechunk(SHAPE, 4, (1, 20, 24), (48, 4, 4), max_mem, allow_two_stage=True)
    report = rechunk_array(
        src,
        (48, 4, 4),
        str(tmp_path / "out.zarr"),
        max_mem=max_mem,
        temp_store=str(tmp_path / "tmp.zarr"),
        client=client,
        progress=False,
    )
    plan = report.arrays[0]["plan"]
    blocks = [
        math.prod(-(-n // b) for n, b in zip(SHAPE, s["block"], strict=True))
        for s in plan["stages"]
    ]
    assert [s.n_blocks(SHAPE) for s in before.stages] == [4, 3]
    assert blocks == [4, 6]
    assert plan["intermediate_chunks"] != list(before.intermediate_chunks)
    for old, new in zip(before.stages, plan["stages"], strict=True):
        assert new["read_amplification"] <= round(old.read_amplification, 3)
    assert report.blocks_written == sum(blocks)
    _assert_same(str(tmp_path / "out.zarr"), data)


def test_temp_copy_uses_the_fast_codec_for_numbers_only():
    import dask

    from zarr_dask_utils.optimize.rechunk_steps import temp_compressors

    # the packaged default, auto: lz4, fast and the temp copy stays small on disk
    assert temp_compressors(np.dtype("f4")) == "blosc-lz4"
    assert temp_compressors(np.dtype("M8[s]")) == "blosc-lz4"
    assert temp_compressors(np.dtype("U4")) is None  # strings: the source's
    assert temp_compressors(np.dtype("O")) is None
    with dask.config.set({"zarr-dask-utils.optimize.temp-compressors": None}):
        assert temp_compressors(np.dtype("f4")) is None
    with dask.config.set({"zarr-dask-utils.optimize.temp-compressors": "zstd:1"}):
        assert temp_compressors(np.dtype("i2")) == "zstd:1"


@pytest.mark.parametrize("temp_codec", ["auto", "none", None])
def test_two_stage_values_survive_each_temp_codec(tmp_path, temp_codec):
    import dask

    src = str(tmp_path / "src.zarr")
    data = _source(src, 3)
    out = zarr.storage.MemoryStore()  # in memory: threads in this process, no cluster
    with dask.config.set({"zarr-dask-utils.optimize.temp-compressors": temp_codec}):
        report = rechunk_array(
            zarr.open_array(src, mode="r"),
            (48, 2, 2),
            out,
            max_mem=48 * 8 * 8 * 4,
            temp_store=zarr.storage.MemoryStore(),
            progress=False,
        )
    assert len(report.arrays[0]["plan"]["stages"]) == 2, report
    copy = zarr.open_array(out, mode="r")
    assert copy.chunks == (48, 2, 2)
    assert np.array_equal(copy[:], data, equal_nan=True)


@pytest.mark.parametrize("engine", ["tasks", "p2p"])
def test_dask_engines(tmp_path, client, engine):
    src = str(tmp_path / "src.zarr")
    data = _source(src, 3)
    target = str(tmp_path / "out.zarr")
    report = rechunk_array(
        src,
        (48, 4, 4),
        target,
        target_shards=(48, 8, 8),
        max_mem="1MiB",
        engine=engine,
        client=client,
        progress=False,
    )
    assert report.method == engine
    assert "requested" in report.method_reason
    assert report.bytes_written == data.nbytes
    assert _assert_same(target, data).shards == (48, 8, 8)


def test_auto_picks_p2p_for_orthogonal_chunks_without_temp(tmp_path, client):
    src = str(tmp_path / "src.zarr")
    data = _source(src, 3)
    report = rechunk_array(
        src, (48, 1, 1), str(tmp_path / "o.zarr"), max_mem="8KiB", client=client, progress=False
    )
    assert report.method == "p2p", report.method_reason
    assert "orthogonal" in report.method_reason
    _assert_same(str(tmp_path / "o.zarr"), data)


def test_group_written_by_xarray_keeps_dataset(tmp_path, client):
    import xarray as xr

    ds = xr.Dataset(
        {
            "t2m": (("time", "lat", "lon"), _data(), {"units": "K"}),
            "mask": (("lat", "lon"), np.ones(SHAPE[1:], dtype="i1")),
        },
        coords={
            "time": np.arange(SHAPE[0], dtype="i8"),
            "lat": np.linspace(-90, 90, SHAPE[1]),
            "lon": np.linspace(0, 359, SHAPE[2]),
        },
        attrs={"title": "sample"},
    )
    ds["t2m"].encoding = {"chunks": (1, 20, 24), "_FillValue": np.float32(-9999.0)}
    src = str(tmp_path / "ds.zarr")
    ds.to_zarr(src, zarr_format=2, consolidated=False)
    target = str(tmp_path / "out.zarr")
    report = rechunk_array(
        src,
        {"time": 48, "lat": 5, "lon": 6},
        target,
        max_mem="1MiB",
        zarr_format=3,
        client=client,
        progress=False,
    )
    assert {a["path"] for a in report.arrays} == {"t2m", "mask", "time", "lat", "lon"}
    out = xr.open_zarr(target, chunks=None, consolidated=False)
    xr.testing.assert_identical(
        out.load(), xr.open_zarr(src, chunks=None, consolidated=False).load()
    )
    assert out["t2m"].encoding["chunks"] == (48, 5, 6)
    assert out["mask"].encoding["chunks"] == (5, 6)
    assert out["t2m"].encoding["_FillValue"] == np.float32(-9999.0)
    assert out.attrs == {"title": "sample"}


def test_refuses_existing_target_unless_overwrite(tmp_path, client):
    src = str(tmp_path / "src.zarr")
    data = _source(src, 3)
    target = str(tmp_path / "out.zarr")
    zarr.create_array(target, shape=(2,), dtype="i1")
    with pytest.raises(InvalidOptionError, match="overwrite=True"):
        rechunk_array(src, (48, 20, 24), target, client=client, progress=False)
    rechunk_array(src, (48, 20, 24), target, overwrite=True, client=client, progress=False)
    _assert_same(target, data)


def test_interrupted_run_leaves_no_complete_target_and_resumes(tmp_path, client):
    """A task fails for real (an unreadable source chunk) partway; the rerun resumes."""
    src = str(tmp_path / "src.zarr")
    data = _source(src, 2, chunks=(12, 20, 24))
    key = "3.0.0"
    good = read_keys(open_store(src), [key])[key]
    corrupt.write_bytes(src, key, b"not a compressed chunk")
    before = _snapshot(src)
    target = str(tmp_path / "out.zarr")
    kwargs = {"max_mem": 12 * 20 * 24 * 4, "client": client, "progress": False}
    with pytest.raises(Exception, match=r"(?i)(error|decompress|buffer|codec|zstd|frame)"):
        rechunk_array(src, (12, 20, 24), target, **kwargs)
    assert _snapshot(src) == before  # the source is only read
    keys = list_keys(open_store(target))
    assert f"{MARKER_PREFIX}/partial.json" in keys
    assert "zarr.json" not in keys
    assert ".zarray" not in keys
    with pytest.raises(NotAZarrStoreError):
        open_node(target)  # a half-written target never looks like an array
    corrupt.write_bytes(src, key, good)
    litter = [f"3.0.0.{'a' * 32}.partial", f"{MARKER_PREFIX}/done/9.{'b' * 32}.partial"]
    for name in litter:  # what a writer killed between zarr's write and its rename leaves
        corrupt.write_bytes(target, name, b"half")
    skipped = sum(k.startswith(f"{MARKER_PREFIX}/done/") for k in keys)
    report = rechunk_array(src, (12, 20, 24), target, **kwargs)
    assert report.resumed
    assert report.blocks_skipped == skipped >= 1  # the half-written marker counts for nothing
    assert report.blocks_written + report.blocks_skipped == 4
    assert not set(litter) & set(list_keys(open_store(target)))
    _assert_same(target, data, zarr_format=2)


def test_partial_target_of_a_different_run_is_restarted(tmp_path, client):
    src = str(tmp_path / "src.zarr")
    data = _source(src, 3)
    target = str(tmp_path / "out.zarr")
    corrupt.write_bytes(target, f"{MARKER_PREFIX}/partial.json", b'{"token": "other"}')
    corrupt.write_bytes(target, "c/0/0/0", b"stale")
    report = rechunk_array(src, (48, 10, 12), target, client=client, progress=False)
    assert report.restarted
    assert not report.resumed
    assert "discarded" in str(report)
    _assert_same(target, data)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_chunks": (1, 2)}, "dimension"),
        ({"target_chunks": (0, 2, 2)}, "not positive"),
        ({"target_chunks": (48, 4, 4), "target_shards": (48, 6, 6)}, "multiples"),
        ({"target_chunks": (48, 4, 4), "target_shards": (48, 8, 8), "zarr_format": 2}, "format 2"),
        ({"target_chunks": (48, 20, 24), "max_mem": "1KiB"}, "max_mem"),
        ({"target_chunks": (48, 20, 24), "max_mem": "lots"}, "not a size"),
        ({"target_chunks": (48, 20, 24), "engine": "magic"}, "Unknown rechunk engine"),
        ({"target_chunks": (48, 20, 24), "zarr_format": 4}, "use 2 or 3"),
    ],
    ids=["ndim", "zero", "shard-multiple", "shards-v2", "unit-too-big", "size", "engine", "fmt"],
)
def test_bad_input(tmp_path, client, kwargs, match):
    src = str(tmp_path / "src.zarr")
    _source(src, 3)
    chunks = kwargs.pop("target_chunks")
    with pytest.raises(InvalidOptionError, match=match):
        rechunk_array(
            src, chunks, str(tmp_path / "o.zarr"), client=client, progress=False, **kwargs
        )


def test_empty_group_and_memory_store():
    group = zarr.create_group(zarr.storage.MemoryStore())
    with pytest.raises(InvalidOptionError, match="no arrays"):
        rechunk_array(group, (1,), zarr.storage.MemoryStore(), progress=False)
    arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(8, 8), chunks=(1, 8), dtype="i4")
    arr[:] = np.arange(64).reshape(8, 8)
    out = zarr.storage.MemoryStore()
    report = rechunk_array(arr, (8, 1), out, max_mem="1MiB", progress=False)
    assert "threads" in report.engine
    with pytest.raises(InvalidOptionError, match=r"P2P|p2p"):
        rechunk_array(arr, (8, 1), zarr.storage.MemoryStore(), engine="p2p", progress=False)
    assert np.array_equal(zarr.open_array(out, mode="r")[:], arr[:])


@pytest.mark.slow
def test_peak_memory_within_max_mem(tmp_path, client):
    """Peak cluster memory above the idle baseline stays within the stated bound.

    The array is 96 MiB; max_mem is 8 MiB per task.  The stated bound per worker thread is
    ``max_mem`` for the block + ``max_mem`` overhead (decoded source chunks and encoded target
    chunks in flight); plus a generous 64 MiB of noise for the whole cluster.
    """
    from distributed.diagnostics import MemorySampler

    shape = (384, 256, 256)
    src = str(tmp_path / "big.zarr")
    arr = zarr.create_array(src, shape=shape, chunks=(1, 256, 256), dtype="f4", fill_value=0)
    rng = np.random.default_rng(1)
    for t in range(0, shape[0], 64):
        arr[t : t + 64] = rng.standard_normal((64, *shape[1:]), dtype="f4")
    max_mem = 8 * 2**20
    threads = sum(client.nthreads().values())
    sampler = MemorySampler()
    client.run(lambda: __import__("gc").collect())
    with sampler.sample("rechunk", client=client, measure="process", interval=0.05):
        report = rechunk_array(
            src,
            (384, 16, 16),
            str(tmp_path / "out.zarr"),
            max_mem=max_mem,
            temp_store=str(tmp_path / "tmp.zarr"),
            client=client,
            progress=False,
        )
    samples = [v for _, v in sampler.samples["rechunk"]]
    peak = max(samples) - samples[0]
    bound = threads * report.memory_bound + 64 * 2**20
    assert report.memory_bound == 2 * max_mem
    assert peak <= bound, (peak, bound, report.method)
    assert peak < np.prod(shape) * 4  # far less than the array
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert np.array_equal(out[:, :16, :16], arr[:, :16, :16])


def test_xarray_v3_to_v2_with_per_array_chunks(tmp_path, client):
    import xarray as xr

    ds = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), _data(), {"units": "K"})},
        coords={"time": np.arange(SHAPE[0], dtype="i8")},
    )
    ds["t2m"].encoding = {"chunks": (1, 20, 24), "_FillValue": np.float32(-1.0)}
    src = str(tmp_path / "v3.zarr")
    ds.to_zarr(src, zarr_format=3, consolidated=False)
    target = str(tmp_path / "v2.zarr")
    report = rechunk_array(
        src,
        {"t2m": (48, 5, 6)},
        target,
        zarr_format=2,
        max_mem="1MiB",
        client=client,
        progress=False,
    )
    chunks = {a["path"]: tuple(a["target_chunks"]) for a in report.arrays}
    assert chunks == {"t2m": (48, 5, 6), "time": (48,)}
    out = xr.open_zarr(target, chunks=None, consolidated=False).load()
    xr.testing.assert_identical(out, xr.open_zarr(src, chunks=None, consolidated=False).load())
    assert zarr.open_array(target, path="t2m").fill_value == -1.0


@pytest.mark.parametrize(("src_format", "tgt_format"), [(2, 3), (3, 2), (3, 3)])
def test_consolidated_source_gives_a_consolidated_target(tmp_path, client, src_format, tgt_format):
    from zarr_dask_utils import validate_metadata

    src, plain = str(tmp_path / "src.zarr"), str(tmp_path / "plain.zarr")
    for path, consolidate in ((src, True), (plain, False)):
        root = zarr.open_group(path, mode="w", zarr_format=src_format)
        arr = root.create_array("x", shape=(12, 8), chunks=(1, 8), dtype="f4")
        arr[:] = np.arange(96, dtype="f4").reshape(12, 8)
        if consolidate:
            zarr.consolidate_metadata(path)
    target = str(tmp_path / "out.zarr")
    report = rechunk_array(
        src, (12, 4), target, max_mem="1MiB", zarr_format=tgt_format, client=client, progress=False
    )
    assert report.consolidated
    assert "consolidated" in str(report)
    check = validate_metadata(target, client=client, progress=False)
    assert check.ok, str(check)
    opened = zarr.open_group(target, mode="r", use_consolidated=True)
    assert opened["x"].chunks == (12, 4)
    np.testing.assert_array_equal(opened["x"][:], np.arange(96, dtype="f4").reshape(12, 8))
    untouched = rechunk_array(
        plain, (12, 4), str(tmp_path / "out2.zarr"), max_mem="1MiB", client=client, progress=False
    )
    assert not untouched.consolidated  # no consolidated metadata appears unasked
    from zarr_dask_utils._core.storage.locations import resolve_location
    from zarr_dask_utils.optimize.rechunk import source_is_consolidated

    assert source_is_consolidated(resolve_location(target))
    assert not source_is_consolidated(resolve_location(str(tmp_path / "out2.zarr")))


# --- the embedded default: threads in one process -------------------------------------------------

_EMBEDDED_SCRIPT = """
import json, sys
from zarr_dask_utils import rechunk_array

if __name__ == "__main__":
    src, tmp = sys.argv[1], sys.argv[2]
    rows = {}
    for name, chunks, mem in (("p2p", (48, 1, 1), "8KiB"), ("rechunker", (48, 5, 6), "1MiB")):
        r = rechunk_array(src, chunks, f"{tmp}/{name}.zarr", max_mem=mem, progress=False)
        rows[name] = {"method": r.method, "engine": r.engine}
    print("ROWS=" + json.dumps(rows))
"""


@pytest.mark.slow
def test_embedded_default_rechunks_on_threads_in_one_process(tmp_path):
    """No client anywhere: both engines run on the embedded threads cluster, bit-exact."""
    import json
    import os
    import subprocess
    import sys

    src = str(tmp_path / "src.zarr")
    data = _source(src, 3)
    script = tmp_path / "embedded.py"
    script.write_text(_EMBEDDED_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["DASK_ZARR_DASK_UTILS__CLUSTER__DASHBOARD_ADDRESS"] = "127.0.0.1:0"
    proc = subprocess.run(
        [sys.executable, str(script), src, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("ROWS="))
    rows = json.loads(line.removeprefix("ROWS="))
    for name, row in rows.items():
        assert row["method"] == name
        assert "tcp://127.0.0.1:" in row["engine"]
        assert (
            "embedded LocalCluster, threads in one process (cluster.processes=auto"
            in (row["engine"])
        )
        assert "local stores" in row["engine"]
        _assert_same(str(tmp_path / f"{name}.zarr"), data)
