"""parallel_download: the store engine chosen automatically, and large objects in ranged GETs.

The S3 tests talk to the latency rig (``s3_rig``); the checks on what a copy task verifies run
on real local folders.  Sources and targets are compared byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pytest
import zarr

from zarr_dask_utils import parallel_download
from zarr_dask_utils._core.storage.locations import resolve_location
from zarr_dask_utils._core.storage.obstore_engine import choose_engine
from zarr_dask_utils.cloud.transfer_ranges import ranged_parts
from zarr_dask_utils.cloud.transfer_tasks import CopySettings, copy_task


def _so(rig: Any) -> dict[str, Any]:
    return dict(rig.storage_options)


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".zdu-download" not in p.parts
    }


@pytest.mark.parametrize(
    ("url", "options", "engine", "why"),
    [
        ("s3://b/x.zarr", None, "obstore", "chosen automatically"),
        ("s3://b/x.zarr", {"zdu_engine": "s3fs"}, "s3fs", "storage option zdu_engine='s3fs'"),
        ("s3://b/x.zarr", {"requester_pays": True}, None, "obstore takes no requester_pays"),
        ("s3a://b/x.zarr", None, None, "default for s3a"),
        ("/data/x.zarr", None, None, ""),
    ],
    ids=["auto", "forced-s3fs", "option-obstore-lacks", "s3a", "local"],
)
def test_choose_engine(url, options, engine, why):
    chosen, reason = choose_engine(url, options)
    assert chosen.get("zdu_engine") == engine
    assert why in reason
    assert set(chosen) - {"zdu_engine"} == set(options or {}) - {"zdu_engine"}


@pytest.mark.s3
@pytest.mark.cluster
@pytest.mark.slow
def test_obstore_is_chosen_unless_s3fs_is_forced(s3_rig, client, tmp_path):
    bucket = s3_rig.make_bucket()
    url, so = f"s3://{bucket}/src.zarr", _so(s3_rig)
    with s3_rig.unthrottled():
        arr = zarr.create_array(url, shape=(40,), chunks=(10,), dtype="u2", storage_options=so)
        arr[:] = np.arange(40, dtype="u2")
    auto = parallel_download(url, tmp_path / "auto.zarr", storage_options=so, client=client)
    assert "source obstore (installed: chosen automatically" in auto.transfer_engine
    forced = {**so, "zdu_engine": "s3fs"}
    s3fs = parallel_download(url, tmp_path / "s3fs.zarr", storage_options=forced, client=client)
    assert "source s3fs (storage option zdu_engine='s3fs')" in s3fs.transfer_engine
    assert "source s3fs" in str(s3fs)
    assert auto.complete
    assert s3fs.complete
    assert _files(tmp_path / "auto.zarr") == _files(tmp_path / "s3fs.zarr")
    assert zarr.open_array(tmp_path / "auto.zarr")[:].tolist() == list(range(40))


@pytest.mark.s3
@pytest.mark.cluster
@pytest.mark.parametrize("engine", ["obstore", "s3fs"])
def test_large_objects_move_in_ranged_gets(s3_rig, client, tmp_path, engine):
    bucket = s3_rig.make_bucket()
    url, so = f"s3://{bucket}/big.zarr", _so(s3_rig)
    data = np.random.default_rng(5).integers(0, 2**31, size=3 * 2**18, dtype="i4")
    with s3_rig.unthrottled():  # 3 objects of 1 MiB, incompressible
        arr = zarr.create_array(
            url, shape=data.shape, chunks=(2**18,), dtype="i4", compressors=None, storage_options=so
        )
        arr[:] = data
    s3_rig.reset_stats()
    with dask.config.set({"zarr-dask-utils.download.part-bytes": "300KiB"}):
        report = parallel_download(
            url, tmp_path / "big.zarr", storage_options={**so, "zdu_engine": engine}, client=client
        )
    parts = len(ranged_parts(2**20, 300 * 2**10))
    assert parts == 4
    assert s3_rig.stats()["GET"] >= 3 * parts + 1  # every chunk in 4 ranged GETs, + zarr.json
    assert report.complete
    assert report.objects_verified == 4
    assert np.array_equal(zarr.open_array(tmp_path / "big.zarr")[:], data)
    assert not list((tmp_path / "big.zarr").rglob("*.partial"))


@pytest.mark.parametrize("part_bytes", [2**30, 100], ids=["whole", "ranged"])
def test_copy_task_reports_objects_changed_or_gone_since_listed(tmp_path, part_bytes):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "a").write_bytes(bytes(range(250)))
    (src / "b").write_bytes(b"x" * 300)
    # "b" listed one byte longer than it is now, "c" listed but deleted since
    items = [("a", 250, None), ("b", 301, None), ("c", 500, None)]
    settings = CopySettings(part_bytes=part_bytes, concurrency=4)
    result = copy_task(
        resolve_location(str(src)), resolve_location(str(dst), read_only=False), items, settings
    )
    assert result["resized"] == ["b"]
    assert result["vanished"] == ["c"]
    assert result["copied"] == result["verified"] == 1
    assert _files(dst) == {"a": bytes(range(250))}


def test_obstore_uses_given_credentials_as_a_set_and_hides_the_secret():
    from zarr_dask_utils._core.storage.obstore_engine import open_obstore

    options = {"key": "AKIAEXAMPLE", "secret": "zdu-Secret-not-shown", "endpoint_url": "http://h:1"}
    store = open_obstore("s3://b/x.zarr", options, read_only=True)
    provider = store.store.credential_provider
    assert provider() == {
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "zdu-Secret-not-shown",
        "token": None,  # an ambient AWS_SESSION_TOKEN is not mixed in (s3fs does the same)
        "expires_at": None,
    }
    assert "zdu-Secret-not-shown" not in repr(provider)


def test_without_obstore_s3fs_is_kept_and_the_extra_named(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "obstore", None)  # import obstore raises ImportError
    chosen, reason = choose_engine("s3://b/x.zarr", {"anon": True})
    assert chosen == {"anon": True}
    assert "obstore is not installed: pip install 'zarr-dask-utils[s3]'" in reason
