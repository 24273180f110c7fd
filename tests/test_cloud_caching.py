"""smart_caching / CachingStore: zarr's StoreTests, byte bounds, invalidation, ttl, disk tier,
threads, Dask workers and S3 through the latency rig."""

from __future__ import annotations

import asyncio
import json
import pickle
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import zarr
from zarr.abc.store import RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, cpu, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, MemoryStore, WrapperStore
from zarr.testing.store import StoreTests

from zarr_dask_utils import CacheStats, CachingStore, InvalidOptionError, smart_caching
from zarr_dask_utils.testing.counting import CountingStore
from zarr_dask_utils.testing.storetests import sync_store_tests

PROTO = default_buffer_prototype()


def _buf(data: bytes) -> Buffer:
    return cpu.Buffer.from_bytes(data)


class Clock:
    """A clock the test moves by hand (picklable: module level)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- zarr's own store conformance suite --------------------------------------------------------


class _CachingStoreTests:
    """Fixtures for a CachingStore around a LocalStore in tmp_path (bytes written directly)."""

    store_cls = CachingStore
    buffer_cls = cpu.Buffer

    async def set(self, store: CachingStore, key: str, value: Buffer) -> None:
        path = Path(store._store.root) / key  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value.to_bytes())

    async def get(self, store: CachingStore, key: str) -> Buffer:
        path = Path(store._store.root) / key  # type: ignore[attr-defined]
        return self.buffer_cls.from_bytes(path.read_bytes())

    @pytest.fixture
    def open_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"store_cls": LocalStore, "root": str(tmp_path)}

    @pytest.fixture
    def store_not_open(self, store_kwargs: dict[str, Any]) -> CachingStore:
        return self.store_cls(**store_kwargs)

    def test_store_repr(self, store: CachingStore) -> None:
        assert repr(store).startswith("CachingStore(LocalStore")
        assert str(store).startswith("cached-file://")

    def test_store_supports_writes(self, store: CachingStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: CachingStore) -> None:
        assert store.supports_listing


@sync_store_tests
class TestCachingStoreMemory(_CachingStoreTests, StoreTests[CachingStore, cpu.Buffer]):
    """The memory tier alone."""

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"store": LocalStore(str(tmp_path))}

    @pytest.fixture
    def store(self, open_kwargs: dict[str, Any]) -> CachingStore:
        return sync(self.store_cls.open(**open_kwargs))


@sync_store_tests
class TestCachingStoreDisk(_CachingStoreTests, StoreTests[CachingStore, cpu.Buffer]):
    """Disk tier only (memory bound 0): every hit comes from a file."""

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {
            "store": LocalStore(str(tmp_path)),
            "cache_size": 0,
            "disk_cache": tmp_path.parent / f"{tmp_path.name}-disk",  # outside the store
            "disk_cache_size": "1MiB",
        }

    @pytest.fixture
    def store(self, store_kwargs: dict[str, Any]) -> CachingStore:
        return self.store_cls(**store_kwargs)


# --- bounds, hits and byte ranges ----------------------------------------------------------------


def test_memory_bound_holds_under_eviction_pressure() -> None:
    """400 random reads of 50 objects of 1-40 KiB through a 100 KiB cache: never over the bound."""
    rng = random.Random(7)
    inner = MemoryStore()
    blobs = {f"k/{i}": rng.randbytes(rng.randint(1, 40) * 1024) for i in range(50)}
    for key, data in blobs.items():
        sync(inner.set(key, _buf(data)))
    store = CachingStore(inner, cache_size="100KiB")
    served = 0
    for _ in range(400):
        key = rng.choice(list(blobs))
        assert sync(store.get(key, PROTO)).to_bytes() == blobs[key]
        served += len(blobs[key])
        stats = store.stats()
        assert stats.memory_bytes <= 100 * 1024
    stats = store.stats()
    assert stats.evicted > 0
    assert stats.evicted_bytes > 0
    assert stats.hits > 0
    assert stats.misses > 0
    assert stats.hits + stats.misses == 400
    assert stats.miss_bytes + stats.hit_bytes == served
    # a value larger than the whole bound is passed through, never cached
    sync(inner.set("huge", _buf(b"x" * 200 * 1024)))
    assert len(sync(store.get("huge", PROTO))) == 200 * 1024
    assert store.stats().memory_bytes <= 100 * 1024


def test_second_read_of_an_array_is_served_from_memory(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    a = zarr.create_array(str(path), shape=(40, 40), chunks=(10, 10), dtype="f8", fill_value=0)
    a[:] = np.arange(1600.0).reshape(40, 40)
    counting = CountingStore(LocalStore(str(path), read_only=True))
    store = CachingStore(counting, cache_size="10MiB")
    arr = zarr.open_array(store, mode="r")
    np.testing.assert_array_equal(arr[:], a[:])
    fetched = counting.gets
    assert store.stats().misses == fetched
    np.testing.assert_array_equal(arr[:], a[:])
    np.testing.assert_array_equal(arr[5:25, 5:25], a[5:25, 5:25])  # a window over cached chunks
    assert counting.gets == fetched  # nothing more read from disk
    assert store.stats().hits == 16 + 9


def test_missing_keys_are_remembered(tmp_path: Path) -> None:
    """A sparse array: chunks never written are asked for once, then known absent."""
    inner = CountingStore(MemoryStore())
    a = zarr.create_array(inner, shape=(8,), chunks=(2,), dtype="i4", fill_value=0)
    a[0:2] = 1  # only c/0 exists
    store = CachingStore(inner)
    arr = zarr.open_array(store, mode="r")
    arr[:]
    inner.reset()
    assert arr[:].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert inner.gets == 0
    store2 = CachingStore(inner)
    sync(store2.set("c/3", _buf(b"not absent any more")))  # a write drops the absent entry
    assert sync(store2.get("c/3", PROTO)).to_bytes() == b"not absent any more"


def test_byte_ranges_come_from_a_cached_whole_object() -> None:
    counting = CountingStore(MemoryStore())
    sync(counting.set("c/0", _buf(b"0123456789")))
    store = CachingStore(counting)
    # not cached yet: the range goes to the store and is not cached
    assert sync(store.get("c/0", PROTO, RangeByteRequest(2, 5))).to_bytes() == b"234"
    assert store.stats().memory_entries == 0
    assert sync(store.get("c/0", PROTO)).to_bytes() == b"0123456789"
    counting.reset()
    assert sync(store.get("c/0", PROTO, RangeByteRequest(2, 5))).to_bytes() == b"234"
    assert sync(store.get("c/0", PROTO, SuffixByteRequest(3))).to_bytes() == b"789"
    got = sync(store.get_partial_values(PROTO, [("c/0", RangeByteRequest(0, 1)), ("c/0", None)]))
    assert [g.to_bytes() for g in got] == [b"0", b"0123456789"]
    assert counting.gets == 0
    assert store.stats().hit_bytes == 3 + 3 + 1 + 10


# --- invalidation and ttl ----------------------------------------------------------------------


def test_writes_and_deletes_through_the_store_invalidate(tmp_path: Path) -> None:
    store = smart_caching(tmp_path / "w.zarr", read_only=False)
    a = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="i4", fill_value=0)
    a[:] = [1, 2, 3, 4]
    assert a[:].tolist() == [1, 2, 3, 4]  # cached now
    a[0:2] = [9, 9]
    assert a[:].tolist() == [9, 9, 3, 4]
    sync(store.delete("c/1"))
    assert a[:].tolist() == [9, 9, 0, 0]
    assert store.stats().invalidated >= 2
    sync(store.set("x/y", _buf(b"1")))
    assert sync(store.get("x/y", PROTO)).to_bytes() == b"1"
    sync(store.delete_dir("x"))
    assert sync(store.get("x/y", PROTO)) is None


class _GateStore(WrapperStore[Store]):
    """Reads, then waits for the test to let the read return (a fetch held in flight)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.read_done: asyncio.Event | None = None
        self.proceed: asyncio.Event | None = None

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: Any = None
    ) -> Buffer | None:
        value = await self._store.get(key, prototype, byte_range)
        if self.read_done is not None and self.proceed is not None:
            self.read_done.set()
            await self.proceed.wait()
        return value


def test_a_read_in_flight_during_a_write_does_not_cache_the_old_bytes() -> None:
    inner = MemoryStore()
    sync(inner.set("c/0", _buf(b"old")))
    gate = _GateStore(inner)
    store = CachingStore(gate)

    async def race() -> bytes:
        gate.read_done, gate.proceed = asyncio.Event(), asyncio.Event()
        reading = asyncio.ensure_future(store.get("c/0", PROTO))
        await gate.read_done.wait()  # the old bytes are read, not yet returned
        await store.set("c/0", _buf(b"new"))
        gate.proceed.set()
        return (await reading).to_bytes()

    assert sync(race()) == b"old"  # it started before the write
    gate.read_done = gate.proceed = None
    assert sync(store.get("c/0", PROTO)).to_bytes() == b"new"


def test_ttl_expires_entries_on_a_controlled_clock(tmp_path: Path) -> None:
    clock = Clock()
    inner = MemoryStore()
    sync(inner.set("c/0", _buf(b"v1")))
    store = CachingStore(
        inner, ttl="60s", clock=clock, disk_cache=tmp_path / "d", disk_cache_size="1MiB"
    )
    assert sync(store.get("c/0", PROTO)).to_bytes() == b"v1"
    sync(inner.set("c/0", _buf(b"v2")))  # changed behind the cache's back
    clock.now += 59
    assert sync(store.get("c/0", PROTO)).to_bytes() == b"v1"  # still fresh: stale by design
    clock.now += 1
    assert sync(store.get("c/0", PROTO)).to_bytes() == b"v2"  # both tiers expired
    stats = store.stats()
    assert stats.expired == 2  # memory and disk entries
    assert stats.misses == 2
    assert stats.hits == 1
    with pytest.raises(InvalidOptionError, match="ttl"):
        CachingStore(inner, ttl=0)


# --- the disk tier -------------------------------------------------------------------------------


def _files_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "objects").glob("*/*"))


def test_disk_tier_never_grows_past_its_bound(tmp_path: Path) -> None:
    rng = random.Random(3)
    inner = MemoryStore()
    blobs = {f"c/{i}": rng.randbytes(rng.randint(1, 30) * 1000) for i in range(40)}
    for key, data in blobs.items():
        sync(inner.set(key, _buf(data)))
    folder = tmp_path / "disk"
    store = CachingStore(inner, cache_size=0, disk_cache=folder, disk_cache_size=100_000)
    for _ in range(200):
        key = rng.choice(list(blobs))
        assert sync(store.get(key, PROTO)).to_bytes() == blobs[key]
        assert _files_bytes(folder) <= 100_000
        assert store.stats().disk_bytes == _files_bytes(folder)
    stats = store.stats()
    assert stats.disk_evicted > 0
    assert stats.disk_hits > 0
    assert stats.hits == 0
    assert not list((folder / "tmp").iterdir())  # no partial files left behind
    names = [p.name for p in (folder / "objects").glob("*/*")]
    assert all(len(n) == 64 and set(n) <= set("0123456789abcdef") for n in names)


_FILL = """
import sys, zarr
from zarr_dask_utils import smart_caching
store = smart_caching(sys.argv[1], cache_size=0, disk_cache=sys.argv[2], disk_cache_size="1MiB")
zarr.open_array(store, mode="r")[:]
print(store.stats().disk_entries)
"""


@pytest.mark.slow
def test_disk_tier_survives_a_restart_and_refuses_a_second_process(tmp_path: Path) -> None:
    path, folder = tmp_path / "r.zarr", tmp_path / "disk"
    a = zarr.create_array(str(path), shape=(30,), chunks=(10,), dtype="i8", fill_value=0)
    a[:] = np.arange(30)
    run = [sys.executable, "-c", _FILL, str(path), str(folder)]
    done = subprocess.run(run, capture_output=True, text=True, check=True, timeout=120)
    assert int(done.stdout) == 4  # zarr.json + 3 chunks, written by a process now gone
    (folder / "tmp" / "junk").write_bytes(b"half a write")  # a crash mid-write
    broken = next((folder / "objects").glob("*/*"))
    broken.write_bytes(b"ZDUC")  # a torn file: deleted on load

    counting = CountingStore(LocalStore(str(path), read_only=True))
    store = CachingStore(counting, cache_size=0, disk_cache=folder, disk_cache_size="1MiB")
    assert not (folder / "tmp" / "junk").exists()
    assert not broken.exists()
    np.testing.assert_array_equal(zarr.open_array(store, mode="r")[:], np.arange(30))
    fetched = [k for k in counting.keys if (path / k).exists()]  # absent keys: memory only
    assert len(fetched) == 1  # only the torn entry was fetched again
    assert store.stats().disk_hits == 3

    other = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert other.returncode != 0
    assert "in use by another process" in other.stderr


# --- threads -------------------------------------------------------------------------------------


def test_threads_hammering_one_cache_stay_consistent(tmp_path: Path) -> None:
    """8 threads read and write 20 keys through one small cache (memory + disk)."""
    inner = LocalStore(str(tmp_path / "t"))
    store = CachingStore(
        inner, cache_size=20_000, disk_cache=tmp_path / "disk", disk_cache_size=40_000
    )
    keys = [f"c/{i}" for i in range(20)]
    for key in keys:
        sync(inner.set(key, _buf(key.encode() * 100)))
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for n in range(150):
                key = rng.choice(keys)
                if n % 10 == seed % 10:
                    data = f"{key}:{seed}:{n}".encode() * rng.randint(1, 300)
                    sync(store.set(key, _buf(data)))
                else:
                    value = sync(store.get(key, PROTO))
                    assert value is not None
                    assert value.to_bytes().startswith(key.encode())
                stats = store.stats()
                assert stats.memory_bytes <= 20_000
                assert stats.disk_bytes <= 40_000
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    for key in keys:  # nothing stale survived the races
        assert sync(store.get(key, PROTO)).to_bytes() == sync(inner.get(key, PROTO)).to_bytes()
    assert _files_bytes(tmp_path / "disk") <= 40_000


# --- pickling, reports, options ---------------------------------------------------------------


def test_pickled_copies_share_the_process_cache_and_reports_render(tmp_path: Path) -> None:
    inner = LocalStore(str(tmp_path / "p"))
    sync(inner.set("k", _buf(b"abc")))
    store = CachingStore(inner, ttl=30)
    sync(store.get("k", PROTO))
    copy = pickle.loads(pickle.dumps(store))
    assert copy == store
    assert copy.cache_id == store.cache_id
    assert sync(copy.get("k", PROTO)).to_bytes() == b"abc"
    stats = store.stats()
    assert isinstance(stats, CacheStats)
    assert (stats.hits, stats.misses) == (1, 1)
    assert stats.hit_ratio == 0.5
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["hit_ratio"] == 0.5
    assert data["ttl"] == 30
    assert "hit ratio: 50.0%" in str(stats)
    assert "<ul>" in stats._repr_html_()
    store.clear_cache()
    assert store.stats().memory_entries == 0


def test_options_that_cannot_work_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match="without disk_cache"):
        smart_caching(tmp_path, disk_cache_size="1GiB")
    with pytest.raises(InvalidOptionError, match="cache_size"):
        smart_caching(tmp_path, cache_size="lots")
    with pytest.raises(InvalidOptionError, match="negative"):
        smart_caching(tmp_path, cache_size=-1)
    with pytest.raises(InvalidOptionError, match="already a CachingStore"):
        smart_caching(smart_caching(tmp_path))
    with pytest.raises(InvalidOptionError, match="storage_options"):
        smart_caching(tmp_path, storage_options={"anon": True})
    assert smart_caching(tmp_path).read_only
    assert not smart_caching(LocalStore(str(tmp_path))).read_only  # a store keeps its mode


# --- Dask workers ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_worker_keeps_its_own_cache_and_rereads_hit(tmp_path: Path, client: Any) -> None:
    path = tmp_path / "w.zarr"
    a = zarr.create_array(str(path), shape=(40, 40), chunks=(10, 10), dtype="f8", fill_value=0)
    a[:] = 1.0
    store = smart_caching(path, disk_cache=tmp_path / "disk", disk_cache_size="10MiB")
    x = da.from_zarr(zarr.open_array(store, mode="r"))
    worker = sorted(client.scheduler_info()["workers"])[0]
    assert float(x.sum().compute(workers=[worker])) == 1600.0
    first = store.worker_stats(client)
    assert set(first) == {worker}  # the other worker never used the store
    assert first[worker].misses == 16
    assert first[worker].hits == 0
    assert float(x.sum().compute(workers=[worker])) == 1600.0
    second = store.worker_stats(client)[worker]
    assert second.misses == 16
    assert second.hits == 16
    assert second.disk_entries == 16
    assert "workers" in second.disk_path  # each worker process its own folder
    here = store.stats()  # the client process opened the array (metadata), read no chunk
    assert here.hits == 0
    assert here.miss_bytes < 1000
    assert "workers" not in here.disk_path


# --- S3 through the latency rig ------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.slow
def test_a_second_read_from_s3_makes_no_request(s3_rig: Any) -> None:
    bucket = s3_rig.make_bucket()
    url = f"s3://{bucket}/c.zarr"
    with s3_rig.unthrottled():
        src = zarr.create_array(
            zarr.storage.FsspecStore.from_url(url, storage_options=s3_rig.storage_options),
            shape=(64,),
            chunks=(8,),
            dtype="i4",
            fill_value=0,
        )
        src[:] = np.arange(64)
    store = smart_caching(url, storage_options=s3_rig.storage_options)
    s3_rig.reset_stats()
    assert zarr.open_array(store, mode="r")[:].tolist() == list(range(64))
    first = s3_rig.stats()
    assert first["GET"] >= 8
    s3_rig.reset_stats()
    assert zarr.open_array(store, mode="r")[:].tolist() == list(range(64))
    assert s3_rig.stats().total == 0
    assert store.stats().miss_bytes > 0


@pytest.mark.slow
def test_operations_accept_a_caching_store(tmp_path: Path, client: Any) -> None:
    """A zarr-dask-utils operation runs on a CachingStore: workers read through their caches."""
    from zarr_dask_utils import check_data_integrity

    path = tmp_path / "op.zarr"
    a = zarr.create_array(str(path), shape=(20,), chunks=(5,), dtype="i4", fill_value=0)
    a[:] = np.arange(20)
    store = smart_caching(path)
    for _ in range(2):
        report = check_data_integrity(store, deep=True, client=client)
        assert report.ok, str(report)
    per_worker = store.worker_stats(client)
    assert per_worker  # some worker read through its cache
    assert sum(s.misses + s.hits for s in per_worker.values()) > 0
