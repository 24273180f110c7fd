"""resolve_location / open_store: every kind of input, what is rejected, and redaction."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import fsspec
import pytest
import zarr
from zarr.storage import FsspecStore, LocalStore, MemoryStore, ZipStore

from zarr_dask_utils import (
    InvalidOptionError,
    Location,
    ReadOnlyStoreError,
    ZarrDaskUtilsError,
    open_store,
    resolve_location,
)
from zarr_dask_utils._core.storage.locations import redact
from zarr_dask_utils.testing.builders import build_sample_hierarchy


@pytest.fixture
def local_sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.zarr"
    build_sample_hierarchy(path)
    return path


def _title(store) -> str:
    return zarr.open_group(store, mode="r", use_consolidated=False).attrs["title"]


# --- local paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("as_type", [str, Path], ids=["str", "Path"])
def test_local_path(local_sample, as_type):
    location = resolve_location(as_type(local_sample))
    assert location == Location(str(local_sample), "local")
    assert location.read_only
    assert location.path == ""
    assert not location.is_remote
    assert location.shareable
    store = location.open_store()
    assert isinstance(store, LocalStore)
    assert store.read_only
    assert _title(store) == "sample"


def test_relative_and_home_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_location("rel.zarr").url == str(tmp_path / "rel.zarr")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_location("~/home.zarr").url == str(tmp_path / "home.zarr")


def test_file_url_is_a_local_path(local_sample):
    location = resolve_location(f"file://{local_sample}")
    assert location.kind == "local"
    assert location.url == str(local_sample)
    assert _title(location.open_store()) == "sample"


def test_open_store_writable_and_cached(local_sample):
    writable = open_store(local_sample, read_only=False)
    assert not writable.read_only
    assert open_store(local_sample, read_only=False) is writable  # one store per process
    assert open_store(local_sample) is not writable
    zarr.open_group(writable, mode="r+").attrs["edited"] = True
    assert zarr.open_group(open_store(local_sample), mode="r").attrs["edited"] is True


def test_location_pickles_and_switches_mode(local_sample):
    location = resolve_location(local_sample)
    clone = pickle.loads(pickle.dumps(location))
    assert clone == location
    writable = resolve_location(location, read_only=False)
    assert not writable.read_only
    assert writable.url == location.url
    assert resolve_location(location) is location


# --- URLs ----------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_url_with_storage_options(s3_bucket, s3_storage_options):
    url = f"s3://{s3_bucket}/sample.zarr"
    build_sample_hierarchy(url, storage_options=s3_storage_options)
    location = resolve_location(url + "/", storage_options=s3_storage_options)
    assert location.kind == "fsspec"
    assert location.url == url
    assert location.storage_options == s3_storage_options
    assert location.is_remote
    assert location.shareable
    assert location.display == url
    assert "secret" not in repr(location)
    store = location.open_store()
    assert isinstance(store, FsspecStore)
    assert store.read_only
    assert _title(store) == "sample"


def test_memory_url(tmp_path):
    url = f"memory://zdu-test/{tmp_path.name}/m.zarr"
    try:
        build_sample_hierarchy(url)
        location = resolve_location(url)
        assert location.kind == "fsspec"
        assert not location.is_remote
        assert not location.shareable
        store = open_store(url)
        assert isinstance(store, FsspecStore)
        assert _title(store) == "sample"
    finally:
        fsspec.filesystem("memory").rm(f"/zdu-test/{tmp_path.name}", recursive=True)


def test_zip_file(local_sample, tmp_path):
    archive = tmp_path / "sample.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(local_sample.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(local_sample).as_posix())
    location = resolve_location(archive)
    assert location.kind == "zip"
    assert location.url == str(archive)
    store = location.open_store()
    assert isinstance(store, ZipStore)
    assert _title(store) == "sample"
    assert zarr.open_group(store, mode="r")["climate/t2m"].shape == (8, 16, 16)


# --- zarr objects and mappers --------------------------------------------------------------------


def test_memory_store_object():
    memory = MemoryStore()
    build_sample_hierarchy(memory)
    location = resolve_location(memory)
    assert location.kind == "object"
    assert location.url == "MemoryStore"
    assert location.store is memory
    assert not location.shareable
    assert not location.is_remote
    assert open_store(memory) is memory


def test_local_store_object_becomes_a_path(local_sample):
    location = resolve_location(LocalStore(local_sample))
    assert location == Location(str(local_sample), "local")


def test_zip_store_object_becomes_a_path(local_sample, tmp_path):
    archive = tmp_path / "s.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(local_sample / "zarr.json", "zarr.json")
    location = resolve_location(ZipStore(archive, mode="r", read_only=True))
    assert location.kind == "zip"
    assert location.url == str(archive)


def test_group_and_array_objects_keep_their_path(local_sample):
    root = zarr.open_group(local_sample, mode="r")
    climate = resolve_location(root["climate"])
    assert (climate.kind, climate.url, climate.path) == ("local", str(local_sample), "climate")
    assert climate.display == f"{local_sample}#climate"
    array = resolve_location(root["climate/static/elevation"])
    assert array.path == "climate/static/elevation"


@pytest.mark.s3
def test_fsspec_store_object_on_s3(s3_bucket, s3_storage_options):
    url = f"s3://{s3_bucket}/o.zarr"
    build_sample_hierarchy(url, storage_options=s3_storage_options)
    store = FsspecStore.from_url(url, storage_options=s3_storage_options, read_only=True)
    location = resolve_location(store)
    assert location.kind == "object"
    assert location.is_remote
    assert location.shareable
    assert location.url == f"s3://{s3_bucket}/o.zarr"
    assert _title(location.open_store()) == "sample"


def test_fsspec_memory_mapper(tmp_path):
    url = f"memory://zdu-test/{tmp_path.name}/mapped.zarr"
    try:
        build_sample_hierarchy(url)
        location = resolve_location(fsspec.get_mapper(url))
        assert location.kind == "object"
        assert not location.shareable
        assert not location.is_remote
        assert _title(location.open_store()) == "sample"
    finally:
        fsspec.filesystem("memory").rm(f"/zdu-test/{tmp_path.name}", recursive=True)


@pytest.mark.s3
def test_fsspec_s3_mapper(s3_bucket, s3_storage_options):
    url = f"s3://{s3_bucket}/mapped.zarr"
    build_sample_hierarchy(url, storage_options=s3_storage_options, zarr_format=2)
    mapper = fsspec.get_mapper(url, **s3_storage_options)
    location = resolve_location(mapper)
    assert location.kind == "object"
    assert location.is_remote
    assert _title(location.open_store()) == "sample"


# --- what is rejected ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: str(p), id="path"),
        pytest.param(lambda p: f"file://{p}", id="file-url"),
        pytest.param(lambda p: LocalStore(p), id="store"),
        pytest.param(lambda p: zarr.open_group(p, mode="r"), id="group"),
        pytest.param(lambda p: fsspec.get_mapper(str(p)), id="mapper"),
    ],
)
def test_storage_options_rejected_where_ignored(local_sample, make):
    with pytest.raises(InvalidOptionError, match="would be ignored") as info:
        resolve_location(make(local_sample), storage_options={"anon": True})
    assert isinstance(info.value, ValueError)
    assert info.value.kind == "invalid-option"


def test_storage_options_rejected_for_local_path_names_it(tmp_path):
    with pytest.raises(InvalidOptionError) as info:
        open_store(tmp_path / "x.zarr", storage_options={"key": "k"})
    assert str(tmp_path / "x.zarr") in str(info.value)


def test_unsupported_type():
    with pytest.raises(InvalidOptionError, match="Cannot open a store from a int"):
        resolve_location(42)  # type: ignore[arg-type]


def test_read_only_store_object_refuses_writes():
    memory = MemoryStore(read_only=True)
    with pytest.raises(ReadOnlyStoreError, match="read-only") as info:
        open_store(memory, read_only=False)
    assert isinstance(info.value, PermissionError)
    assert isinstance(info.value, ZarrDaskUtilsError)
    assert info.value.to_dict()["kind"] == "read-only"


# --- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://AKID:s3cr3t@bucket/x.zarr", "s3://***@bucket/x.zarr"),
        ("https://user@host/data.zarr", "https://***@host/data.zarr"),
        ("s3://bucket/x.zarr", "s3://bucket/x.zarr"),
        ("/local/path@2/x.zarr", "/local/path@2/x.zarr"),
    ],
)
def test_redact(url, shown):
    assert redact(url) == shown


def test_display_hides_url_credentials():
    # resolve_location refuses such URLs (issue 10, tests/test_hostile.py); a Location built
    # directly still never shows them
    location = Location("s3://AKID:s3cr3t@bucket/x.zarr", "fsspec", {"anon": True})
    assert "s3cr3t" not in location.display
    assert "AKID" not in location.display
    with pytest.raises(InvalidOptionError, match=r"s3://\*\*\*@bucket"):
        resolve_location("s3://AKID:s3cr3t@bucket/x.zarr", storage_options={"anon": True})


def test_environment_is_pinned():
    # the session fixture keeps the machine's AWS settings out of every test
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert "AWS_PROFILE" not in os.environ


def test_wrapped_memory_store_is_not_shareable(local_sample):
    from zarr.storage import LoggingStore

    memory = MemoryStore()
    wrapped = resolve_location(LoggingStore(memory))
    assert wrapped.kind == "object"
    assert not wrapped.shareable  # workers would see pickled copies
    on_disk = resolve_location(LoggingStore(LocalStore(local_sample)))
    assert on_disk.shareable
    assert not on_disk.is_remote


def _read_in_forked_child(location, key, parent_store_id, queue) -> None:  # pragma: no cover
    # runs in the child: coverage of forked children is not collected
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    store = location.open_store()
    value = sync(store.get(key, prototype=default_buffer_prototype()))
    queue.put((id(store) != parent_store_id, None if value is None else value.to_bytes()))


def test_a_forked_child_opens_its_own_s3_store(s3_bucket, s3_storage_options):
    """An s3fs session used across fork hangs or fails (fsspec #755): the cache forgets it."""
    import multiprocessing

    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    url = f"s3://{s3_bucket}/forked.zarr"
    build_sample_hierarchy(url, storage_options=s3_storage_options)
    location = resolve_location(url, storage_options=s3_storage_options)
    store = location.open_store()
    expected = sync(store.get("zarr.json", prototype=default_buffer_prototype()))
    assert expected is not None  # the parent's session is now live
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(
        target=_read_in_forked_child, args=(location, "zarr.json", id(store), queue)
    )
    child.start()
    fresh, value = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert fresh  # not the parent's store object
    assert value == expected.to_bytes()
