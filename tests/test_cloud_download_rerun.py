"""parallel_download / ``zdu download`` run twice: an up-to-date check, and the listing's cost.

A finished copy has no marker; running the same download again checks every object at the
target against the source (size and hash), copies only what is missing, and refuses a
target whose data differs.  Real stores on disk and the S3 latency rig (``s3_rig``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import fsspec
import pytest
from test_cloud_download import _build_many, _cli, _objects, _opts, _so

from zarr_dask_utils import InvalidOptionError, parallel_download
from zarr_dask_utils.testing.builders import build_sample_hierarchy

pytestmark = [pytest.mark.cluster]


def _chunk(folder: Path) -> Path:
    return next(p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "zarr.json")


def _s3_download(src: str, dst: str, so: dict[str, Any], client: Any, **kw: Any) -> Any:
    opts = {"storage_options": so, "dst_storage_options": so, "progress": False}
    return parallel_download(src, dst, client=client, **opts, **kw)


def test_local_rerun_is_an_up_to_date_check(client, tmp_path):
    src, dst = tmp_path / "src.zarr", tmp_path / "dst.zarr"
    build_sample_hierarchy(str(src))
    first = parallel_download(src, dst, client=client, progress=False)
    assert first.complete
    assert first.objects_copied == len(_objects(src))
    stamps = {p: p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file()}
    again = parallel_download(src, dst, client=client, progress=False)
    assert again.complete
    assert again.up_to_date_check
    assert again.objects_copied == 0
    assert again.objects_skipped == len(_objects(src))
    assert "identical (verified)" in str(again)
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file()} == stamps
    code, out = _cli("download", str(src), str(dst), "--json", "--no-progress")
    assert code == 0, out
    assert (json.loads(out)["objects_copied"], json.loads(out)["up_to_date_check"]) == (0, True)
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file()} == stamps
    dry = parallel_download(src, dst, dry_run=True, client=client, progress=False)
    assert (dry.objects_copied, dry.objects_skipped) == (0, len(_objects(src)))
    # one object deleted by hand: only it is copied
    gone = _chunk(dst)
    gone.unlink()
    fixed = parallel_download(src, dst, client=client, progress=False)
    assert (fixed.objects_copied, fixed.objects_skipped) == (1, len(_objects(src)) - 1)
    assert _objects(dst) == _objects(src)  # no marker left behind either


def test_local_rerun_refuses_changed_or_foreign_objects(client, tmp_path):
    src, dst = tmp_path / "src.zarr", tmp_path / "dst.zarr"
    build_sample_hierarchy(str(src))
    parallel_download(src, dst, client=client, progress=False)
    changed = _chunk(dst)
    data = bytearray(changed.read_bytes())
    data[0] ^= 0xFF  # same size, other bytes: only the hash tells
    changed.write_bytes(bytes(data))
    key = changed.relative_to(dst).as_posix()
    with pytest.raises(InvalidOptionError, match=f"1 of them differ.*{re.escape(key)}"):
        parallel_download(src, dst, client=client, progress=False)
    assert changed.read_bytes() == bytes(data)  # never overwritten without being asked
    code, out = _cli("download", str(src), str(dst), "--json", "--no-progress")
    assert code == 2
    assert key in json.loads(out)["error"]["message"]
    assert "--overwrite" in json.loads(out)["error"]["message"]
    code, out = _cli("download", str(src), str(dst), "--overwrite", "--json", "--no-progress")
    assert code == 0, out
    assert _objects(dst) == _objects(src)
    (dst / "notes.txt").write_text("mine")  # not a key of the source: refused as before
    with pytest.raises(InvalidOptionError, match=r"notes\.txt"):
        parallel_download(src, dst, client=client, progress=False)


@pytest.mark.slow
@pytest.mark.s3
def test_s3_rerun_sends_no_put_and_cli_twice(s3_rig, client, tmp_path):
    bucket = s3_rig.make_bucket()
    url, so = f"s3://{bucket}/src.zarr", _so(s3_rig)
    dst = f"s3://{bucket}/dst.zarr"
    with s3_rig.unthrottled():
        build_sample_hierarchy(url, storage_options=so)
    n = len(_objects(url, so))
    args = ["download", url, dst, *_opts(so), *_opts(so, "--dst-storage-option"), "--json"]
    code, out = _cli(*args, "--no-progress")
    assert code == 0, out
    assert json.loads(out)["objects_copied"] == n
    s3_rig.reset_stats()
    code, out = _cli(*args, "--no-progress")
    stats = s3_rig.stats()
    assert code == 0, out
    data = json.loads(out)
    assert (data["objects_copied"], data["objects_skipped"]) == (0, n)
    assert stats["PUT"] == stats["DELETE"] == stats["POST"] == 0
    assert _objects(dst, so) == _objects(url, so)
    fs = fsspec.filesystem("s3", **so)
    key = next(k for k in sorted(_objects(dst, so)) if not k.endswith("zarr.json"))
    fs.rm(f"{dst}/{key}")  # deleted by hand: only it is copied
    s3_rig.reset_stats()
    report = _s3_download(url, dst, so, client)
    assert (report.objects_copied, report.objects_skipped) == (1, n - 1)
    assert _objects(dst, so) == _objects(url, so)
    fs.pipe(f"{dst}/{key}", b"x" * len(_objects(url, so)[key]))  # changed by hand
    code, out = _cli(*args, "--no-progress")
    assert code == 2
    assert key in json.loads(out)["error"]["message"]


@pytest.mark.slow
@pytest.mark.s3
def test_listing_sends_one_list_per_thousand_objects(s3_rig, client, tmp_path):
    bucket = s3_rig.make_bucket()
    url, so = f"s3://{bucket}/src.zarr", _so(s3_rig)
    with s3_rig.unthrottled():
        _build_many(url, so, 1100)
    n = len(_objects(url, so))
    s3_rig.reset_stats()
    report = _s3_download(url, f"s3://{bucket}/dst.zarr", so, client, dry_run=True)
    stats = s3_rig.stats()
    assert report.objects_copied == n
    # source: ceil(n / 1000) pages; empty target: one; the open probe: at most one more
    assert stats["LIST"] <= math.ceil(n / 1000) + 2
    assert stats["HEAD"] + stats["GET"] <= 6  # the probe's documents, nothing per object
