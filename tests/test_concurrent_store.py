"""SafeZarrStore (zarr's StoreTests), fencing on local disk and S3, and threads in one process."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.core.buffer import Buffer, cpu, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, MemoryStore
from zarr.testing.store import StoreTests

from zarr_dask_utils import (
    ConcurrentModificationError,
    InvalidOptionError,
    ReadOnlyStoreError,
    SafeZarrStore,
    synchronized_write,
)
from zarr_dask_utils.concurrent.fence import UNFENCED, Fence
from zarr_dask_utils.testing.concurrency import RaceStore, open_on
from zarr_dask_utils.testing.storetests import sync_store_tests


@sync_store_tests
class TestSafeZarrStore(StoreTests[SafeZarrStore, cpu.Buffer]):
    """zarr's own store conformance tests, on a SafeZarrStore around a LocalStore."""

    store_cls = SafeZarrStore
    buffer_cls = cpu.Buffer

    async def set(self, store: SafeZarrStore, key: str, value: Buffer) -> None:
        path = Path(store._store.root) / key  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value.to_bytes())

    async def get(self, store: SafeZarrStore, key: str) -> Buffer:
        path = Path(store._store.root) / key  # type: ignore[attr-defined]
        return self.buffer_cls.from_bytes(path.read_bytes())

    @pytest.fixture
    def store_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"store": LocalStore(str(tmp_path))}

    @pytest.fixture
    def open_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        return {"store_cls": LocalStore, "root": str(tmp_path)}

    @pytest.fixture
    def store(self, open_kwargs: dict[str, Any]) -> SafeZarrStore:
        return sync(self.store_cls.open(**open_kwargs))

    @pytest.fixture
    def store_not_open(self, store_kwargs: dict[str, Any]) -> SafeZarrStore:
        return self.store_cls(**store_kwargs)

    def test_store_repr(self, store: SafeZarrStore) -> None:
        assert repr(store).startswith("SafeZarrStore(LocalStore")
        assert str(store).startswith("safe-file://")

    def test_store_supports_writes(self, store: SafeZarrStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: SafeZarrStore) -> None:
        assert store.supports_listing


# --- fencing -------------------------------------------------------------------------------


def _buf(data: bytes) -> Buffer:
    return cpu.Buffer.from_bytes(data)


def _fenced_store(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    if where == "local":
        return LocalStore(str(tmp_path / "f.zarr"))
    bucket = request.getfixturevalue("s3_bucket")
    options = request.getfixturevalue("s3_storage_options")
    return zarr.storage.FsspecStore.from_url(f"s3://{bucket}/f.zarr", storage_options=options)


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_fence_refuses_a_changed_key(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Token read, key rewritten by someone else, fenced write refused and nothing lost."""
    store = _fenced_store(where, tmp_path, request)
    fence = Fence(store, where="test")
    assert fence.atomic == (where == "s3")
    assert sync(fence.token("c/0")) is None  # absent
    sync(fence.set("c/0", _buf(b"first"), None))  # create-if-absent succeeds
    token = sync(fence.token("c/0"))
    assert token is not None
    sync(store.set("c/0", _buf(b"other writer")))  # behind the fence's back
    with pytest.raises(ConcurrentModificationError, match="changed between") as info:
        sync(fence.set("c/0", _buf(b"stale merge"), token))
    assert info.value.kind == "concurrent-modification"
    assert sync(store.get("c/0", default_buffer_prototype())).to_bytes() == b"other writer"
    with pytest.raises(ConcurrentModificationError):
        sync(fence.set("c/0", _buf(b"again"), None))  # "absent" is a generation too
    with pytest.raises(ConcurrentModificationError):
        sync(fence.delete("c/0", token))
    fresh = sync(fence.token("c/0"))
    sync(fence.set("c/0", _buf(b"mine"), fresh))
    assert sync(store.get("c/0", default_buffer_prototype())).to_bytes() == b"mine"
    sync(fence.delete("c/0", sync(fence.token("c/0"))))
    assert sync(fence.token("c/0")) is None


def test_unfenceable_store_writes_plainly() -> None:
    store = MemoryStore()
    fence = Fence(store)
    assert sync(fence.token("c/0")) == UNFENCED
    sync(fence.set("c/0", _buf(b"x"), UNFENCED))
    sync(fence.delete("c/0", UNFENCED))
    assert not sync(store.exists("c/0"))


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_synchronized_write_retries_after_interference(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A 'second holder' rewrites the chunk between our read and write: fence, retry, merge."""
    store = _fenced_store(where, tmp_path, request)
    arr = zarr.create_array(store, shape=(8,), chunks=(8,), dtype="i4", fill_value=0)
    other = zarr.create_array(MemoryStore(), shape=(8,), chunks=(8,), dtype="i4", fill_value=0)
    other[:] = np.arange(8) + 100  # the interfering writer's full chunk, encoded by zarr
    payload = sync(other.store_path.store.get("c/0", default_buffer_prototype())).to_bytes()
    target = open_on(arr, RaceStore(store, action="interfere", payload=payload))
    result = synchronized_write(target, (slice(0, 2),), np.array([7, 7]), cluster=False)
    assert result.attempts == 2
    assert result.locked == ("c/0",)
    np.testing.assert_array_equal(arr[:], [7, 7, 102, 103, 104, 105, 106, 107])


def test_fence_gives_up_after_max_retries(tmp_path: Path) -> None:
    arr = zarr.create_array(str(tmp_path / "r.zarr"), shape=(8,), chunks=(8,), dtype="i4")
    arr[:] = 1
    payload = sync(arr.store_path.store.get("c/0", default_buffer_prototype())).to_bytes()

    class Always(RaceStore):  # interferes on every read
        async def _act(self, key: str, prototype: Any) -> None:
            self.interfered = False
            await super()._act(key, prototype)

    # rewriting the same bytes still makes a new file (new inode): a new generation
    target = open_on(arr, Always(arr.store_path.store, action="interfere", payload=payload))
    with pytest.raises(ConcurrentModificationError):
        synchronized_write(target, (slice(0, 1),), np.array([5]), cluster=False, max_retries=1)


# --- SafeZarrStore in one process ------------------------------------------------------------


def test_threads_through_safe_store_lose_nothing(tmp_path: Path) -> None:
    """8 threads, partial writes of one chunk each round, with a widened read→write window."""
    inner = LocalStore(str(tmp_path / "t.zarr"))
    arr = zarr.create_array(inner, shape=(8, 16), chunks=(8, 8), dtype="i4", fill_value=0)
    safe = SafeZarrStore(RaceStore(inner, action="pause", seconds=0.01), cluster=False)
    target = open_on(arr, safe)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for c in (0, 8):
                with safe.writing():
                    target[i : i + 1, c + 1 : c + 7] = i + 1
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = np.zeros((8, 16), "i4")
    for i in range(8):
        expected[i, 1:7] = expected[i, 9:15] = i + 1
    np.testing.assert_array_equal(arr[:], expected)


def test_threads_without_session_lose_updates_deterministically(tmp_path: Path) -> None:
    """Control: the same partial writes outside writing() race (barrier), as documented."""
    inner = LocalStore(str(tmp_path / "u.zarr"))
    arr = zarr.create_array(inner, shape=(2, 8), chunks=(2, 8), dtype="i4", fill_value=0)
    race = {"action": "barrier", "directory": str(tmp_path / "b"), "parties": 2, "seconds": 30}
    targets = [open_on(arr, SafeZarrStore(RaceStore(inner, **race), cluster=False)) for _ in "ab"]

    def writer(i: int) -> None:
        targets[i][i : i + 1, :4] = i + 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = [i for i in range(2) if (arr[i, :4] == i + 1).all()]
    assert len(kept) == 1  # set() alone is serialised and atomic, but not the read-modify-write


def test_session_rules(tmp_path: Path) -> None:
    safe = SafeZarrStore(LocalStore(str(tmp_path / "s.zarr")), cluster=False)
    arr = zarr.create_array(safe, shape=(4,), chunks=(2,), dtype="i4", fill_value=0)
    with safe.writing(["c/0"]):
        arr[0:1] = 3  # locked, read, fenced
        arr[2:4] = 4  # not declared: written whole
        with pytest.raises(RuntimeError, match="nested"), safe.writing():
            pass
    with safe.writing():
        arr[:] = 0  # write_empty_chunks=False: all-fill chunks are deleted (guarded)
    np.testing.assert_array_equal(arr[:], [0, 0, 0, 0])
    assert sync(safe.get("c/0", default_buffer_prototype())) is None
    assert safe.url == str((tmp_path / "s.zarr").resolve())


def test_memory_store_is_process_local_and_pickles() -> None:
    safe = SafeZarrStore(MemoryStore(), timeout="5s")
    assert safe._cluster_lock(["c/0"]) is None  # not shared with workers: no cluster lock
    clone = pickle.loads(pickle.dumps(safe))
    assert clone._timeout == "5s"


def test_synchronized_write_validates_before_writing(tmp_path: Path) -> None:
    arr = zarr.create_array(str(tmp_path / "v.zarr"), shape=(4, 4), chunks=(2, 2), dtype="i2")
    with pytest.raises(InvalidOptionError, match=r"shape \(3,\).*shape \(2, 4\)"):
        synchronized_write(arr, (slice(0, 2),), np.zeros(3))
    with pytest.raises(InvalidOptionError, match="dtype float64"):
        synchronized_write(arr, (slice(0, 2),), np.zeros((2, 4)))
    with pytest.raises(InvalidOptionError, match="out of bounds"):
        synchronized_write(arr, (slice(0, 9),), 1)
    ro = zarr.open_array(str(tmp_path / "v.zarr"), mode="r")
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        synchronized_write(ro, (slice(0, 2),), 1)
    assert synchronized_write(arr, (slice(0, 2),), np.int16(5)).locked == ()  # aligned: no lock
    assert (arr[:2] == 5).all()


@pytest.mark.parametrize(
    ("zarr_format", "expected"),
    [
        (2, ("g/a/0.0", "g/a/0.1", "g/a/1.0", "g/a/1.1")),
        (3, ("g/a/c/0/0", "g/a/c/0/1", "g/a/c/1/0", "g/a/c/1/1")),
    ],
    ids=["v2", "v3"],
)
def test_storage_keys_of_nested_arrays(tmp_path: Path, zarr_format: int, expected) -> None:
    """Lock keys are store keys: the array's path plus its format's chunk key encoding."""
    root = zarr.open_group(str(tmp_path / "n.zarr"), mode="w", zarr_format=zarr_format)
    arr = root.create_group("g").create_array("a", shape=(6, 6), chunks=(4, 4), dtype="i4")
    result = synchronized_write(arr, (slice(1, 5),), np.ones((4, 6), "i4"), cluster=False)
    assert result.locked == expected
    assert int(arr[:].sum()) == 24
    stored = {str(p.relative_to(tmp_path / "n.zarr")) for p in (tmp_path / "n.zarr").rglob("*")}
    assert set(expected) <= stored
