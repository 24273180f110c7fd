"""probe_location and the errors a wrong location gives: class, kind, and the location named."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import zarr
from zarr.storage import MemoryStore

from zarr_dask_utils import (
    EndpointUnreachableError,
    InvalidOptionError,
    NotAZarrStoreError,
    ReadOnlyStoreError,
    StoreAccessDeniedError,
    StoreNotFoundError,
    open_node,
    resolve_location,
    walk_hierarchy,
)
from zarr_dask_utils._core.storage.probe import Probe, probe_location
from zarr_dask_utils._core.storage.storeio import storage_errors, translate_storage_error
from zarr_dask_utils.testing import corrupt
from zarr_dask_utils.testing.builders import build_sample_hierarchy


def _probe(url, storage_options=None, **kwargs) -> Probe:
    return probe_location(resolve_location(url, storage_options=storage_options), **kwargs)


# --- what a probe finds ---------------------------------------------------------------------------


def test_probe_root_group_and_array(sample):
    probe = _probe(sample.url, sample.storage_options)
    assert probe == Probe(sample.zarr_format, "group", root_missing=False, mixed=False)
    array = _probe(f"{sample.url}/climate/t2m", sample.storage_options)
    assert (array.zarr_format, array.root_kind) == (sample.zarr_format, "array")


def test_probe_node_path_of_a_group_object(tmp_path):
    build_sample_hierarchy(tmp_path / "s.zarr", zarr_format=2)
    group = zarr.open_group(tmp_path / "s.zarr", mode="r")
    location = resolve_location(group["climate/static"])
    assert probe_location(location).root_kind == "group"
    assert probe_location(resolve_location(group["time"])).root_kind == "array"


def test_probe_mixed_formats(sample):
    corrupt.mixed_format_node(sample.store(), "")
    probe = _probe(sample.url, sample.storage_options)
    assert probe.mixed
    assert probe.zarr_format == 3  # zarr.json wins, as in zarr-python


def test_probe_missing_root_allowed_finds_children(sample):
    corrupt.remove_group_document(sample.store(), "")
    probe = _probe(sample.url, sample.storage_options, allow_missing_root=True)
    assert probe.root_missing
    assert probe.root_kind is None
    assert probe.zarr_format == sample.zarr_format
    assert probe.children_with_documents == ("climate", "time")


# --- errors, each naming the location -----------------------------------------------------------


def test_missing_local_path(tmp_path):
    missing = tmp_path / "nope" / "store.zarr"
    with pytest.raises(StoreNotFoundError) as info:
        _probe(missing)
    message = str(info.value)
    assert str(missing) in message
    assert f"nearest existing folder is {str(tmp_path)!r}" in message
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.to_dict() == {
        "kind": "store-not-found",
        "type": "StoreNotFoundError",
        "message": message,
    }


def test_a_file_is_not_a_store(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with pytest.raises(NotAZarrStoreError, match="is a file") as info:
        open_node(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.kind == "not-a-zarr-store"


def test_empty_directory_holds_nothing(tmp_path):
    with pytest.raises(StoreNotFoundError, match="nothing is stored there") as info:
        _probe(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_directory_without_zarr(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(NotAZarrStoreError, match="Nothing one level down is Zarr") as info:
        open_node(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_store_one_level_down_is_named(sample):
    parent = sample.url.rpartition("/")[0]
    with pytest.raises(NotAZarrStoreError) as info:
        _probe(parent, sample.storage_options)
    message = str(info.value)
    assert f"No Zarr data at {parent}" in message
    assert f"found one level down: '{sample.url}'" in message


@pytest.mark.s3
def test_empty_s3_prefix(s3_bucket, s3_storage_options):
    url = f"s3://{s3_bucket}/nothing.zarr"
    with pytest.raises(StoreNotFoundError, match="no objects under that prefix") as info:
        open_node(url, storage_options=s3_storage_options)
    assert url in str(info.value)


@pytest.mark.s3
def test_missing_bucket(s3_endpoint, s3_storage_options):
    url = "s3://zdu-no-such-bucket/store.zarr"
    with pytest.raises(StoreNotFoundError) as info:
        open_node(url, storage_options=s3_storage_options)
    assert url in str(info.value)
    assert "the bucket 'zdu-no-such-bucket' does not exist" in str(info.value)


def test_unreachable_endpoint():
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = {
        "key": "k",
        "secret": "s",
        "endpoint_url": f"http://127.0.0.1:{port}",
        # fail on the first refused connection instead of retrying with back-off
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }
    url = "s3://some-bucket/store.zarr"
    with pytest.raises(EndpointUnreachableError, match="Could not reach") as info:
        open_node(url, storage_options=options)
    assert url in str(info.value)
    assert isinstance(info.value, ConnectionError)
    assert info.value.kind == "endpoint-unreachable"


@pytest.mark.s3
@pytest.mark.parametrize(
    ("key", "secret"),
    [
        pytest.param(None, "wrong-secret", id="wrong-secret"),
        pytest.param("AKIAUNKNOWN0000000000", "whatever", id="unknown-key"),
    ],
)
def test_bad_credentials(s3_auth_server, key, secret):
    options = s3_auth_server.storage_options(key=key, secret=secret)
    with pytest.raises(StoreAccessDeniedError, match="denied") as info:
        open_node(s3_auth_server.url, storage_options=options)
    assert s3_auth_server.url in str(info.value)
    assert isinstance(info.value, PermissionError)
    assert info.value.kind == "access-denied"
    assert secret not in str(info.value)


@pytest.mark.s3
def test_auth_server_really_checks_credentials(s3_auth_server):
    import boto3
    import botocore.exceptions

    def listing(key, secret):
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_auth_server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        return s3.list_objects_v2(Bucket=s3_auth_server.bucket, Prefix="store.zarr/")

    keys = [o["Key"] for o in listing(s3_auth_server.key, s3_auth_server.secret)["Contents"]]
    assert "store.zarr/zarr.json" in keys
    for key, secret, code in [
        (s3_auth_server.key, "wrong", "SignatureDoesNotMatch"),
        ("testing", "testing", "InvalidAccessKeyId"),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as info:
            listing(key, secret)
        assert info.value.response["Error"]["Code"] == code


@pytest.mark.s3
def test_valid_credentials_work_on_the_auth_server(s3_auth_server, client):
    group = open_node(s3_auth_server.url, storage_options=s3_auth_server.storage_options())
    assert group.attrs["title"] == "sample"
    report = walk_hierarchy(
        s3_auth_server.url,
        storage_options=s3_auth_server.storage_options(),
        client=client,
        progress=False,
    )
    assert len(report.arrays) == 4


@pytest.mark.s3
def test_bad_credentials_fail_before_any_graph(s3_auth_server, client):
    options = s3_auth_server.storage_options(secret="wrong")
    with pytest.raises(StoreAccessDeniedError):
        walk_hierarchy(s3_auth_server.url, storage_options=options, client=client, progress=False)


def test_credentials_in_url_are_refused_without_showing_them(tmp_path):
    url = f"memory://alice:hunter2@zdu-test/{tmp_path.name}/missing.zarr"
    with pytest.raises(InvalidOptionError) as info:
        open_node(url)
    assert "hunter2" not in str(info.value)
    assert f"memory://***@zdu-test/{tmp_path.name}/missing.zarr" in str(info.value)


@pytest.mark.s3
def test_no_credentials_at_all(s3_endpoint, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.delenv("AWS_SECURITY_TOKEN")
    url = "s3://zdu-no-credentials/store.zarr"
    options = {"endpoint_url": s3_endpoint, "skip_instance_cache": True}
    with pytest.raises(StoreAccessDeniedError, match="No credentials were found") as info:
        open_node(url, storage_options=options)
    assert url in str(info.value)
    assert type(info.value.__cause__).__name__ == "NoCredentialsError"  # botocore's own


# --- the translation table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(PermissionError("AccessDenied"), StoreAccessDeniedError, id="denied"),
        pytest.param(PermissionError("store is read-only"), ReadOnlyStoreError, id="read-only"),
        pytest.param(
            ConnectionRefusedError(111, "refused"), EndpointUnreachableError, id="refused"
        ),
        pytest.param(FileNotFoundError("NoSuchBucket"), StoreNotFoundError, id="no-bucket"),
    ],
)
def test_translate_storage_error(error, expected):
    translated = translate_storage_error(error, "s3://b/x.zarr")
    assert isinstance(translated, expected)
    assert "s3://b/x.zarr" in str(translated)


def test_translate_keeps_unknown_errors_and_our_own():
    assert translate_storage_error(KeyError("x"), "here") is None
    own = StoreNotFoundError("mine")
    assert translate_storage_error(RuntimeError("wrapped"), "here") is None
    outer = RuntimeError("outer")
    outer.__cause__ = own
    assert translate_storage_error(outer, "here") is own
    with pytest.raises(KeyError), storage_errors("here"):
        raise KeyError("untouched")
    with pytest.raises(StoreNotFoundError), storage_errors("here"):
        raise own


def test_memory_store_object_without_zarr():
    with pytest.raises(StoreNotFoundError, match="MemoryStore"):
        open_node(MemoryStore())


def test_not_a_store_error_on_a_path_object(tmp_path: Path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "data.bin").write_bytes(b"\0")
    with pytest.raises(NotAZarrStoreError):
        _probe(tmp_path / "x")


def test_a_failed_request_cancels_the_others():
    import asyncio

    from zarr.core.sync import sync

    from zarr_dask_utils._core.storage.storeio import concurrent_map

    cancelled = []

    async def one(i):
        if i == 0:
            await asyncio.sleep(0)  # the others are waiting by now
            raise OSError("boom")
        try:
            await asyncio.Event().wait()  # never set: only cancellation ends it
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    with pytest.raises(OSError, match="boom"):
        sync(concurrent_map([(i,) for i in range(4)], one, limit=4))
    assert sorted(cancelled) == [1, 2, 3]
    assert sync(concurrent_map([(0, "a"), (0, "b")], asyncio.sleep, limit=1)) == ["a", "b"]


def test_unreachable_endpoint_on_a_port_that_reads_403():
    # make test failed once: port 40359 in the message made "403" read as access denied
    port = None
    for candidate in range(40300, 40400):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port = candidate
            break
    assert port is not None
    options = {
        "key": "k",
        "secret": "s",
        "endpoint_url": f"http://127.0.0.1:{port}",
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }
    with pytest.raises(EndpointUnreachableError, match="Could not reach") as info:
        open_node("s3://some-bucket/store.zarr", storage_options=options)
    assert info.value.kind == "endpoint-unreachable"
    assert f":{port}" in str(info.value)
