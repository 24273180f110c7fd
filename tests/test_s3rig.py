"""The S3 latency rig: a real S3 API, real latency and rate limit, exact counters, clean teardown.

Timing appears only as lower bounds derived from request counts (N sequential requests cannot
finish before N x the smallest delay), never as thresholds.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from zarr_dask_utils.testing import _s3rig_s3ops as ops
from zarr_dask_utils.testing.s3rig import S3Rig

pytestmark = pytest.mark.s3


def _fs(rig: S3Rig, **kwargs: Any) -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **rig.storage_options, **kwargs)


def _boto(rig: S3Rig) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=rig.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _alive(pid: int) -> bool:
    """True if *pid* runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


# --- it is an S3 API ------------------------------------------------------------------------------


def test_s3fs_roundtrip_is_byte_identical(s3_rig: S3Rig) -> None:
    bucket = s3_rig.make_bucket()
    fs = _fs(s3_rig)
    payloads = {f"{bucket}/data/obj-{i}": os.urandom(1000 + 97 * i) for i in range(8)}
    fs.pipe(payloads)
    assert fs.cat(list(payloads)) == payloads
    # every key is listed once, whichever server process holds it
    assert sorted(fs.find(f"{bucket}/data", refresh=True)) == sorted(payloads)


def test_zarr_store_roundtrip(s3_rig: S3Rig) -> None:
    import zarr

    bucket = s3_rig.make_bucket()
    url = f"s3://{bucket}/a.zarr"
    so = s3_rig.storage_options
    data = np.arange(60 * 40, dtype="f8").reshape(60, 40)
    with s3_rig.unthrottled():
        store = zarr.storage.FsspecStore.from_url(url, storage_options=so)
        arr = zarr.create_array(store, shape=data.shape, chunks=(16, 16), dtype="f8")
        arr[:] = data
    back = zarr.open_array(zarr.storage.FsspecStore.from_url(url, storage_options=so), mode="r")
    np.testing.assert_array_equal(back[:], data)
    fs = _fs(s3_rig)
    assert len(fs.find(f"{bucket}/a.zarr", refresh=True)) == 1 + 4 * 3  # zarr.json + chunks


@pytest.mark.slow
def test_listing_over_many_keys_paginates_across_servers(s3_rig: S3Rig) -> None:
    bucket = s3_rig.make_bucket()
    keys = [f"k/{i:05d}" for i in range(1050)] + [f"d/sub{i:04d}/x" for i in range(40)]
    with s3_rig.unthrottled():
        _fs(s3_rig).pipe({f"{bucket}/{k}": b"1" for k in keys})
        s3_rig.reset_stats()
        s3 = _boto(s3_rig)
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="k/"))
        listed = [c["Key"] for p in pages for c in p.get("Contents", [])]
        v1 = s3.get_paginator("list_objects").paginate(Bucket=bucket, Prefix="k/")
        listed_v1 = [c["Key"] for p in v1 for c in p.get("Contents", [])]
        dirs = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="d/", Delimiter="/", PaginationConfig={"PageSize": 6}
        )
        prefixes = [c["Prefix"] for p in dirs for c in p.get("CommonPrefixes", [])]
        small = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="k/000", PaginationConfig={"PageSize": 7}
        )
        listed_small = [c["Key"] for p in small for c in p.get("Contents", [])]
        stats = s3_rig.stats()
    expected = sorted(k for k in keys if k.startswith("k/"))
    assert len(pages) == 2
    assert listed == expected
    assert listed_v1 == expected
    assert prefixes == [f"d/sub{i:04d}/" for i in range(40)]
    assert listed_small == [k for k in expected if k.startswith("k/000")]
    assert stats["LIST"] == 2 + 2 + -(-40 // 6) + -(-100 // 7)
    # both server processes hold part of the keys: the namespace really is sharded
    per_server = [ops.shard_of(bucket, k, 2) for k in keys]
    assert 0 < sum(per_server) < len(keys)
    # DeleteObjects batches are split by owner: everything goes
    fs = _fs(s3_rig)
    with s3_rig.unthrottled():
        fs.rm(f"{bucket}/k", recursive=True)
        assert fs.find(f"{bucket}/k", refresh=True) == []


# --- it adds latency and limits the rate ---------------------------------------------------------


def test_sequential_requests_take_at_least_n_times_the_latency(s3_rig: S3Rig) -> None:
    bucket = s3_rig.make_bucket()
    fs = _fs(s3_rig, max_concurrency=1)  # one GET per cat_file, no HEAD
    fs.pipe(f"{bucket}/small", b"abc")
    n = 25
    s3_rig.reset_stats()
    start = time.perf_counter()
    for _ in range(n):
        assert fs.cat_file(f"{bucket}/small") == b"abc"
    elapsed = time.perf_counter() - start
    stats = s3_rig.stats()
    assert stats["GET"] == n
    assert stats.total == n
    assert elapsed >= stats.total * (s3_rig.latency - s3_rig.jitter)


def test_rate_limit_bounds_a_large_get_from_below(s3_rig: S3Rig) -> None:
    bucket = s3_rig.make_bucket()
    fs = _fs(s3_rig, max_concurrency=1)
    payload = os.urandom(3 * 2**20)
    fs.pipe(f"{bucket}/big", payload)
    rate = 4 * 2**20  # bytes/s: the GET needs >= 0.75 s at this rate
    before = s3_rig.configure(bandwidth=rate)
    try:
        s3_rig.reset_stats()
        start = time.perf_counter()
        assert fs.cat_file(f"{bucket}/big") == payload
        elapsed = time.perf_counter() - start
        stats = s3_rig.stats()
    finally:
        s3_rig.configure(**before)
    assert stats["GET"] == 1
    assert stats.bytes_served == len(payload)
    assert elapsed >= len(payload) / rate + (s3_rig.latency - s3_rig.jitter)


# --- its counters are the requests made ----------------------------------------------------------


def test_counters_match_the_requests_made(s3_rig: S3Rig) -> None:
    bucket = s3_rig.make_bucket()
    fs = _fs(s3_rig)
    s3_rig.reset_stats()
    fs.pipe({f"{bucket}/c/{i}": b"x" * 100 for i in range(5)})
    assert s3_rig.stats().requests == {"PUT": 5}
    assert s3_rig.stats().bytes_received == 500

    s3_rig.reset_stats()
    fresh = _fs(s3_rig)  # default max_concurrency: a HEAD before each whole-object GET
    assert fresh.cat_file(f"{bucket}/c/0") == b"x" * 100
    single = _fs(s3_rig, max_concurrency=1)  # no HEAD
    assert single.cat_file(f"{bucket}/c/1") == b"x" * 100
    stats = s3_rig.stats()
    assert stats.requests == {"HEAD": 1, "GET": 2}
    assert stats.bytes_served == 200

    s3_rig.reset_stats()
    assert len(fresh.ls(f"{bucket}/c", refresh=True)) == 5
    fresh.rm_file(f"{bucket}/c/4")
    assert s3_rig.stats().requests == {"LIST": 1, "DELETE": 1}


# --- it leaves nothing behind --------------------------------------------------------------------


@pytest.fixture
def own_rig() -> Iterator[S3Rig]:
    rig = S3Rig(latency=0.001, jitter=0.0, servers=2)
    try:
        yield rig
    finally:
        rig.stop()


@pytest.mark.slow
def test_stop_ends_every_process(own_rig: S3Rig) -> None:
    own_rig.start()
    pids = list(own_rig.pids)
    assert len(pids) == 3  # proxy + 2 moto servers
    assert all(_alive(p) for p in pids)
    bucket = own_rig.make_bucket()
    _fs(own_rig).pipe(f"{bucket}/x", b"1")
    own_rig.stop()
    assert _wait_gone(pids, timeout=0.5) == []
    own_rig.stop()  # idempotent


@pytest.mark.slow
def test_killed_proxy_takes_its_servers_along(own_rig: S3Rig) -> None:
    own_rig.start()
    proxy, servers = own_rig.pids[0], own_rig.pids[1:]
    os.kill(proxy, signal.SIGKILL)  # no clean-up code runs in the proxy
    assert _wait_gone(servers) == []  # PR_SET_PDEATHSIG ended them


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        S3Rig(latency=0.01, jitter=0.02)
    with pytest.raises(ValueError, match="servers"):
        S3Rig(servers=0)
    with pytest.raises(RuntimeError, match="not running"):
        _ = S3Rig().endpoint_url


# --- the routing helpers (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "kind"),
    [
        ("GET", "/b/k", "GET"),
        ("HEAD", "/b/k", "HEAD"),
        ("PUT", "/b/k", "PUT"),
        ("DELETE", "/b/k", "DELETE"),
        ("GET", "/b?list-type=2&prefix=a", "LIST"),
        ("GET", "/b", "LIST"),
        ("GET", "/", "LIST"),
        ("GET", "/b?location", "OTHER"),
        ("PUT", "/b", "OTHER"),
        ("POST", "/b?delete", "DELETE"),
        ("POST", "/b/k?uploads", "POST"),
    ],
)
def test_classify(method: str, target: str, kind: str) -> None:
    assert ops.classify(method, ops.parse_target(target)) == kind


def test_split_delete_keeps_every_key_once() -> None:
    keys = [f"k{i}" for i in range(40)]
    body = (
        "<Delete>" + "".join(f"<Object><Key>{k}</Key></Object>" for k in keys) + "</Delete>"
    ).encode()
    parts = ops.split_delete(body, "b", 3)
    found = sorted(k for part in parts.values() for k in ops._KEY.findall(part.decode()))
    assert found == sorted(keys)
    for shard, part in parts.items():
        assert all(ops.shard_of("b", k, 3) == shard for k in ops._KEY.findall(part.decode()))


def _page(names: list[str], *, prefixes: tuple[str, ...] = (), truncated: bool = False) -> Any:
    entries = [ops.ListEntry(n, False, f"<Contents><Key>{n}</Key></Contents>") for n in names]
    entries += [
        ops.ListEntry(p, True, f"<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>")
        for p in prefixes
    ]
    return ops.ListPage(sorted(entries), truncated)


def test_merged_listing_pages_in_key_order_with_own_tokens() -> None:
    pages = [_page(["a", "d", "e"]), _page(["b", "c"], prefixes=("f/",))]
    params = {"list-type": "2", "max-keys": "3", "delimiter": "/"}
    first = ops.merge_list_pages(2, "bkt", params, pages).decode()
    assert ops._KEY.findall(first) == ["a", "b", "c"]
    assert "<IsTruncated>true</IsTruncated>" in first
    token = first.split("<NextContinuationToken>")[1].split("<")[0]
    assert ops.list_start(2, {"continuation-token": token}) == "c"
    # the next page: every process lists after "c"; the prefix comes last, after the keys
    rest = [_page(["d", "e"]), _page([], prefixes=("f/",))]
    second = ops.merge_list_pages(2, "bkt", {**params, "continuation-token": token}, rest)
    text = second.decode()
    assert ops._KEY.findall(text) == ["d", "e"]
    assert "<Prefix>f/</Prefix></CommonPrefixes>" in text
    assert "<IsTruncated>false</IsTruncated>" in text
    assert "<KeyCount>3</KeyCount>" in text


def test_merged_listing_v1_uses_markers() -> None:
    pages = [_page(["a", "c"], truncated=True), _page(["b"])]
    text = ops.merge_list_pages(1, "bkt", {"max-keys": "2"}, pages).decode()
    assert ops._KEY.findall(text) == ["a", "b"]
    assert "<NextMarker>b</NextMarker>" in text
    assert ops.list_start(1, {"marker": "b"}) == "b"
    assert "start-after=b" in ops.shard_list_target(1, "bkt", {"marker": "b"}, "b", 2)


def test_url_encoded_listing_names_are_decoded_for_ordering() -> None:
    body = (
        b"<ListBucketResult><IsTruncated>false</IsTruncated>"
        b"<Contents><Key>a%20b</Key></Contents><Contents><Key>a%2Bz</Key></Contents>"
        b"</ListBucketResult>"
    )
    page = ops.parse_list_page(body, url_encoded=True)
    assert [e.name for e in page.entries] == ["a b", "a+z"]
    assert not page.truncated


def test_copy_between_keys_on_different_servers(s3_rig: S3Rig) -> None:
    bucket = s3_rig.make_bucket()
    src = "copy/src"
    dst = next(
        f"copy/dst{i}"
        for i in range(100)
        if ops.shard_of(bucket, f"copy/dst{i}", 2) != ops.shard_of(bucket, src, 2)
    )
    payload = os.urandom(5000)
    s3 = _boto(s3_rig)
    s3.put_object(
        Bucket=bucket,
        Key=src,
        Body=payload,
        Metadata={"origin": "rig"},
        ContentType="application/x-test",
    )
    s3.copy_object(Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": src})
    got = s3.get_object(Bucket=bucket, Key=dst)
    assert got["Body"].read() == payload
    assert got["Metadata"] == {"origin": "rig"}
    assert got["ContentType"] == "application/x-test"
    fs = _fs(s3_rig)
    fs.copy(f"{bucket}/{dst}", f"{bucket}/copy/again")
    assert fs.cat_file(f"{bucket}/copy/again") == payload
    from botocore.exceptions import ClientError

    missing = next(
        f"copy/none{i}"
        for i in range(100)
        if ops.shard_of(bucket, f"copy/none{i}", 2) != ops.shard_of(bucket, dst, 2)
    )
    with pytest.raises(ClientError, match=r"NoSuchKey|Not Found|404"):
        s3.copy_object(Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": missing})
