"""Dask → zarr writes on the session cluster: pre-flight check, safe_store, map_blocks, xarray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from distributed import Client

from zarr_dask_utils import (
    ClusterConnectionError,
    DistributedLock,
    InvalidOptionError,
    LockTimeoutError,
    check_dask_write,
    safe_store,
    to_zarr_region_safe,
)
from zarr_dask_utils.testing.concurrency import add_block_in_place

pytestmark = pytest.mark.cluster


def _target(tmp_path: Path, **kwargs: Any) -> zarr.Array[Any]:
    opts: dict[str, Any] = {"shape": (8, 12), "chunks": (4, 6), "dtype": "i4", "fill_value": 0}
    opts.update(kwargs)
    return zarr.create_array(str(tmp_path / "t.zarr"), **opts)


@pytest.mark.parametrize(
    ("source_chunks", "sharded", "aligned", "code"),
    [
        ((4, 6), False, True, "aligned"),
        ((2, 6), False, False, "blocks-share-storage-keys"),
        ((4, 6), True, False, "blocks-share-storage-keys"),  # shard (8, 12) holds 4 blocks
        ((8, 12), True, True, "aligned"),
    ],
    ids=["chunks", "half-chunks", "chunks-in-shard", "whole-shard"],
)
def test_check_dask_write(tmp_path: Path, source_chunks, sharded, aligned, code) -> None:
    extra = {"shards": (8, 12)} if sharded else {}
    arr = _target(tmp_path, **extra)
    report = check_dask_write(da.zeros((8, 12), chunks=source_chunks, dtype="i4"), arr)
    assert report.aligned == aligned
    assert report.storage_unit == ("shard" if sharded else "chunk")
    assert [f.code for f in report.findings] == [code]
    assert report.ok == aligned
    data = report.to_dict()
    json.dumps(data)
    assert data["shared_keys"] == report.shared_keys
    assert ("NOT aligned" in str(report)) != aligned
    assert "<table>" in report._repr_html_() or aligned


def test_check_dask_write_region_edges_and_errors(tmp_path: Path) -> None:
    arr = _target(tmp_path)
    src = da.zeros((4, 6), chunks=(4, 6), dtype="i4")
    report = check_dask_write(src, arr, (slice(2, 6), slice(3, 9)))
    assert report.aligned
    assert [f.code for f in report.findings] == ["region-edges-partial"]
    with pytest.raises(InvalidOptionError, match=r"shape \(4, 6\).*shape \(8, 12\)"):
        check_dask_write(src, arr)


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_safe_store_unaligned_loses_nothing(
    client: Client, tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    """Blocks of 2 rows into chunks of 4 rows (and a shard): routed through the locks."""
    if where == "local":
        store: Any = str(tmp_path / "t.zarr")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        options = request.getfixturevalue("s3_storage_options")
        store = zarr.storage.FsspecStore.from_url(f"s3://{bucket}/t.zarr", storage_options=options)
    arr = zarr.create_array(
        store, shape=(8, 12), shards=(8, 12), chunks=(4, 6), dtype="i4", fill_value=0
    )
    values = np.arange(96, dtype="i4").reshape(8, 12) + 1
    src = da.from_array(values, chunks=(2, 3))
    report = safe_store(src, arr, client=client)
    assert report.locked
    assert report.blocks == 16
    assert report.keys_locked == 16  # every block partly covers the single shard
    assert not report.check.aligned
    assert "distributed" in report.engine
    np.testing.assert_array_equal(arr[:], values)
    assert "16 block(s) written through synchronized_write" in str(report)


def test_safe_store_refuses_or_writes_directly(client: Client, tmp_path: Path) -> None:
    arr = _target(tmp_path)
    with pytest.raises(InvalidOptionError, match="Refusing an unsafe parallel write"):
        safe_store(da.ones((8, 12), chunks=(2, 6), dtype="i4"), arr, lock=False, client=client)
    assert (arr[:] == 0).all()
    report = safe_store(da.ones((8, 12), chunks=(4, 6), dtype="i4"), arr, lock=False, client=client)
    assert not report.locked
    assert report.keys_locked == 0
    assert (arr[:] == 1).all()
    region = (slice(0, 4), slice(0, 6))
    report = safe_store(da.full((4, 6), 5, chunks=(4, 6), dtype="i4"), arr, region, client=client)
    assert report.keys_written == 1
    assert report.keys_locked == 0  # aligned: no lock taken
    assert (arr[:4, :6] == 5).all()
    assert (arr[4:, :] == 1).all()


def test_synchronized_write_inside_map_blocks(client: Client, tmp_path: Path) -> None:
    """Each block rewrites its own region +1 from a worker; blocks share chunks."""
    arr = _target(tmp_path)
    src = da.from_array(np.arange(96, dtype="i4").reshape(8, 12), chunks=(2, 4))
    locked = src.map_blocks(add_block_in_place, arr, chunks=(1, 1), dtype="i8")
    counts = client.compute(locked).result()
    assert counts.sum() > 0  # the blocks did need locks
    np.testing.assert_array_equal(arr[:], np.arange(96).reshape(8, 12) + 1)


def test_to_zarr_region_safe(client: Client, tmp_path: Path) -> None:
    """Two region writes that split chunks, one Dask-backed and one in memory, with CF encoding."""
    path = str(tmp_path / "ds.zarr")
    template = xr.Dataset(
        {"t": (("y", "x"), np.zeros((6, 8), "f4"))},
        coords={"y": np.arange(6), "x": np.arange(8)},
    )
    template["t"].encoding = {
        "chunks": (4, 8),
        "dtype": "i2",
        "scale_factor": 0.5,
        "_FillValue": -1,
    }
    template.to_zarr(path, zarr_format=3, consolidated=False, compute=True)
    part1 = xr.Dataset({"t": (("y", "x"), np.full((3, 8), 1.5, "f4"))}).chunk({"y": 1})
    part2 = xr.Dataset({"t": (("y", "x"), np.full((3, 8), 2.5, "f4"))})
    r1 = to_zarr_region_safe(part1, path, {"y": slice(0, 3)}, client=client)
    r2 = to_zarr_region_safe(part2, path, {"y": slice(3, 6)}, client=client)
    assert r1["t"].blocks == 3
    assert r1["t"].keys_locked == 3
    assert r2["t"].keys_locked == 1  # row 3 splits chunk 0; rows 4:6 fill the clipped chunk 1
    raw = zarr.open_array(path, path="t", mode="r")
    np.testing.assert_array_equal(raw[:3], 3)  # 1.5 / scale_factor 0.5, stored as int16
    out = xr.open_zarr(path, consolidated=False)
    np.testing.assert_array_equal(out["t"].values[3:], 2.5)
    with pytest.raises(InvalidOptionError, match="does not exist"):
        to_zarr_region_safe(xr.Dataset({"nope": ("y", np.zeros(6))}), path, {}, client=client)


def test_distributed_lock_basics(client: Client) -> None:
    lock = DistributedLock(["zdu-test/b", "zdu-test/a", "zdu-test/b"], client=client)
    assert lock.names == ("zdu-test/a", "zdu-test/b")
    assert "2 names" in repr(lock)
    with lock:
        assert lock.locked()
        with pytest.raises(RuntimeError, match="already held"):
            lock.acquire()
        other = DistributedLock("zdu-test/b", client=client, timeout="200ms")
        with pytest.raises(LockTimeoutError, match="zdu-test/b"):
            other.acquire()
        assert not other.locked()
    assert not lock.locked()
    lock.release()  # no-op when nothing is held
    with DistributedLock("zdu-test/b", client=client, timeout=5) as again:
        assert again.locked()


def test_lock_timeout_on_a_later_name_releases_the_earlier_ones(client: Client) -> None:
    prefix = f"zdu-test/{uuid4().hex}"
    first, second = f"{prefix}/a", f"{prefix}/b"  # sorted: `first` is taken first
    with DistributedLock(second, client=client):
        both = DistributedLock([first, second], client=client, timeout="300ms")
        with pytest.raises(LockTimeoutError, match=second):
            both.acquire()  # takes `first`, then times out on `second`
        assert not both.locked()
        # `first` is free again: another writer gets it at once, not after the client exits
        with DistributedLock(first, client=client, timeout="2s") as other:
            assert other.locked()


def test_lock_acquire_timeout_overrides_the_constructor_timeout(client: Client) -> None:
    name = f"zdu-test/{uuid4().hex}"
    with DistributedLock(name, client=client):
        waiter = DistributedLock(name, client=client, timeout="20s")
        with pytest.raises(LockTimeoutError, match=r"Timed out after 0\.3 s"):
            waiter.acquire(timeout="300ms")
        assert not waiter.locked()
        patient = DistributedLock(name, client=client, timeout="200ms")
        with pytest.raises(LockTimeoutError, match=r"Timed out after 0\.5 s"):
            patient.acquire(timeout=0.5)


def test_distributed_lock_without_cluster_is_a_clear_error() -> None:
    code = (
        "from zarr_dask_utils import DistributedLock\n"
        "try:\n"
        "    DistributedLock('x').acquire()\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e.kind)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [ClusterConnectionError.__name__, "cluster-unreachable"]


@pytest.mark.cluster
def test_locks_skip_a_closed_in_process_worker(client: Client) -> None:
    """A closed threaded cluster's worker lingers in ``Worker._instances``; locks use the client."""
    from distributed import LocalCluster
    from distributed.core import Status

    from zarr_dask_utils.concurrent.lock import scheduler_binding

    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        stale = next(iter(cluster.workers.values()))
    assert stale.status == Status.closed  # still referenced here, so still in _instances
    with client.as_current():
        _, loop = scheduler_binding()
    assert loop is client.loop
