"""stream_objects on real stores (local files, memory, S3 on loopback) and heap_allocations."""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pytest
import zarr

from zarr_dask_utils import StoreAccessDeniedError
from zarr_dask_utils._core.storage import objectstream
from zarr_dask_utils._core.storage.heap import heap_allocations, mmap_threshold_adjustable
from zarr_dask_utils._core.storage.locations import open_store
from zarr_dask_utils._core.storage.objectstream import stream_objects
from zarr_dask_utils._core.storage.storeio import list_keys, read_keys, storage_errors


def _fill(store, n=12):
    arr = zarr.create_array(store, shape=(n * 100,), chunks=(100,), dtype="i4", fill_value=-1)
    arr[:] = np.arange(n * 100, dtype="i4")
    return sorted(k for k in list_keys(store) if k.startswith("c/"))


def _collect(store, keys, **kwargs):
    return [None if v is None else bytes(v) for v in stream_objects(store, keys, **kwargs)]


def test_local_stream_equals_stored_bytes(tmp_path):
    store = zarr.storage.LocalStore(tmp_path / "a.zarr")
    keys = _fill(store)
    wanted = [*keys[:3], "c/999", *keys[3:], "c/nope/deeper"]  # missing keys in between
    got = _collect(store, wanted)
    expected = read_keys(store, wanted)
    assert got == [expected[k] for k in wanted]
    assert got[3] is None
    assert got[-1] is None
    assert all(isinstance(v, bytes) and v for v in got[:3])


def test_local_stream_reads_ahead_when_reads_are_slow(tmp_path, monkeypatch):
    store = zarr.storage.LocalStore(tmp_path / "a.zarr")
    keys = _fill(store, n=20)
    calls = []
    real = objectstream._read_ahead

    def spy(paths, depth):
        calls.append(len(paths))
        return real(paths, depth)

    monkeypatch.setattr(objectstream, "SLOW_READ", 1e30)  # every read counts as slow
    monkeypatch.setattr(objectstream, "_read_ahead", spy)
    wanted = [*keys[:10], "c/999", *keys[10:]]
    got = _collect(store, wanted, depth=3)
    assert calls == [len(wanted) - objectstream._TIMED_READS]  # switched after the timed reads
    expected = read_keys(store, wanted)
    assert got == [expected[k] for k in wanted]


def test_page_cache_reads_stay_in_line(tmp_path, monkeypatch):
    store = zarr.storage.LocalStore(tmp_path / "a.zarr")
    keys = _fill(store, n=20)
    monkeypatch.setattr(objectstream, "SLOW_READ", 0.0)  # no read is slow
    monkeypatch.setattr(objectstream, "_read_ahead", None)  # calling it would fail
    assert len(_collect(store, keys)) == 20


def test_read_ahead_stops_cleanly_when_the_consumer_stops(tmp_path):
    store = zarr.storage.LocalStore(tmp_path / "a.zarr")
    keys = _fill(store, n=20)
    paths = [str(tmp_path / "a.zarr" / k) for k in keys]
    stream = objectstream._read_ahead(paths, 4)
    first = bytes(next(stream))
    stream.close()  # pending reads are cancelled or awaited, none is left running
    assert first == read_keys(store, keys[:1])[keys[0]]
    assert _collect(store, keys[:2]) == list(read_keys(store, keys[:2]).values())


def test_read_file_grows_its_buffer(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 1000)
    buf, n = objectstream._read_file(str(path), bytearray(10))
    assert n == 1000
    assert bytes(buf[:n]) == b"x" * 1000
    assert len(buf) > 1000
    assert objectstream._read_file(str(tmp_path / "missing"), bytearray(10)) is None


def test_memory_store_stream():
    store = zarr.storage.MemoryStore()
    keys = _fill(store)
    wanted = [*keys, "c/999"]
    got = _collect(store, wanted, depth=2)
    expected = read_keys(store, wanted)
    assert got == [expected[k] for k in wanted]


@pytest.mark.s3
def test_s3_stream_equals_stored_bytes(s3_bucket, s3_storage_options):
    url = f"s3://{s3_bucket}/a.zarr"
    store = open_store(url, storage_options=s3_storage_options, read_only=False)
    keys = _fill(store)
    wanted = [*keys, "c/999"]
    got = _collect(store, wanted, depth=4)
    expected = read_keys(store, wanted)
    assert got == [expected[k] for k in wanted]
    assert got[-1] is None
    stream = stream_objects(store, keys, depth=4)
    assert bytes(next(stream)) == expected[keys[0]]
    stream.close()  # the other requests in flight are cancelled and awaited


@pytest.mark.s3
def test_s3_stream_raises_on_bad_credentials(s3_auth_server):
    options = s3_auth_server.storage_options(secret="wrong")
    store = open_store(s3_auth_server.url, storage_options=options, read_only=True)
    with pytest.raises(StoreAccessDeniedError), storage_errors(s3_auth_server.url):
        list(stream_objects(store, ["zarr.json", "climate/zarr.json"]))


# --- heap_allocations ---------------------------------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mmapped_blocks_for_1mib() -> tuple[int, int]:
    """(mmapped blocks held while a 1 MiB buffer is alive outside, inside heap_allocations)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2

    def held() -> int:
        before = libc.mallinfo2().hblks
        buf = np.empty(2**20, dtype="u1")
        during = libc.mallinfo2().hblks
        del buf
        return during - before

    outside = held()
    with heap_allocations(16 * 2**20) as active:
        assert active
        inside = held()
    return outside, inside


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_heap_allocations_in_a_dask_worker(client):
    # distributed starts workers with MALLOC_TRIM_THRESHOLD_ set: 1 MiB buffers are mmapped
    assert all(client.run(mmap_threshold_adjustable).values())
    outside, inside = client.submit(_mmapped_blocks_for_1mib, pure=False).result()
    assert (outside, inside) == (1, 0)


def test_heap_allocations_leave_other_processes_alone(monkeypatch):
    from zarr_dask_utils._core.storage import malloc

    monkeypatch.setattr(malloc, "_startup", {})  # started without the variable
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # put in os.environ later: no effect
    assert not mmap_threshold_adjustable()
    with heap_allocations(16 * 2**20) as active:
        assert not active
    started = {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "131072"}
    monkeypatch.setattr(malloc, "_startup", started)  # the user chose one: keep it
    assert not mmap_threshold_adjustable()
    with heap_allocations(None) as active:
        assert not active


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_heap_allocations_nest(monkeypatch):
    from zarr_dask_utils._core.storage import malloc

    monkeypatch.setattr(malloc, "_startup", {"MALLOC_TRIM_THRESHOLD_": "65536"})
    with heap_allocations(2**24) as outer:
        with heap_allocations(2**24) as inner:
            assert outer
            assert inner
            assert malloc.MMAP_THRESHOLD.active == 2
        assert malloc.MMAP_THRESHOLD.active == 1
    assert malloc.MMAP_THRESHOLD.active == 0
