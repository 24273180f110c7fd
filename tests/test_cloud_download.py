"""parallel_download / ``zdu download``: real stores, the S3 latency rig, a killed copy resumed.

Every S3 test talks to the latency rig (``s3_rig``: moto processes behind 20 ms per request),
except bad credentials, which need the authenticating server (``s3_auth_server``; the rig's
moto accepts any key).  Sources and targets are compared object by object, byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fsspec
import pytest
import zarr
from click.testing import CliRunner

from zarr_dask_utils import (
    InvalidOptionError,
    ReadOnlyStoreError,
    create_manifest,
    parallel_download,
    verify_manifest,
)
from zarr_dask_utils._core.pure.chunkgrid import is_partial_key
from zarr_dask_utils.cli.main import cli
from zarr_dask_utils.testing.builders import build_sample_hierarchy

pytestmark = [pytest.mark.s3, pytest.mark.cluster]

SECRET = "zdu-Secret-not-for-reports"


def _so(rig: Any) -> dict[str, Any]:
    return {**rig.storage_options, "secret": SECRET}


def _objects(where: str | Path, so: dict[str, Any] | None = None) -> dict[str, bytes]:
    """Every object below *where* (markers included) with its bytes."""
    fs, root = fsspec.core.url_to_fs(str(where), **(so or {}))
    fs.invalidate_cache()
    root = root.rstrip("/")
    paths = fs.find(root)
    found = fs.cat(paths) if paths else {}  # concurrent on S3
    return {p[len(root) + 1 :]: found[p] for p in paths}


def _build_many(url: str, so: dict[str, Any] | None, n: int) -> None:
    """A format-3 group with one array of *n* small (400-byte) chunks, no compression."""
    import numpy as np

    group = zarr.open_group(url, mode="w", storage_options=so)
    arr = group.create_array("many", shape=(n * 50,), chunks=(50,), dtype="f8", compressors=None)
    arr[:] = np.arange(n * 50, dtype="f8")


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


def _opts(so: dict[str, Any], flag: str = "-o") -> list[str]:
    return [f"{flag}={k}={v}" if flag.startswith("--") else f"{flag}{k}={v}" for k, v in so.items()]


# --- copies between every pair of locations ------------------------------------------------------


@pytest.mark.slow
def test_s3_to_local_is_byte_identical_and_manifest_verified(s3_rig, client, tmp_path):
    bucket = s3_rig.make_bucket()
    url, so = f"s3://{bucket}/src.zarr", _so(s3_rig)
    with s3_rig.unthrottled():
        build_sample_hierarchy(url, storage_options=so)
    manifest = create_manifest(url, storage_options=so, client=client, progress=False)
    dst = tmp_path / "dst.zarr"
    s3_rig.reset_stats()
    report = parallel_download(url, dst, storage_options=so, client=client, progress=False)
    stats = s3_rig.stats()
    source = _objects(url, so)
    assert report.complete, str(report)
    assert report.ok
    assert report.objects_copied == report.objects_verified == len(source)
    assert report.bytes_copied == sum(len(v) for v in source.values())
    assert _objects(dst) == source  # byte-identical, and no .zdu-download left behind
    check = verify_manifest(dst, manifest.document, client=client, progress=False)
    assert check.ok
    assert check.changed == check.missing == check.extra == 0
    assert stats["GET"] >= len(source)
    assert stats["HEAD"] < len(source) // 2  # no HEAD before every GET
    text = json.dumps(report.to_dict()) + str(report) + report._repr_html_()
    assert SECRET not in text
    assert report.to_dict()["objects_per_s"] > 0
    assert set(report.seconds) == {"open", "list", "check-target", "copy", "finish"}


@pytest.mark.slow
def test_local_to_s3_and_s3_to_s3(s3_rig, client, tmp_path):
    local = tmp_path / "src.zarr"
    build_sample_hierarchy(str(local), zarr_format=2)
    bucket = s3_rig.make_bucket()
    a, b, so = f"s3://{bucket}/a.zarr", f"s3://{bucket}/b.zarr", _so(s3_rig)
    up = parallel_download(local, a, dst_storage_options=so, client=client, progress=False)
    assert up.complete
    assert _objects(a, so) == _objects(local)
    across = parallel_download(
        a, b, storage_options=so, dst_storage_options=so, client=client, progress=False
    )
    assert across.complete
    assert across.objects_verified == len(_objects(local))
    assert _objects(b, so) == _objects(local)


def test_local_to_local_from_a_zip_and_zip_target_refused(client, tmp_path):
    folder = tmp_path / "src.zarr"
    build_sample_hierarchy(str(folder))
    zipped = tmp_path / "src.zip"
    with zarr.storage.ZipStore(zipped, mode="w") as store:
        for key, value in _objects(folder).items():
            zarr.core.sync.sync(store.set(key, zarr.core.buffer.cpu.Buffer.from_bytes(value)))
    report = parallel_download(zipped, tmp_path / "out.zarr", client=client, progress=False)
    assert report.complete
    assert _objects(tmp_path / "out.zarr") == _objects(folder)
    with pytest.raises(ReadOnlyStoreError, match="zip"):
        parallel_download(folder, tmp_path / "new.zip", client=client, progress=False)


def test_cli_arrays_subset_with_parent_documents(s3_rig, client, tmp_path):
    bucket = s3_rig.make_bucket()
    url, so = f"s3://{bucket}/src.zarr", _so(s3_rig)
    with s3_rig.unthrottled():
        build_sample_hierarchy(url, storage_options=so)  # consolidated in the root zarr.json
    dst = tmp_path / "sub.zarr"
    code, out = _cli(
        "download",
        url,
        str(dst),
        "--arrays",
        "climate/static/elevation,time",
        *_opts(so),
        "--json",
        "--no-progress",
    )
    data = json.loads(out)
    source = _objects(url, so)
    copied = _objects(dst)
    expected = {
        k
        for k in source
        if k.startswith(("climate/static/elevation/", "time/"))
        or k in ("zarr.json", "climate/zarr.json", "climate/static/zarr.json")
    }
    assert set(copied) == expected
    assert all(copied[k] == source[k] for k in copied)
    assert data["objects_copied"] == len(expected)
    assert data["arrays"] == ["climate/static/elevation", "time"]
    # the copied root document still consolidates t2m and precip: warned, with the fix
    assert code == 1
    [finding] = [f for f in data["findings"] if f["code"] == "consolidated-subset"]
    assert finding["fix"] == f"zdu consolidate {dst}"
    fix_code, _ = _cli(*finding["fix"].split()[1:], "--no-progress")
    assert fix_code == 0
    group = zarr.open_group(str(dst), mode="r")
    assert sorted(group["climate"].array_keys()) == []
    assert sorted(group.array_keys()) == ["time"]
    assert group["climate/static/elevation"].shape == (16, 16)
    assert SECRET not in out


def test_dry_run_writes_nothing(s3_rig, client, tmp_path):
    bucket = s3_rig.make_bucket()
    src, dst, so = f"s3://{bucket}/src.zarr", f"s3://{bucket}/dst.zarr", _so(s3_rig)
    with s3_rig.unthrottled():
        build_sample_hierarchy(src, storage_options=so)
    s3_rig.reset_stats()
    report = parallel_download(
        src,
        dst,
        storage_options=so,
        dst_storage_options=so,
        dry_run=True,
        client=client,
        progress=False,
    )
    stats = s3_rig.stats()
    assert report.dry_run
    assert not report.complete
    assert report.objects_copied == len(_objects(src, so))
    assert stats["PUT"] == stats["DELETE"] == stats["POST"] == 0
    assert _objects(dst, so) == {}
    local = tmp_path / "never.zarr"
    parallel_download(src, local, storage_options=so, dry_run=True, client=client, progress=False)
    assert not local.exists()


def test_foreign_target_refused_zarr_target_overwritten(client, tmp_path):
    src = tmp_path / "src.zarr"
    build_sample_hierarchy(str(src))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InvalidOptionError, match="no partial-download marker"):
        parallel_download(src, foreign, client=client, progress=False)
    with pytest.raises(InvalidOptionError, match="Nothing was deleted"):
        parallel_download(src, foreign, overwrite=True, client=client, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"
    other = tmp_path / "other.zarr"
    build_sample_hierarchy(str(other), zarr_format=2)
    report = parallel_download(src, other, overwrite=True, client=client, progress=False)
    assert report.complete
    assert _objects(other) == _objects(src)


# --- errors -------------------------------------------------------------------------------------


def _error(*args: str) -> tuple[int, dict[str, Any]]:
    code, out = _cli("download", *args, "--json", "--no-progress")
    return code, json.loads(out)["error"]


#: The store engines: obstore (chosen automatically when installed) and s3fs (forced).
ENGINES = pytest.mark.parametrize(
    "engine",
    [
        pytest.param({}, id="auto"),
        pytest.param({"zdu_engine": "s3fs"}, id="s3fs", marks=pytest.mark.slow),  # retries: ~8 s
    ],
)


@ENGINES
def test_missing_bucket_and_unreachable_endpoint(s3_rig, client, tmp_path, engine):
    so = {**_so(s3_rig), **engine}
    code, err = _error("s3://zdu-no-such-bucket/x.zarr", str(tmp_path / "d"), *_opts(so))
    assert code == 2, err
    assert err["kind"] == "store-not-found"
    src = tmp_path / "src.zarr"
    build_sample_hierarchy(str(src))
    code, err = _error(
        str(src), "s3://zdu-no-such-bucket/x.zarr", *_opts(so, "--dst-storage-option")
    )
    assert code == 2, err
    assert err["kind"] == "store-not-found"
    with socket.socket() as held:  # bound, never listening: refused, and no one else gets it
        held.bind(("127.0.0.1", 0))
        dead = {**so, "endpoint_url": f"http://127.0.0.1:{held.getsockname()[1]}"}
        code, err = _error("s3://bucket/x.zarr", str(tmp_path / "d2"), *_opts(dead))
    assert code == 2, err
    assert err["kind"] == "endpoint-unreachable"
    assert SECRET not in json.dumps(err)
    assert not (tmp_path / "d").exists()
    assert not (tmp_path / "d2").exists()


@ENGINES
def test_bad_credentials(s3_auth_server, client, tmp_path, engine):
    wrong = {**s3_auth_server.storage_options(secret=SECRET), **engine}
    code, err = _error(s3_auth_server.url, str(tmp_path / "d"), *_opts(wrong))
    assert code == 2, err
    assert err["kind"] == "access-denied"
    assert SECRET not in json.dumps(err)


# --- a killed download resumes -------------------------------------------------------------------


def _landed(dst: Path) -> set[str]:
    """Finished objects at the target: no markers, no zarr ``<key>.<uuid>.partial`` files."""
    return {
        p.relative_to(dst).as_posix()
        for p in dst.rglob("*")
        if p.is_file() and ".zdu-download" not in p.parts and not is_partial_key(p.name)
    }


def _recorded_and_intact(dst: Path) -> set[str]:
    """Keys the killed run recorded whose target copy still has the recorded size and hash."""
    import hashlib

    out = set()
    for record in (dst / ".zdu-download" / "done").glob("*.json"):
        try:
            batch = json.loads(record.read_bytes())
        except ValueError:
            continue
        for key, (size, digest, _) in batch.items():
            path = dst / key
            if path.is_file():
                data = path.read_bytes()
                if len(data) == size and hashlib.blake2b(data).hexdigest() == digest:
                    out.add(key)
    return out


def _kill_midway(s3_rig: Any, tmp_path: Path, n: int) -> tuple[str, dict[str, Any], Path]:
    """Start ``zdu download`` in its own process group; SIGKILL it once records landed."""
    bucket = s3_rig.make_bucket()
    url, so = f"s3://{bucket}/src.zarr", _so(s3_rig)
    with s3_rig.unthrottled():
        _build_many(url, so, n)
    dst = tmp_path / "dst.zarr"
    cmd = [sys.executable, "-m", "zarr_dask_utils", "download", url, str(dst), *_opts(so)]
    cmd += ["--concurrency", "2", "--no-progress", "--json"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    done = dst / ".zdu-download" / "done"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if done.is_dir() and len(list(done.glob("*.json"))) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the download ended before it could be killed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return url, so, dst


@pytest.mark.slow
@pytest.mark.timeout(600)  # builds 800 objects on the rig, runs zdu twice
def test_killed_download_resumes(s3_rig, client, tmp_path):
    url, so, dst = _kill_midway(s3_rig, tmp_path, 800)
    landed = _landed(dst)
    present = _recorded_and_intact(dst)
    source = _objects(url, so)
    assert 0 < len(present) <= len(landed) < len(source)
    assert (dst / ".zdu-download" / "partial.json").is_file()
    report = parallel_download(url, dst, storage_options=so, client=client, progress=False)
    assert report.resumed
    assert report.complete, str(report)
    assert report.ok
    assert report.objects_skipped == len(present)
    assert report.objects_copied == len(source) - len(present)
    assert report.changed_on_source == ()
    assert _objects(dst) == source  # byte-identical, markers and temp files gone


@pytest.mark.slow
@pytest.mark.timeout(600)  # builds 800 objects on the rig, runs zdu twice
def test_source_changed_during_resume_is_detected(s3_rig, client, tmp_path):
    url, so, dst = _kill_midway(s3_rig, tmp_path, 800)
    present = _recorded_and_intact(dst)
    changed = sorted(present)[0]
    fs, root = fsspec.core.url_to_fs(url, **so)
    old = fs.cat_file(f"{root}/{changed}")
    with s3_rig.unthrottled():
        fs.pipe_file(f"{root}/{changed}", bytes(255 - b for b in old))  # same size, new ETag
    report = parallel_download(url, dst, storage_options=so, client=client, progress=False)
    assert report.changed_on_source == (changed,)
    assert report.objects_skipped == len(present) - 1
    assert [f.location for f in report.findings_with("source-changed")] == [changed]
    assert report.complete
    assert (dst / changed).read_bytes() == bytes(255 - b for b in old)
    assert _objects(dst) == _objects(url, so)


def test_obstore_engine_through_the_store_seam(s3_rig, client, tmp_path):
    import obstore  # noqa: F401  (extra s3: installed wherever this runs)

    bucket = s3_rig.make_bucket()
    url = f"s3://{bucket}/src.zarr"
    with s3_rig.unthrottled():
        build_sample_hierarchy(url, storage_options=_so(s3_rig))
    so = {**_so(s3_rig), "zdu_engine": "obstore"}
    s3_rig.reset_stats()
    report = parallel_download(url, tmp_path / "o.zarr", storage_options=so, client=client)
    assert s3_rig.stats()["HEAD"] < report.objects_copied // 2  # one listing, no HEAD per key
    assert "source obstore" in report.transfer_engine
    assert report.complete
    assert _objects(tmp_path / "o.zarr") == _objects(url, _so(s3_rig))


def test_progress_bar_counts_bytes_and_objects(capsys):
    import numpy as np

    src, dst = zarr.storage.MemoryStore(), zarr.storage.MemoryStore()  # threads here
    arr = zarr.create_array(src, shape=(4000,), chunks=(100,), dtype="f8", compressors=None)
    arr[:] = np.arange(4000.0)
    report = parallel_download(src, dst, progress=True)
    err = capsys.readouterr().err
    assert report.objects_copied == 41
    assert "download" in err
    assert "41/41 objects" in err
    assert "B/s" in err
