"""Hostile inputs (issue 10): each defect found by trying to break zdu, as a test on real stores.

Local folders and the moto S3 server; the CLI is run through click with --json, exit codes and
error kinds asserted, and every file of a source hashed before and after.  One section per
item of the issue; add new cases under a heading of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from zarr_dask_utils import (
    OutputNotWritableError,
    OverlappingLocationsError,
    SafeZarrStore,
    create_manifest,
    rechunk_array,
    resolve_location,
)
from zarr_dask_utils._core.storage.canonical import (
    Canonical,
    canonical_of_store,
    canonical_of_url,
    overlap,
)
from zarr_dask_utils._core.storage.outputs import probe_store_writable
from zarr_dask_utils._core.storage.overwrite import array_folders, foreign_keys
from zarr_dask_utils.cli.main import cli
from zarr_dask_utils.concurrent.regions import lock_names
from zarr_dask_utils.testing.cli_runner import ZduResult, run_zdu
from zarr_dask_utils.testing.concurrency import write_synchronized
from zarr_dask_utils.testing.counting import CountingStore

# === Issue 10, items 1, 3, 7: overlapping locations, canonical lock names, output probes ======
# A target that equals, contains or lies inside its source (or temp store) is refused before
# anything is written, compared on canonical locations; --overwrite deletes Zarr keys only;
# lock names are one per storage location; every output is probed before the work.


def _tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below *root* (symlinks not followed), to prove nothing changed."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_file():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _s3_hashes(bucket: str, options: dict[str, Any]) -> dict[str, str]:
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    fs.invalidate_cache()
    return {p: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in fs.find(bucket)}


def _ones(url: Any, storage_options: dict[str, Any] | None = None) -> zarr.Array[Any]:
    from zarr_dask_utils import open_store

    store = open_store(url, storage_options=storage_options, read_only=False)
    arr = zarr.create_array(store, shape=(8, 6), chunks=(1, 6), dtype="i4", fill_value=0)
    arr[:] = 1
    return arr


def _zdu(args: list[str], client: Any) -> ZduResult:
    return run_zdu(*args, "--json", scheduler=client)


def _error(result: Any) -> dict[str, Any]:
    assert result.exit_code == 2, result.output
    return dict(json.loads(result.stdout)["error"])


# --- canonical locations: pure tables ---------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("s3://bucket/x.zarr", "s3://bucket/x.zarr/"),
        ("s3://bucket/x.zarr", "s3://bucket//x.zarr//"),
        ("s3://bucket/x.zarr", "s3a://bucket/x.zarr"),
        ("s3://bucket/x.zarr", "s3://KEY:SECRET@bucket/x.zarr"),
        ("gs://bucket/x", "gcs://bucket/x/"),
        ("memory://x", "memory:///x/"),
        ("/tmp/a/../x.zarr", "file:///tmp/x.zarr"),
        ("/tmp/x.zarr", "file:///tmp/./x.zarr/"),
    ],
    ids=["trailing-slash", "double-slash", "s3a", "userinfo", "gcs", "memory", "dotdot", "dot"],
)
def test_canonical_spellings_are_equal(a: str, b: str) -> None:
    assert canonical_of_url(a) == canonical_of_url(b)
    assert "SECRET" not in canonical_of_url(b).url


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (("s3", "b/x.zarr"), ("s3", "b/x.zarr"), "same"),
        (("s3", "b/x.zarr"), ("s3", "b/x.zarr/sub.zarr"), "inside"),
        (("s3", "b/x.zarr"), ("s3", "b"), "contains"),
        (("s3", "b/x.zarr"), ("s3", "b/x.zarr2"), None),
        (("s3", "b/x.zarr"), ("gs", "b/x.zarr"), None),
        (("file", "/d/ow2/inner.zarr"), ("file", "/d/ow2"), "contains"),
        (("file", "/d/x.zarr"), ("file", "/"), "contains"),
        (("object", "MemoryStore@1"), ("object", "MemoryStore@2"), None),
        (("object", "MemoryStore@1"), ("object", "MemoryStore@1/a"), "inside"),
    ],
    ids=[
        "same",
        "inside",
        "bucket-root",
        "prefix-sibling",
        "scheme",
        "above",
        "root",
        "objs",
        "node",
    ],
)
def test_overlap_table(a: tuple[str, str], b: tuple[str, str], expected: str | None) -> None:
    assert overlap(Canonical(*a), Canonical(*b)) == expected


def test_canonical_of_local_store_forms(tmp_path: Path) -> None:
    """Path, relative path, file://, symlink, LocalStore and fsspec file store: one name."""
    real = tmp_path / "s.zarr"
    _ones(str(real))
    (tmp_path / "link.zarr").symlink_to(real)
    fsspec_store = zarr.storage.FsspecStore.from_url(f"file://{tmp_path / 'link.zarr'}")
    forms: list[Any] = [
        str(real),
        f"file://{real}",
        str(tmp_path / "link.zarr"),
        zarr.storage.LocalStore(str(tmp_path / "link.zarr")),
        fsspec_store,
        zarr.open_array(f"file://{real}", mode="r"),
    ]
    names = {resolve_location(f).canonical for f in forms}
    assert names == {Canonical("file", str(real.resolve()))}
    mem = zarr.storage.MemoryStore()
    assert canonical_of_store(mem) == canonical_of_store(mem)
    assert canonical_of_store(mem) != canonical_of_store(zarr.storage.MemoryStore())


# --- item 1: rechunk never writes into its source ------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst", "extra"),
    [
        ("ok.zarr", "ok.zarr", ["--overwrite"]),
        ("ow2/inner.zarr", "ow2", ["--overwrite"]),
        ("ok.zarr", "ok.zarr/sub.zarr", []),
        ("ok.zarr", "file://{root}/ok.zarr", ["--overwrite"]),
        ("ok.zarr", "link.zarr", ["--overwrite"]),
        ("ok.zarr", "linkdir/ok.zarr", ["--overwrite"]),
        ("ok.zarr", "out.zarr", ["--temp", "ok.zarr/tmp"]),
        ("ok.zarr", "out.zarr", ["--temp", "out.zarr/tmp"]),
        ("ok.zarr", "out.zarr/dst.zarr", ["--temp", "out.zarr"]),
    ],
    ids=[
        "same",
        "dst-above-src",
        "dst-inside-src",
        "file-url",
        "symlink",
        "symlinked-folder",
        "temp-inside-src",
        "temp-inside-dst",
        "dst-inside-temp",
    ],
)
def test_rechunk_refuses_overlap_before_writing(
    tmp_path: Path, client: Any, src: str, dst: str, extra: list[str]
) -> None:
    _ones(str(tmp_path / src))
    (tmp_path / "link.zarr").symlink_to(tmp_path / "ok.zarr")
    (tmp_path / "linkdir").symlink_to(tmp_path)
    before = _tree_hashes(tmp_path)
    extra = [str(tmp_path / e) if e.endswith(".zarr") or "/" in e else e for e in extra]
    target = dst.format(root=tmp_path) if "://" in dst else str(tmp_path / dst)
    args = ["rechunk", str(tmp_path / src), target, "--chunks", "8,1", "--max-mem", "1KiB"]
    err = _error(_zdu([*args, *extra], client))
    assert err["kind"] == "overlapping-locations", err
    assert "Nothing was written" in err["message"]
    assert _tree_hashes(tmp_path) == before  # every byte of the source unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"link.zarr", "linkdir", src.split("/")[0]}
    )  # nothing created beside it (no target, no temp)
    assert (zarr.open_array(str(tmp_path / src), mode="r")[:] == 1).all()


def test_rechunk_refuses_overlap_of_store_objects(client: Any) -> None:
    """Same MemoryStore object, or an array inside the target group: refused, data kept."""
    store = zarr.storage.MemoryStore()
    group = zarr.open_group(store, mode="w")
    arr = group.create_array("a", shape=(4,), chunks=(1,), dtype="i4", fill_value=0)
    arr[:] = 7
    for target in (store, zarr.open_group(store, path="", mode="r+")):
        with pytest.raises(OverlappingLocationsError, match="contains the source"):
            rechunk_array(arr, (4,), target, overwrite=True, progress=False)
    with pytest.raises(OverlappingLocationsError, match="is the same location"):
        rechunk_array(group, (4,), store, overwrite=True, progress=False)
    assert (arr[:] == 7).all()
    assert sorted(zarr.open_group(store, mode="r").array_keys()) == ["a"]


@pytest.mark.s3
@pytest.mark.parametrize(
    "dst",
    ["s3://{b}/x.zarr", "s3://{b}/x.zarr/", "s3://{b}", "s3://{b}/x.zarr/sub.zarr"],
    ids=["same", "trailing-slash", "bucket-root", "inside"],
)
def test_rechunk_refuses_overlap_on_s3(
    s3_bucket: str, s3_storage_options: dict[str, Any], client: Any, dst: str
) -> None:
    src = f"s3://{s3_bucket}/x.zarr"
    _ones(src, s3_storage_options)
    before = _s3_hashes(s3_bucket, s3_storage_options)
    so = [f"{k}={v}" for k, v in s3_storage_options.items()]
    args = ["rechunk", src, dst.format(b=s3_bucket), "--chunks", "8,1", "--max-mem", "1KiB"]
    args += ["--overwrite", *[f"-o{o}" for o in so], *[f"--dst-storage-option={o}" for o in so]]
    err = _error(_zdu(args, client))
    assert err["kind"] == "overlapping-locations", err
    assert _s3_hashes(s3_bucket, s3_storage_options) == before


def test_overwrite_deletes_only_zarr_keys(tmp_path: Path, client: Any) -> None:
    """--overwrite refuses a folder of user files, or a group with files of its own."""
    _ones(str(tmp_path / "src.zarr"))
    user = tmp_path / "photos"
    user.mkdir()
    (user / "cat.jpg").write_bytes(b"meow")
    base = ["rechunk", str(tmp_path / "src.zarr")]
    opts = ["--chunks", "8,1", "--max-mem", "1KiB", "--overwrite"]
    err = _error(_zdu([*base, str(user), *opts], client))
    assert "Nothing was deleted" in err["message"]
    assert "cat.jpg" in err["message"]
    assert (user / "cat.jpg").read_bytes() == b"meow"
    group = zarr.open_group(str(tmp_path / "grp.zarr"), mode="w")
    group.create_array("old", shape=(2,), dtype="i1")
    (tmp_path / "grp.zarr" / "notes.txt").write_text("mine")
    err = _error(_zdu([*base, str(tmp_path / "grp.zarr"), *opts], client))
    assert "notes.txt" in err["message"]
    assert (tmp_path / "grp.zarr" / "notes.txt").read_text() == "mine"
    (tmp_path / "grp.zarr" / "notes.txt").unlink()  # only Zarr keys left: replaced
    ok = _zdu([*base, str(tmp_path / "grp.zarr"), *opts], client)
    assert ok.exit_code == 0, ok.output
    assert zarr.open_array(str(tmp_path / "grp.zarr"), mode="r").chunks == (8, 1)


def test_foreign_keys_rule() -> None:
    docs = {
        "zarr.json": b'{"node_type": "group"}',
        "t/zarr.json": b'{"node_type": "array"}',
        "g/zarr.json": b'{"node_type": "group"}',
        "v2/.zarray": b"{}",
        "bad/zarr.json": b"{not json",
    }
    arrays = array_folders(docs)
    assert arrays == {"t", "v2"}
    keys = [*docs, "t/c/0/0", "v2/0.0", "g/readme.md", "bad/c/0", ".zdu/backups/x", "a.txt"]
    assert foreign_keys(keys, arrays) == ["g/readme.md", "bad/c/0", "a.txt"]
    assert foreign_keys(["anything"], {""}) == []


# --- item 3: lock names follow the storage location, not the way it was opened ------------------


def test_lock_names_equal_across_store_forms(tmp_path: Path) -> None:
    real = tmp_path / "data.zarr"
    _ones(str(real))
    (tmp_path / "link.zarr").symlink_to(real)
    stores: list[Any] = [
        zarr.storage.LocalStore(str(real)),
        zarr.open_array(f"file://{real}", mode="r+").store_path.store,
        zarr.storage.FsspecStore.from_url(f"file://{tmp_path}/link.zarr"),
        zarr.storage.LocalStore(str(tmp_path / "link.zarr")),
        zarr.open_array(str(real), mode="r+").store_path.store,
    ]
    names = {lock_names(SafeZarrStore(s, cluster=False).url, ["c/0/0"]) for s in stores}
    assert names == {(f"zdu-lock/{real.resolve()}/c/0/0",)}


@pytest.mark.s3
def test_lock_names_equal_for_s3_spellings(s3_bucket: str, s3_storage_options: dict) -> None:
    urls = [f"s3://{s3_bucket}/d.zarr", f"s3://{s3_bucket}/d.zarr/", f"s3a://{s3_bucket}/d.zarr"]
    stores = [
        zarr.storage.FsspecStore.from_url(u, storage_options=s3_storage_options) for u in urls
    ]
    assert {SafeZarrStore(s, cluster=False).url for s in stores} == {f"s3://{s3_bucket}/d.zarr"}


@pytest.mark.cluster
def test_mixed_store_forms_lose_no_update(tmp_path: Path, client: Any) -> None:
    """Worker processes write one row each through different forms of one store, at once.

    Every writer's read→write window is widened (a pause after each read).  With one lock
    name per location the writers exclude each other, so every region is written at the
    first attempt; with a name per form they overlap, and only the fence's retries (or
    failures: a reader seeing fsspec's in-place write half done) kept the updates.
    """
    real = tmp_path / "data.zarr"
    arr = zarr.create_array(str(real), shape=(4, 24), chunks=(4, 8), dtype="i4", fill_value=0)
    # every chunk exists: fsspec's file store cannot create chunk folders (auto_mkdir=False)
    arr[:] = -1
    (tmp_path / "link.zarr").symlink_to(real)
    forms = [
        zarr.open_array(zarr.storage.LocalStore(str(real)), mode="r+"),
        zarr.open_array(f"file://{real}", mode="r+"),
        zarr.open_array(zarr.storage.LocalStore(str(tmp_path / "link.zarr")), mode="r+"),
        zarr.open_array(f"file://{tmp_path}/link.zarr", mode="r+"),
    ]
    pause = {"action": "pause", "seconds": 0.05}
    for rnd in range(2):
        futures = [
            client.submit(
                write_synchronized,
                arr,
                [(slice(i, i + 1), slice(c, c + 6)) for c in range(0, 24, 6)],
                10 * rnd + i + 1,
                pause,
                "60s",
                pure=False,
            )
            for i, arr in enumerate(forms)
        ]
        attempts = client.gather(futures)  # no failure: no FileNotFoundError, no decode error
        assert attempts == [4] * 4  # the locks excluded each other: no fence had to retry
        expected = np.array([[10 * rnd + i + 1] * 24 for i in range(4)], "i4")
        np.testing.assert_array_equal(zarr.open_array(str(real), mode="r")[:], expected)


# --- item 7: outputs are probed before the work ------------------------------------------------


def test_manifest_output_inside_store_is_refused(tmp_path: Path, client: Any) -> None:
    _ones(str(tmp_path / "s.zarr"))
    before = _tree_hashes(tmp_path)
    err = _error(
        _zdu(
            ["manifest", "create", str(tmp_path / "s.zarr"), str(tmp_path / "s.zarr/m.json")],
            client,
        )
    )
    assert err["kind"] == "overlapping-locations"
    assert _tree_hashes(tmp_path) == before


def test_manifest_unwritable_output_fails_before_reading(tmp_path: Path) -> None:
    """A missing output folder: refused before the first request to the store."""
    _ones(str(tmp_path / "s.zarr"))
    counting = CountingStore(zarr.storage.LocalStore(str(tmp_path / "s.zarr"), read_only=True))
    with pytest.raises(OutputNotWritableError, match="no/such/folder") as info:
        create_manifest(counting, tmp_path / "no/such/folder/m.json", progress=False)
    assert counting.gets == 0  # not one key of the store was read
    assert info.value.kind == "output-not-writable"
    assert "nothing was read or changed" in str(info.value)
    assert not (tmp_path / "no").exists()


@pytest.mark.s3
def test_manifest_to_s3_output_options_and_missing_bucket(
    tmp_path: Path, s3_bucket: str, s3_storage_options: dict[str, Any], client: Any
) -> None:
    _ones(str(tmp_path / "s.zarr"))
    so = [f"--output-storage-option={k}={v}" for k, v in s3_storage_options.items()]
    out = f"s3://{s3_bucket}/m/m.json"
    ok = _zdu(["manifest", "create", str(tmp_path / "s.zarr"), out, *so], client)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["output"] == out
    assert sorted(_s3_hashes(s3_bucket, s3_storage_options)) == [f"{s3_bucket}/m/m.json"]
    missing = f"s3://nobucket-{s3_bucket}/m.json"
    err = _error(_zdu(["manifest", "create", str(tmp_path / "s.zarr"), missing, *so], client))
    assert err["kind"] == "output-not-writable"
    assert f"nobucket-{s3_bucket}" in err["message"]
    assert "Create the bucket" in err["message"]


@pytest.mark.s3
@pytest.mark.parametrize("which", ["dst", "temp"])
def test_rechunk_unwritable_target_or_temp_fails_first(
    tmp_path: Path, s3_bucket: str, s3_storage_options: dict[str, Any], client: Any, which: str
) -> None:
    _ones(str(tmp_path / "s.zarr"))
    missing = f"s3://nobucket-{s3_bucket}/x.zarr"
    dst = missing if which == "dst" else str(tmp_path / "out.zarr")
    args = ["rechunk", str(tmp_path / "s.zarr"), dst, "--chunks", "8,1", "--max-mem", "1KiB"]
    if which == "temp":
        args += ["--temp", missing]
    so = [f"--{which}-storage-option={k}={v}" for k, v in s3_storage_options.items()]
    err = _error(_zdu([*args, *so], client))
    assert err["kind"] == "output-not-writable", err
    assert not (tmp_path / "out.zarr").exists()  # the probe of DST left nothing behind


def test_store_probe_leaves_no_trace(tmp_path: Path) -> None:
    """The probe of a new local target removes the folders it had to create."""
    probe_store_writable(resolve_location(tmp_path / "a/b/out.zarr", read_only=False))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "plain").write_text("a file, not a folder")
    where = resolve_location(tmp_path / "plain/x.zarr", read_only=False)
    with pytest.raises(OutputNotWritableError, match="temp store") as info:
        probe_store_writable(where, what="temp store")
    assert "nothing was read or changed" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_html_report_to_missing_folder_fails_before_work(tmp_path: Path, client: Any) -> None:
    _ones(str(tmp_path / "s.zarr"))
    html = tmp_path / "missing" / "r.html"
    err = _error(_zdu(["info", str(tmp_path / "s.zarr"), "--html", str(html)], client))
    assert err["kind"] == "output-not-writable"
    assert "HTML report" in err["message"]


# === Issue 10, items 5 (group part), 6, 8 (rechunk part): rechunk requests, resume, messages ===
# A chunk request that fits no array of a group is refused (exit 2, nothing written) instead
# of an OK that changed nothing; every engine marks finished blocks, so a rerun after a real
# SIGKILL skips them (P2P: the shuffle reads the source again, and the report says so); an
# unparsable metadata document is named with its store; a rechunked target carries no backup
# of the root document rechunk itself wrote.


def _group_with_coords(path: Path) -> dict[str, np.ndarray]:
    """A group like xarray writes: ``t2m`` (time, lat, lon) and 1-d coordinates."""
    root = zarr.create_group(str(path))
    data = {
        "t2m": np.arange(6 * 4 * 5, dtype="f4").reshape(6, 4, 5),
        "time": np.arange(6, dtype="i8"),
        "lat": np.linspace(-90, 90, 4),
    }
    dims = {"t2m": ("time", "lat", "lon"), "time": ("time",), "lat": ("lat",)}
    for name, values in data.items():
        arr = root.create_array(
            name,
            shape=values.shape,
            chunks=(1,) * values.ndim,
            dtype=values.dtype,
            dimension_names=dims[name],
        )
        arr[:] = values
    return data


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("chunks", "names"),
    [("3,2", ["/t2m (3 axes)", "/time (1 axes)"]), ("tmie=3", ["tmie", "time"])],
    ids=["arity", "unknown-dimension"],
)
def test_group_chunks_fitting_no_array_are_refused(
    tmp_path: Path, client: Any, chunks: str, names: list[str]
) -> None:
    _group_with_coords(tmp_path / "g.zarr")
    before = _tree_hashes(tmp_path / "g.zarr")
    out = tmp_path / "out.zarr"
    args = ["rechunk", str(tmp_path / "g.zarr"), str(out), "--chunks", chunks, "--max-mem", "1MiB"]
    err = _error(_zdu(args, client))
    assert err["kind"] == "invalid-option", err
    for name in names:
        assert name in err["message"], err
    assert not out.exists()  # nothing written
    assert _tree_hashes(tmp_path / "g.zarr") == before


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"t2m": (3, 2)}, r"/t2m have 2 size\(s\) but the array has 3 axes"),
        ({"nope": (3,)}, "name array"),
        ({"t2m": {"tmie": 3}}, "of /t2m name dimension"),
    ],
    ids=["per-array-arity", "unknown-array", "per-array-unknown-dimension"],
)
def test_group_per_array_requests_are_checked(tmp_path: Path, spec: Any, match: str) -> None:
    from zarr_dask_utils import InvalidOptionError

    _group_with_coords(tmp_path / "g.zarr")
    with pytest.raises(InvalidOptionError, match=match):
        rechunk_array(str(tmp_path / "g.zarr"), spec, str(tmp_path / "out.zarr"), progress=False)
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.cluster
def test_group_report_names_the_arrays_the_request_applies_to(tmp_path: Path, client: Any) -> None:
    data = _group_with_coords(tmp_path / "g.zarr")
    out = str(tmp_path / "out.zarr")
    args = ["rechunk", str(tmp_path / "g.zarr"), out, "--chunks", "6,2,5", "--max-mem", "1MiB"]
    result = _zdu(args, client)
    assert result.exit_code == 0, result.output
    arrays = {a["path"]: a for a in json.loads(result.stdout)["arrays"]}
    assert arrays["t2m"]["chunks_requested"]
    assert arrays["t2m"]["target_chunks"] == [6, 2, 5]
    assert not arrays["time"]["chunks_requested"]
    assert arrays["time"]["target_chunks"] == [1]
    for name, values in data.items():
        np.testing.assert_array_equal(zarr.open_array(out, path=name)[:], values)


def _kill_after_markers(args: list[str], target: Path, at_least: int = 3) -> int:
    """Run ``zdu`` in its own process group; SIGKILL the group once blocks are marked done."""
    import signal
    import subprocess
    import sys
    import time

    zdu = str(Path(sys.executable).with_name("zdu"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    proc = subprocess.Popen(
        [zdu, *args],
        start_new_session=True,  # the embedded cluster's workers share the process group
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    done = target / ".zdu-rechunk" / "done"

    def finished() -> int:  # zarr's LocalStore writes "<key>.<uuid>.partial" first, then renames
        return sum(not n.endswith(".partial") for _, _, f in os.walk(done) for n in f)

    try:
        while proc.poll() is None:
            if done.exists() and finished() >= at_least:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:  # a failed assertion or an interrupt above: leave nothing behind
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"zdu ended before the kill ({proc.returncode})"
    return finished()


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize(
    ("engine", "chunks", "method"),
    [("rechunker", "1,200", "rechunker"), ("auto", "400,1", "p2p")],
    ids=["rechunker", "auto-p2p"],
)
def test_rechunk_killed_for_real_resumes_from_its_markers(
    tmp_path: Path, client: Any, engine: str, chunks: str, method: str
) -> None:
    src, out = tmp_path / "src.zarr", tmp_path / "out.zarr"
    arr = zarr.create_array(str(src), shape=(400, 400), chunks=(1, 400), dtype="f8")
    data = np.arange(400 * 400, dtype="f8").reshape(400, 400) + 0.5
    arr[:] = data
    before = _tree_hashes(src)
    args = ["rechunk", str(src), str(out), "--chunks", chunks, "--max-mem", "8KiB"]
    args += ["--engine", engine, "--json", "--no-progress"]
    marked = _kill_after_markers(args, out)
    assert marked >= 3
    assert (out / ".zdu-rechunk" / "partial.json").exists()
    assert not (out / "zarr.json").exists()  # the killed run left no openable array
    result = _zdu(args[:-2], client)  # the same command again, on the session cluster
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"] == method, report["method_reason"]
    assert report["resumed"]
    assert report["blocks_skipped"] == marked  # every marked block, and only those
    blocks = report["blocks_written"] + marked  # equal blocks: bytes follow the counts
    assert report["bytes_written"] == data.nbytes * report["blocks_written"] // blocks
    assert report["source_reread"] is (method == "p2p")
    result = np.asarray(zarr.open_array(str(out), mode="r")[:])
    assert result.dtype == data.dtype
    assert np.array_equal(result, data)
    assert not (out / ".zdu-rechunk").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]  # no litter of the kill
    assert _tree_hashes(src) == before


def test_resumed_report_says_what_was_skipped_and_what_was_read_again() -> None:
    from zarr_dask_utils.optimize.reports import RechunkReport

    common = {"location": "s", "engine": "e", "target": "t", "method_reason": "r"}
    p2p = RechunkReport(method="p2p", resumed=True, blocks_skipped=7, source_reread=True, **common)
    assert "7 block(s) it had finished were not written again" in str(p2p)
    assert "the p2p rechunk read the whole source again" in str(p2p)
    fresh = RechunkReport(method="rechunker", resumed=True, **common)
    assert "it had finished no block, so every block was written" in str(fresh)


@pytest.mark.cluster
@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_rechunk_names_the_document_that_is_not_json(
    tmp_path: Path, client: Any, request: pytest.FixtureRequest, where: str
) -> None:
    from zarr_dask_utils import open_store

    options: dict[str, Any] | None = None
    if where == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        options = dict(request.getfixturevalue("s3_storage_options"))
        src, dst = f"s3://{bucket}/g.zarr", f"s3://{bucket}/out.zarr"
    else:
        src, dst = str(tmp_path / "g.zarr"), str(tmp_path / "out.zarr")
    store = open_store(src, storage_options=options, read_only=False)
    root = zarr.create_group(store)
    root.create_array("a", shape=(4, 4), chunks=(2, 2), dtype="i4")[:] = 1
    root.create_array("sub/b", shape=(4,), chunks=(2,), dtype="i4")[:] = 2
    from zarr_dask_utils.testing import corrupt

    corrupt.write_bytes(
        src, "sub/b/zarr.json", b'{"zarr_format": 3, broken', storage_options=options
    )
    so = [f"{k}={v}" for k, v in (options or {}).items()]
    args = ["rechunk", src, dst, "--chunks", "4,4", "--max-mem", "1MiB"]
    args += [*[f"-o{o}" for o in so], *[f"--dst-storage-option={o}" for o in so]]
    err = _error(_zdu(args, client))
    assert err["kind"] == "metadata-json-invalid", err
    assert f"{src}/sub/b/zarr.json" in err["message"], err
    assert "not valid JSON" in err["message"]
    if where == "local":
        assert not (tmp_path / "out.zarr").exists()


@pytest.mark.cluster
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_rechunked_consolidated_target_has_no_backup_of_its_own_root(
    tmp_path: Path, client: Any, zarr_format: int
) -> None:
    from zarr_dask_utils import consolidate_metadata
    from zarr_dask_utils._core.config import get_option

    src, out = tmp_path / "src.zarr", tmp_path / "out.zarr"
    root = zarr.open_group(str(src), mode="w", zarr_format=zarr_format)
    root.create_array("x", shape=(12, 8), chunks=(1, 8), dtype="f4")[:] = 1.0
    zarr.consolidate_metadata(str(src))
    report = rechunk_array(
        str(src), (12, 4), str(out), max_mem="1MiB", client=client, progress=False
    )
    assert report.consolidated
    prefix = str(get_option("metadata.backup-prefix"))
    assert not (out / prefix).exists(), sorted(str(p) for p in (out / prefix).rglob("*"))
    assert not (tmp_path / "out.zarr.zdu-backups").exists()
    assert zarr.open_group(str(out), mode="r", use_consolidated=True)["x"].chunks == (12, 4)
    # consolidating someone's existing store still backs up the document it replaces
    root.create_array("y", shape=(2,), dtype="i1")
    again = consolidate_metadata(str(src), client=client, progress=False)
    assert again.backup is not None
    assert Path(again.backup).exists()  # beside the store: src.zarr.zdu-backups/<stamp>/…
    assert Path(again.backup).is_relative_to(tmp_path / "src.zarr.zdu-backups")


# === Issue 10, items 2 and 8: no secret leaves zdu; messages in the caller's words ============
# A secret planted in the URL, in -o, in the environment and in the Dask config never appears
# in stdout, stderr, --json, --debug tracebacks, -vv logs, reports or any file written (local
# and S3).  CLI messages name flags (--overwrite), library messages keyword arguments; a local
# permission error talks about file permissions, never about AWS credentials.
# (Imports are local to this section: the file is shared and grows by appending.)


def _secret(name: str) -> str:
    from uuid import uuid4

    return f"zdu{name}{uuid4().hex[:10]}"


@pytest.mark.parametrize(
    ("url", "shown", "userinfo"),
    [
        ("s3://KEY:SECRET@bucket/x.zarr", "s3://***@bucket/x.zarr", "KEY:SECRET"),
        ("s3://KEY:ab/cd+ef@bucket/x", "s3://***@bucket/x", "KEY:ab/cd+ef"),
        ("s3://KEY:12/cd@bucket/x", "s3://***@bucket/x", "KEY:12/cd"),
        ("s3://KEY@bucket/x", "s3://***@bucket/x", "KEY"),
        ("http://u:p@host:80/x", "http://***@host:80/x", "u:p"),
        ("http://host:8080/a@b", "http://host:8080/a@b", None),
        ("s3://bucket/a:b@c", "s3://bucket/a:b@c", None),
        ("s3://bucket/data@v1.zarr", "s3://bucket/data@v1.zarr", None),
        ("/local/a:b@c.zarr", "/local/a:b@c.zarr", None),
    ],
    ids=[
        "key-secret",
        "secret-with-slash",
        "secret-digits-slash",
        "object-store-user",
        "http-password",
        "http-port-path-at",
        "s3-path-colon-at",
        "s3-path-at",
        "local-path",
    ],
)
def test_url_credentials_table(url: str, shown: str, userinfo: str | None) -> None:
    from zarr_dask_utils._core.storage.locations import redact, url_credentials

    assert redact(url) == shown
    assert url_credentials(url) == userinfo
    assert redact(f"failed on {url} twice: {url}") == f"failed on {shown} twice: {shown}"


@pytest.mark.parametrize(
    "url",
    ["s3://KEY:{s}@bucket/x.zarr", "s3://KEY:ab/{s}@bucket/x.zarr", "https://user:{s}@host/x"],
    ids=["s3", "s3-slash", "https"],
)
def test_credentials_in_url_are_refused_up_front(url: str) -> None:
    from zarr_dask_utils import InvalidOptionError

    secret = _secret("url")
    with pytest.raises(InvalidOptionError) as info:
        resolve_location(url.format(s=secret))
    message = str(info.value)
    assert secret not in message
    assert "***@" in message
    assert "-o key=... -o secret=..." in message
    assert "storage_options" in message


def test_user_name_alone_is_an_address_not_a_secret() -> None:
    assert resolve_location("sftp://user@host/data.zarr").url == "sftp://user@host/data.zarr"


def test_redactor_hides_options_environment_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import dask

    from zarr_dask_utils._core.storage.redaction import Redactor

    env, cfg, opt, nested = (_secret(n) for n in ("env", "cfg", "opt", "nested"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env)
    with dask.config.set({"zarr-dask-utils-test": {"storage-options": {"secret-key": cfg}}}):
        redactor = Redactor.from_environment()
    redactor.add_options({"secret": opt, "client_kwargs": {"aws_session_token": nested}})
    text = f"{env} {cfg} {opt} {nested} s3://a:{opt}@b endpoint_url anon"
    assert redactor(text) == "*** *** *** *** s3://***@b endpoint_url anon"
    assert redactor.data({"m": [text], "n": 3}) == {"m": [redactor(text)], "n": 3}


def test_logging_filter_redacts_message_arguments_and_traceback() -> None:
    import logging

    from zarr_dask_utils._core.storage.redaction import RedactingFilter, Redactor

    secret = _secret("log")
    try:
        raise ValueError(f"Invalid bucket name 'KEY:{secret}@bucket'")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "got %s", (secret,), exc_info)
    RedactingFilter(Redactor([secret])).filter(record)
    text = logging.Formatter().format(record)
    assert secret not in text
    assert "got ***" in text
    assert "ValueError" in text


@pytest.mark.s3
@pytest.mark.slow
def test_planted_secrets_never_leave_zdu(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path, client: Any
) -> None:
    """Secrets in the URL, -o, the environment and the Dask config; every channel grepped."""
    import s3fs

    from zarr_dask_utils.testing.builders import build_sample_hierarchy

    url_secret, opt_secret, opt_key, env_secret, cfg_secret, ep_secret = (
        _secret(n) for n in ("url", "opt", "key", "env", "cfg", "endpoint")
    )
    secrets = (url_secret, opt_secret, opt_key, env_secret, cfg_secret, ep_secret)
    options = {"key": "testing", "secret": "testing", "endpoint_url": s3_endpoint}
    store = f"s3://{s3_bucket}/store.zarr"
    build_sample_hierarchy(store, storage_options=options)
    config_dir = tmp_path / "dask-config"
    config_dir.mkdir()
    (config_dir / "secrets.yaml").write_text(
        json.dumps({"zarr-dask-utils-test": {"storage-options": {"secret": cfg_secret}}})
    )
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": env_secret, "DASK_CONFIG": str(config_dir)}
    env["DASK_ZARR_DASK_UTILS__CLUSTER__DASHBOARD_ADDRESS"] = "127.0.0.1:0"
    so = ["-o", f"key={opt_key}", "-o", f"secret={opt_secret}", "-o", f"endpoint_url={s3_endpoint}"]
    host = s3_endpoint.removeprefix("http://")
    so_ep = ["-o", f"key={opt_key}", "-o", f"secret={opt_secret}"]
    so_ep += ["-o", f"endpoint_url=http://user:{ep_secret}@{host}"]
    sched = ["--scheduler", client.scheduler.address]
    html = tmp_path / "report.html"
    runs = [
        # credentials in the URL: refused, with the text redacted everywhere
        (["info", f"s3://AKIA:{url_secret}@{s3_bucket}/store.zarr", "--json"], 2),
        (["--debug", "-vv", "info", f"s3://AKIA:ab/{url_secret}@{s3_bucket}/x.zarr"], 2),
        (["-vv", "validate", f"s3://AKIA:{url_secret}@{s3_bucket}/store.zarr", *so], 2),
        # secrets in -o / env / config, on working and failing commands, every output form
        (["--debug", "-vv", "info", store, *so, "--json", "--html", str(html), *sched], 0),
        (["--debug", "-vv", "check", store, "--deep", *so, *sched], 0),
        (["--debug", "-vv", "validate", f"s3://nobucket-{s3_bucket}/x.zarr", *so, "--json"], 2),
        (["--debug", "-vv", "consolidate", store, *so, "--json", *sched], 0),
        (["--debug", "-vv", "info", store, *so_ep, "--json", *sched], None),
    ]
    for args, code in runs:
        out = run_zdu(*args, subprocess=True, env=env)
        if code is not None:
            assert out.returncode == code, (args, out.stdout, out.stderr)
        for secret in secrets:
            assert secret not in out.stdout, (args, secret, out.stdout)
            assert secret not in out.stderr, (args, secret, out.stderr)
        if "--json" in args and out.stdout.strip():
            json.loads(out.stdout)  # redaction keeps the document valid
    assert html.exists()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != config_dir]
    for path in written:
        text = path.read_bytes().decode(errors="replace")
        assert not any(s in text for s in secrets), path
    fs = s3fs.S3FileSystem(**options)
    for key in fs.find(s3_bucket):
        body = fs.cat(key).decode(errors="replace")
        assert not any(s in body for s in secrets), key


def test_overwrite_message_names_the_flag_on_the_cli(tmp_path: Path, client: Any) -> None:
    src = _ones(tmp_path / "src.zarr")
    other = _ones(tmp_path / "other.zarr")
    args = ["rechunk", str(tmp_path / "src.zarr"), str(tmp_path / "other.zarr")]
    args += ["--chunks", "2,2", "--max-mem", "1MiB", "--json"]
    result = run_zdu(*args, scheduler=client)
    assert result.exit_code == 2, result.output
    message = json.loads(result.stdout)["error"]["message"]
    assert "--overwrite" in message
    assert "overwrite=True" not in message
    with pytest.raises(ValueError, match=r"overwrite=True") as info:
        rechunk_array(src, (2, 2), other, max_mem="1MiB", client=client, progress=False)
    assert "--overwrite" not in str(info.value)


def test_local_permission_error_is_not_about_aws(tmp_path: Path, client: Any) -> None:
    from zarr_dask_utils.testing.builders import build_sample_hierarchy
    from zarr_dask_utils.testing.permissions import unwritable

    store = tmp_path / "ro.zarr"
    build_sample_hierarchy(str(store), consolidated=False)  # so consolidate must write
    args = ["consolidate", str(store), "--json", "--scheduler", client.scheduler.address]
    with unwritable(store):
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    text = json.dumps(error) + result.stderr
    assert error["kind"] == "access-denied"
    assert "ermission" in error["message"]
    for word in ("AWS", "credential", "key/secret", "bucket"):
        assert word not in text, text


def test_local_permission_error_is_explained_as_local(tmp_path: Path) -> None:
    from zarr_dask_utils import explain_zarr_error
    from zarr_dask_utils.testing.permissions import unwritable

    with unwritable(tmp_path), pytest.raises(PermissionError) as info:
        zarr.open_group(tmp_path / "new.zarr", mode="w")
    explanation = explain_zarr_error(info.value)
    assert explanation.kind == "local-permission-denied"
    assert "AWS" not in str(explanation)
    assert "credential" not in str(explanation)


# === Issue 10, items 4, 5 (and 8: the path in "Nothing exists at …"): crashes on bad input, ====
# wrong "OK", nodes that cannot be read.  Deeply nested documents are json-invalid findings (also
# at 50 MiB); symbolic link loops inside a store are findings (validate, info) or a clear
# store-unreadable error (check, doctor), a store path that loops is a bad-input error; info and
# analyze report every node zarr cannot read; an unreadable folder is a finding, also as root
# (the case runs with the effective user "nobody", where permission bits really apply).

_QUIET_CLUSTER = {
    "DASK_ZARR_DASK_UTILS__CLUSTER__N_WORKERS": "1",
    "DASK_ZARR_DASK_UTILS__CLUSTER__DASHBOARD_ADDRESS": "127.0.0.1:0",
}


def _zdu_run(args: list[str], *, expect: int) -> dict[str, Any]:
    """Run ``python -m zarr_dask_utils ARGS --json`` (embedded cluster); return its JSON.

    The worker processes share the command's stderr, so a worker traceback would show here.
    """
    out = run_zdu(
        *args, "--json", "--no-progress", subprocess=True, env=_QUIET_CLUSTER, timeout=300
    )
    assert out.returncode == expect, (args, out.stdout[-2000:], out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr
    assert "unexpected" not in out.stderr, out.stderr
    assert "Compute Failed" not in out.stderr, out.stderr
    return json.loads(out.stdout)


def _codes(report: Any) -> set[str]:
    findings = report["findings"] if isinstance(report, dict) else report.findings
    return {f["code"] if isinstance(f, dict) else f.code for f in findings}


def _doc_key(path: str, zarr_format: int) -> str:
    return f"{path}/zarr.json" if zarr_format == 3 else f"{path}/.zarray"


@pytest.mark.parametrize("store_case", ["v2-local", "v3-local", "v3-s3"], indirect=True)
def test_nested_brackets_are_json_invalid_everywhere(sample: Any, client: Any) -> None:
    from zarr_dask_utils import (
        check_data_integrity,
        diagnose_zarr_store,
        validate_metadata,
        walk_hierarchy,
    )
    from zarr_dask_utils.testing import hostile

    key = _doc_key("climate/t2m", sample.zarr_format)
    hostile.nest_brackets(sample.url, key, storage_options=sample.storage_options)
    so, kw = sample.storage_options, {"client": client, "progress": False}
    for operation in (validate_metadata, walk_hierarchy, check_data_integrity, diagnose_zarr_store):
        report = operation(sample.url, storage_options=so, **kw)
        assert not report.ok, operation.__name__
        assert key in {f.location for f in report.findings_with("json-invalid")}, report


def test_50mib_nested_document_is_json_invalid(tmp_path: Path, client: Any) -> None:
    from zarr_dask_utils import validate_metadata, walk_hierarchy
    from zarr_dask_utils._core.pure.keys import parse_document
    from zarr_dask_utils.testing import build_sample_hierarchy, hostile

    store = str(tmp_path / "big.zarr")
    build_sample_hierarchy(store)
    hostile.nest_brackets(store, "time/zarr.json", nbytes=50 * 2**20)
    assert parse_document((tmp_path / "big.zarr/time/zarr.json").read_bytes())[0] is None
    for operation in (validate_metadata, walk_hierarchy):
        report = operation(store, client=client, progress=False)
        finding = report.findings_with("json-invalid")[0]
        assert finding.location == "time/zarr.json"
        assert "nested too deeply" in finding.message


@pytest.mark.slow
def test_nested_brackets_on_the_command_line(tmp_path: Path) -> None:
    from zarr_dask_utils.testing import build_sample_hierarchy, hostile

    store = str(tmp_path / "nested.zarr")
    build_sample_hierarchy(store, zarr_format=2)
    hostile.nest_brackets(store, "climate/precip/.zarray")
    for command in ("validate", "info", "check"):
        report = _zdu_run([command, store], expect=1)
        assert "json-invalid" in _codes(report), command


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_symlink_loop_inside_a_store_is_named(
    tmp_path: Path, client: Any, zarr_format: int
) -> None:
    from zarr_dask_utils import (
        StoreUnreadableError,
        check_data_integrity,
        validate_metadata,
        walk_hierarchy,
    )
    from zarr_dask_utils.testing import build_sample_hierarchy, hostile

    store = tmp_path / "loops.zarr"
    build_sample_hierarchy(str(store), zarr_format=zarr_format)
    hostile.link_loop(store / "climate" / "t2m", "junk")
    (store / "climate" / "up").symlink_to("..")  # a link to a parent folder: never followed
    for operation in (validate_metadata, walk_hierarchy):
        report = operation(store, client=client, progress=False)
        where = {f.location for f in report.findings_with("object-unreadable")}
        assert where == {"climate/t2m/junk", "climate/t2m/junk.2"}, report
        assert "symbolic link loop" in report.findings_with("object-unreadable")[0].message
        assert not report.ok
    with pytest.raises(StoreUnreadableError, match=r"climate/t2m/junk.*symbolic link loop"):
        check_data_integrity(store, client=client, progress=False)


@pytest.mark.slow
def test_symlink_loop_inside_a_store_on_the_command_line(tmp_path: Path) -> None:
    from zarr_dask_utils.testing import build_sample_hierarchy, hostile

    store = tmp_path / "loops.zarr"
    build_sample_hierarchy(str(store))
    hostile.link_loop(store, "loop")
    report = _zdu_run(["validate", str(store)], expect=1)
    assert "object-unreadable" in _codes(report)
    error = _zdu_run(["check", str(store)], expect=2)["error"]  # no worker traceback either
    assert error["kind"] == "store-unreadable"
    assert f"{store}/loop" in error["message"]


def test_store_path_that_loops_is_bad_input(tmp_path: Path) -> None:
    from zarr_dask_utils import StoreUnreadableError, walk_hierarchy
    from zarr_dask_utils.testing import hostile

    link = hostile.self_loop(tmp_path / "self.zarr")
    for target in (link, link / "inner.zarr", f"file://{link}"):
        with pytest.raises(StoreUnreadableError, match="symbolic link loop") as info:
            walk_hierarchy(target, progress=False)
        assert isinstance(info.value, OSError)
        assert str(link) in str(info.value)
    error = _zdu_run(["info", str(link)], expect=2)["error"]
    assert error["kind"] == "store-unreadable"
    assert str(link) in error["message"]


def _damage(case: Any, damage: str) -> tuple[str, str]:
    """Damage the sample hierarchy; return the document key and the expected finding code."""
    from zarr_dask_utils.testing import corrupt, hostile

    so, fmt = case.storage_options, case.zarr_format
    key = _doc_key("climate/t2m", fmt)
    if damage == "garbage":
        corrupt.write_bytes(case.url, key, b"garbage{", storage_options=so)
        return key, "json-invalid"
    if damage == "empty-root":
        root = "zarr.json" if fmt == 3 else ".zgroup"
        hostile.empty_document(case.url, root, storage_options=so)
        return root, "json-invalid"
    if damage == "dtype":
        field = "data_type" if fmt == 3 else "dtype"
        corrupt.edit_document(case.url, key, set={field: "float128x"}, storage_options=so)
        return key, "dtype-invalid"
    corrupt.edit_document(case.url, key, set={"shape": [-200, 16, 16]}, storage_options=so)
    return key, "shape-invalid"


@pytest.mark.parametrize("damage", ["garbage", "empty-root", "dtype", "negative-shape"])
@pytest.mark.parametrize("store_case", ["v2-local", "v3-local", "v3-s3"], indirect=True)
def test_info_never_says_ok_for_a_node_zarr_cannot_read(
    sample: Any, client: Any, damage: str
) -> None:
    from zarr_dask_utils import validate_metadata, walk_hierarchy

    key, code = _damage(sample, damage)
    kw = {"storage_options": sample.storage_options, "client": client, "progress": False}
    report = walk_hierarchy(sample.url, **kw)
    assert not report.ok
    assert key in {f.location for f in report.findings_with(code)}, report
    assert "OK" not in str(report).splitlines()[0]
    assert code in _codes(validate_metadata(sample.url, **kw))


@pytest.mark.slow
def test_info_exits_1_for_unreadable_nodes(tmp_path: Path) -> None:
    from zarr_dask_utils.testing import build_sample_hierarchy, corrupt, hostile

    store = str(tmp_path / "bad.zarr")
    build_sample_hierarchy(store)
    hostile.empty_document(store, "zarr.json")
    corrupt.write_bytes(store, "time/zarr.json", b"garbage{")
    corrupt.edit_document(store, "climate/t2m/zarr.json", set={"data_type": "float128x"})
    report = _zdu_run(["info", store], expect=1)
    assert {"json-invalid", "dtype-invalid"} <= _codes(report)
    assert report["ok"] is False
    by_key = {f["location"]: f["code"] for f in report["findings"]}
    assert by_key["zarr.json"] == by_key["time/zarr.json"] == "json-invalid"


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_analyze_refuses_a_negative_shape(tmp_path: Path, client: Any, zarr_format: int) -> None:
    import re

    from zarr_dask_utils import analyze_chunks
    from zarr_dask_utils.testing import build_sample_hierarchy, corrupt

    store = str(tmp_path / "neg.zarr")
    build_sample_hierarchy(store, zarr_format=zarr_format)
    key = _doc_key("time", zarr_format)
    corrupt.edit_document(store, key, set={"shape": [-200]})
    report = analyze_chunks(store, client=client, progress=False)
    assert [f.location for f in report.findings_with("shape-invalid")] == [key]
    assert "time" not in {row["path"] for row in report.arrays}  # no costs, no advice
    assert not re.search(r"\s-\d+ B", str(report))  # no "-800 B needed"
    assert not report.ok


@pytest.mark.slow
def test_analyze_negative_shape_on_the_command_line(tmp_path: Path) -> None:
    import zarr as _zarr

    from zarr_dask_utils.testing import corrupt

    store = str(tmp_path / "neg.zarr")
    _zarr.create_array(store, shape=(200,), chunks=(10,), dtype="f4")
    corrupt.edit_document(store, "zarr.json", set={"shape": [-200]})
    report = _zdu_run(["analyze", store], expect=1)
    assert "shape-invalid" in _codes(report)
    assert report["arrays"] == []


_AS_NOBODY = r"""
import json, os, sys
from distributed import Client, LocalCluster
from zarr_dask_utils import validate_metadata, walk_hierarchy
from zarr_dask_utils.cli.main import cli

folder = sys.argv[1]
# threads, so the tasks run with this process's effective user
with LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                  dashboard_address=None) as cluster, Client(cluster):
    validate_metadata(f"{folder}/warm.zarr", progress=False)  # imports done as root
    as_root = os.geteuid() == 0  # root ignores chmod 000: check as "nobody" instead
    if as_root:
        os.seteuid(65534)  # from here on the kernel checks permissions as "nobody"
    try:
        results = {}
        for name, op in (("validate", validate_metadata), ("info", walk_hierarchy)):
            report = op(f"{folder}/s.zarr", progress=False)
            results[name] = [[f.code, f.location, f.message] for f in report.findings]
        print(json.dumps(results))
        try:
            cli(["validate", f"{folder}/s.zarr", "--json", "--no-progress"])
        except SystemExit as exit:
            print("EXIT", exit.code)
    finally:
        if as_root:
            os.seteuid(0)
"""


@pytest.mark.slow
def test_validate_reports_a_folder_it_cannot_read(tmp_path: Path) -> None:
    """chmod 000 does not stop root: as root the check runs with the effective user "nobody".

    The store lives in a world-readable folder (pytest's tmp_path is 0700), a warm-up run does
    the imports as root (the interpreter's standard library may be unreadable to "nobody"),
    and a threaded cluster runs the tasks under the same effective user.
    """
    import shutil
    import subprocess
    import sys
    import tempfile

    from zarr_dask_utils.testing import build_sample_hierarchy

    folder = Path(tempfile.mkdtemp(prefix="zdu-unreadable-"))
    try:
        folder.chmod(0o755)
        build_sample_hierarchy(str(folder / "warm.zarr"))
        build_sample_hierarchy(str(folder / "s.zarr"))
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (folder / "s.zarr" / "climate" / "static").chmod(0o000)  # a whole group, unreadable
        (folder / "s.zarr" / "time" / "zarr.json").chmod(0o000)  # one node document
        out = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(folder)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert "Traceback" not in out.stderr, out.stderr
        lines = out.stdout.splitlines()
        results = json.loads(lines[0])
        for name in ("validate", "info"):
            found = {(code, where) for code, where, _ in results[name]}
            assert ("node-unreadable", "climate/static") in found, (name, found)
            assert ("object-unreadable", "time/zarr.json") in found, (name, found)
            messages = " ".join(m for _, _, m in results[name])
            assert "Permission denied" in messages
        assert lines[-1] == "EXIT 1"
        cli_report = json.loads("\n".join(lines[1:-1]))
        assert "node-unreadable" in _codes(cli_report)
    finally:
        for path in [folder, *folder.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(folder)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param(b"", "empty", id="zero-bytes"),
        pytest.param(b"  \n", "empty", id="whitespace"),
        pytest.param(b"[" * 100_000, "nested too deeply", id="nested-lists"),
        pytest.param(b'{"a":' * 50_000, "nested too deeply", id="nested-objects"),
        pytest.param(b"\xff\xfe", "not valid JSON", id="not-utf8"),
        pytest.param(b"garbage{", "not valid JSON", id="garbage"),
    ],
)
def test_parse_document_never_raises(raw: bytes, fragment: str) -> None:
    from zarr_dask_utils._core.pure.keys import parse_document

    value, error = parse_document(raw)
    assert value is None
    assert error is not None
    assert fragment in error


def test_nothing_exists_names_the_path(tmp_path: Path) -> None:
    from zarr_dask_utils import explain_zarr_error

    missing = tmp_path / "nowhere.zarr"
    for open_missing in (
        lambda: zarr.open_array(str(missing), mode="r"),
        lambda: missing.read_bytes(),
    ):
        with pytest.raises(FileNotFoundError) as info:
            open_missing()
        explanation = explain_zarr_error(info.value)
        assert explanation.kind == "path-not-found"
        assert explanation.what == f"Nothing exists at {str(missing)!r}."


def test_explained_task_errors_leave_no_worker_log() -> None:
    import logging

    from zarr_dask_utils._core.compute.worker_logs import ExplainedErrorFilter

    def record(exception_text: str) -> logging.LogRecord:
        args = ("key", "executing", "task", exception_text, "  File ...")
        msg = "Compute Failed\nKey: %s\nState: %s\nTask: %s\nException: %r\nTraceback: %r\n"
        return logging.LogRecord("distributed.worker", logging.ERROR, "", 0, msg, args, None)

    keep = ExplainedErrorFilter()
    assert not keep.filter(record("StoreUnreadableError('Cannot read ...')"))
    assert not keep.filter(record("StoreAccessDeniedError('Access ...')"))
    assert keep.filter(record("ZeroDivisionError('division by zero')"))  # a bug: keep it loud
    other = logging.LogRecord("distributed.worker", logging.ERROR, "", 0, "other", (), None)
    assert keep.filter(other)
