"""Stores written by other tools (issue 12): each class of store gets the verdict a user needs.

Real stores on disk, built byte for byte as the other writers do; every verdict is checked
through the API and through the CLI (exit code and ``--json`` codes).  Each item of the issue
has its own section below (sections are appended by the people working on them).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

import zarr_dask_utils as zdu
from zarr_dask_utils._core.errors import DraftV3StoreError, NotAZarrStoreError
from zarr_dask_utils._core.pure.inventory import MAX_MISSING_LISTED, build_inventory
from zarr_dask_utils._core.storage.locations import resolve_location
from zarr_dask_utils._core.storage.probe import probe_location
from zarr_dask_utils.integrity.plan import name_missing
from zarr_dask_utils.integrity.sample import sample_statement
from zarr_dask_utils.testing.cli_runner import run_zdu
from zarr_dask_utils.testing.foreign import write_zarrs_dual_metadata

# ---------------------------------------------------------------------------------------------
# Issue 12, items 3, 6, 7: draft-v3 stores, analyze never drops an array, missing chunks named
# ---------------------------------------------------------------------------------------------

_DRAFT = "https://purl.org/zarr/spec/protocol/core/3.0"


def _write_draft_v3(root: Path, *, entry_point: bool = True, array_at_root: bool = False) -> None:
    """A store as zarr-python 2.11-2.18 wrote it with ``zarr_version=3`` (pre-1.0 draft spec).

    Entry point ``zarr.json``, node documents under ``meta/root…``, chunks under ``data/root…``
    with the draft's ``c`` prefix and ``/`` separator.
    """

    def put(key: str, data: bytes) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    if entry_point:
        doc = {
            "zarr_format": _DRAFT,
            "metadata_encoding": _DRAFT,
            "metadata_key_suffix": ".json",
            "extensions": [],
        }
        put("zarr.json", json.dumps(doc, indent=4).encode())
    array_doc = {
        "shape": [4, 6],
        "data_type": "<f4",
        "chunk_grid": {"type": "regular", "chunk_shape": [2, 3], "separator": "/"},
        "chunk_memory_layout": "C",
        "compressor": None,
        "fill_value": 0.0,
        "extensions": [],
        "attributes": {"units": "K"},
    }
    values = np.arange(24, dtype="<f4").reshape(4, 6)
    if array_at_root:
        put("meta/root.array.json", json.dumps(array_doc).encode())
        data = "data/root"
    else:
        put("meta/root.group.json", json.dumps({"attributes": {"title": "draft"}}).encode())
        put("meta/root/temp.array.json", json.dumps(array_doc).encode())
        data = "data/root/temp"
    for i in range(2):
        for j in range(2):
            put(f"{data}/c{i}/{j}", values[2 * i : 2 * i + 2, 3 * j : 3 * j + 3].tobytes())


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


_DRAFT_VARIANTS = {
    "group": {},
    "array-at-root": {"array_at_root": True},
    "no-entry-point": {"entry_point": False},
}


@pytest.fixture(params=sorted(_DRAFT_VARIANTS), ids=sorted(_DRAFT_VARIANTS))
def draft_store(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = tmp_path / "draft.zarr"
    _write_draft_v3(root, **_DRAFT_VARIANTS[request.param])
    return root


def test_probe_names_a_draft_v3_store(draft_store: Path) -> None:
    with pytest.raises(DraftV3StoreError) as info:
        probe_location(resolve_location(str(draft_store)))
    err = info.value
    assert isinstance(err, NotAZarrStoreError)  # callers catching "not Zarr" still do
    assert err.to_dict()["kind"] == "draft-v3-store"
    text = str(err)
    assert "draft v3" in text
    assert "zarr-python 3" in text
    assert "zarr-python 2" in text
    assert "set zarr_format to 3" not in text


def test_probe_leaves_final_v3_and_v2_alone(tmp_path: Path) -> None:
    for fmt in (2, 3):
        zarr.create_group(str(tmp_path / f"g{fmt}.zarr"), zarr_format=fmt)
        probe = probe_location(resolve_location(str(tmp_path / f"g{fmt}.zarr")))
        assert probe.zarr_format == fmt


def test_every_api_refuses_a_draft_v3_store_and_writes_nothing(
    tmp_path: Path, client: object
) -> None:
    root = tmp_path / "draft.zarr"
    _write_draft_v3(root)
    before = _snapshot(root)
    store = str(root)
    calls = {
        "walk": lambda: zdu.walk_hierarchy(store, client=client, progress=False),
        "open": lambda: zdu.open_node(store),
        "check": lambda: zdu.check_data_integrity(store, deep=True, client=client, progress=False),
        "analyze": lambda: zdu.analyze_chunks(store, client=client, progress=False),
        "validate": lambda: zdu.validate_metadata(store, client=client, progress=False),
        "doctor": lambda: zdu.diagnose_zarr_store(store, client=client, progress=False),
        "consolidate": lambda: zdu.consolidate_metadata(store, client=client, progress=False),
        "repair": lambda: zdu.repair_metadata(store, dry_run=False, client=client, progress=False),
        "verify": lambda: zdu.verify_chunks(store, client=client, progress=False),
        "rechunk": lambda: zdu.rechunk_array(
            store, (4, 6), str(tmp_path / "out.zarr"), client=client, progress=False
        ),
        "compare": lambda: zdu.compare_stores(store, store, client=client, progress=False),
    }
    for call in calls.values():
        with pytest.raises(DraftV3StoreError):
            call()
    assert _snapshot(root) == before
    assert not (tmp_path / "out.zarr").exists()


def test_every_command_exits_2_with_draft_v3_store_kind(tmp_path: Path, client: object) -> None:
    root = tmp_path / "draft.zarr"
    _write_draft_v3(root)
    before = _snapshot(root)
    store, out = str(root), str(tmp_path / "out.zarr")
    commands = [
        ["info", store],
        ["check", store, "--deep"],
        ["analyze", store],
        ["validate", store],
        ["doctor", store],
        ["consolidate", store],
        ["repair", store, "--apply"],
        ["rechunk", store, out, "--chunks", "4,6", "--max-mem", "64MiB"],
        ["compare", store, store],
    ]
    for argv in commands:
        done = run_zdu(*argv, "--json", scheduler=client)
        assert done.returncode == 2, (argv, done.stdout[-1000:], done.stderr[-1000:])
        error = json.loads(done.stdout)["error"]
        assert error["kind"] == "draft-v3-store", (argv, error)
        assert "draft v3" in done.stderr, argv
    assert _snapshot(root) == before
    assert not Path(out).exists()


def _parent_with_nested_draft(root: Path, fmt: int) -> Path:
    """A normal v2/v3 group with an array, and a draft-v3 store in its folder ``old``."""
    group = zarr.open_group(str(root), mode="w", zarr_format=fmt)
    group.create_array("a", shape=(4,), chunks=(2,), dtype="i4")[:] = 1
    _write_draft_v3(root / "old")
    return root


@pytest.mark.parametrize("fmt", [2, 3])
def test_a_draft_v3_store_nested_below_a_normal_store_is_refused(
    tmp_path: Path, client: object, fmt: int
) -> None:
    root = _parent_with_nested_draft(tmp_path / "parent.zarr", fmt)
    before = _snapshot(root)
    store, kw = str(root), {"client": client, "progress": False}
    calls = {
        "walk": lambda: zdu.walk_hierarchy(store, **kw),
        "analyze": lambda: zdu.analyze_chunks(store, **kw),
        "check": lambda: zdu.check_data_integrity(store, deep=True, **kw),
        "validate": lambda: zdu.validate_metadata(store, **kw),
        "doctor": lambda: zdu.diagnose_zarr_store(store, **kw),
        "consolidate": lambda: zdu.consolidate_metadata(store, **kw),
        "repair": lambda: zdu.repair_metadata(store, dry_run=False, **kw),
        "compare": lambda: zdu.compare_stores(store, store, **kw),
    }
    for name, call in calls.items():
        with pytest.raises(DraftV3StoreError, match=r"'old' inside .*parent\.zarr") as info:
            call()
        assert "draft v3" in str(info.value), name
    assert _snapshot(root) == before
    assert not (tmp_path / "parent.zarr.zdu-backups").exists()

    for argv in (["info"], ["validate"], ["consolidate"], ["check", "--deep"]):
        done = run_zdu(argv[0], store, *argv[1:], "--json", scheduler=client)
        assert done.returncode == 2, (argv, done.stdout[-1000:], done.stderr[-1000:])
        assert json.loads(done.stdout)["error"]["kind"] == "draft-v3-store", argv
        assert "Traceback" not in done.stderr
    assert _snapshot(root) == before


# --- item 6: analyze lists every array: analysed, or skipped with the reason -----------------


@pytest.mark.parametrize("fmt", [2, 3])
def test_analyze_includes_variable_length_strings(tmp_path: Path, client: object, fmt: int) -> None:
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=fmt)
    names = group.create_array("names", shape=(6,), chunks=(2,), dtype=str)
    names[:] = np.array(["a", "bb", "ccc", "d", "e", "f"])
    group.create_array("x", shape=(6,), chunks=(2,), dtype="f4")[:] = 1
    group.create_array("scalar", shape=(), dtype="f4")[...] = 2
    report = zdu.analyze_chunks(str(tmp_path / "s.zarr"), client=client, progress=False)
    analysed = {a["path"] for a in report.arrays}
    skipped = {s["path"]: s["reason"] for s in report.skipped}
    assert analysed == {"names", "x"}
    assert set(skipped) == {"scalar"}
    assert "scalar" in skipped["scalar"]
    assert [f.location for f in report.findings_with("array-not-analyzed")] == ["scalar"]
    assert "variable-length" in next(a for a in report.arrays if a["path"] == "names")["reasoning"]
    assert report.ok

    done = run_zdu("analyze", str(tmp_path / "s.zarr"), "--json", scheduler=client)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert {a["path"] for a in data["arrays"]} == {"names", "x"}
    assert [s["path"] for s in data["skipped"]] == ["scalar"]
    assert "array-not-analyzed" in {f["code"] for f in data["findings"]}


# --- item 7: missing chunks named; no vacuous "every chunk" ---------------------------------


def test_inventory_names_the_first_missing_keys() -> None:
    doc = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [40],
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "codecs": [{"name": "bytes"}],
        "fill_value": 0,
    }
    stored = {f"a/c/{i}": 1 for i in range(40) if i % 3 == 0}  # 14 stored, 26 missing
    inv = build_inventory({"a/zarr.json": doc}, {"a/zarr.json": 10, **stored})
    arr = inv.arrays["a"]
    assert arr.missing == 26
    expected = [f"a/c/{i}" for i in range(40) if i % 3][:MAX_MISSING_LISTED]
    assert arr.missing_keys == expected
    assert arr.summary()["missing_keys"] == expected
    full = build_inventory({"a/zarr.json": doc}, {f"a/c/{i}": 1 for i in range(40)})
    assert full.arrays["a"].missing_keys == []


def test_name_missing_is_bounded_and_counts() -> None:
    assert name_missing(["c/0"], 1) == "missing: 'c/0'"
    assert name_missing(["c/0", "c/1"], 12) == "missing: 'c/0', 'c/1' and 10 more"


@pytest.mark.parametrize(
    ("args", "kwargs", "must", "never"),
    [
        ((4, 4, 0), {"n_decoded": 0, "n_missing": 4}, "no chunk was decoded", "every"),
        ((4, 4, 0), {"n_decoded": 3, "n_missing": 1}, "all 3 stored chunk(s)", "every chunk"),
        ((0, 0, 0), {"n_decoded": 0}, "nothing to decode", "every"),
        ((100, 10, 0), {"n_decoded": 0, "n_missing": 10}, "nothing about the stored", "rules"),
    ],
    ids=["none-stored", "some-missing", "empty-grid", "sample-all-missing"],
)
def test_sample_statement_is_never_vacuous(
    args: tuple[int, int, int], kwargs: dict[str, int], must: str, never: str
) -> None:
    text = sample_statement(*args, **kwargs)[2]
    assert must in text
    assert never not in text


def _array_with_missing_chunks(root: Path, fmt: int) -> list[str]:
    arr = zarr.create_array(
        str(root), shape=(6, 6), chunks=(2, 2), dtype="i4", fill_value=0, zarr_format=fmt
    )
    arr[:] = np.arange(36, dtype="i4").reshape(6, 6) + 1
    keys = ["c/0/1", "c/2/2"] if fmt == 3 else ["0.1", "2.2"]
    for k in keys:
        (root / k).unlink()
    return keys


@pytest.mark.parametrize("fmt", [2, 3])
def test_check_and_verify_name_missing_chunks(tmp_path: Path, client: object, fmt: int) -> None:
    root = tmp_path / "m.zarr"
    keys = _array_with_missing_chunks(root, fmt)
    report = zdu.check_data_integrity(str(root), client=client, progress=False)
    (finding,) = report.findings_with("chunks-missing")
    assert all(repr(k) in finding.message for k in keys)
    assert report.arrays[0]["missing_keys"] == keys
    sample = zdu.verify_chunks(str(root), sample_rate=1.0, seed=1, client=client, progress=False)
    assert sample.decoded == 7
    assert sample.missing == 2
    assert sorted(sample.missing_keys) == keys
    assert "every chunk" not in sample.statement
    assert "all 7 stored" in sample.statement

    done = run_zdu("check", str(root), "--json", scheduler=client)
    assert done.returncode == 0, done.stderr[-2000:]
    (f,) = [f for f in json.loads(done.stdout)["findings"] if f["code"] == "chunks-missing"]
    assert all(repr(k) in f["message"] for k in keys)


@pytest.mark.parametrize("fmt", [2, 3])
def test_doctor_names_missing_chunks(tmp_path: Path, client: object, fmt: int) -> None:
    root = tmp_path / "m.zarr"
    keys = _array_with_missing_chunks(root, fmt)
    report = zdu.diagnose_zarr_store(str(root), client=client, progress=False)
    (finding,) = report.findings_with("chunks-not-stored")
    assert all(repr(k) in finding.message for k in keys), finding.message
    assert "2 of 9" in finding.message
    assert list(report.arrays[0].missing_keys) == keys
    assert report.to_dict()["arrays"][0]["missing_keys"] == keys


def test_doctor_names_a_bounded_list_of_missing_chunks(tmp_path: Path, client: object) -> None:
    root = tmp_path / "sparse.zarr"
    arr = zarr.create_array(str(root), shape=(40,), chunks=(1,), dtype="f4", fill_value=0)
    arr[:3] = 1.0  # 37 of 40 chunks never written
    report = zdu.diagnose_zarr_store(str(root), client=client, progress=False)
    (finding,) = report.findings_with("chunks-not-stored")
    assert "'c/3'" in finding.message
    assert "'c/39'" not in finding.message
    assert "and 27 more" in finding.message  # 10 named, the rest counted


def test_verify_chunks_on_an_array_with_no_stored_chunk(tmp_path: Path, client: object) -> None:
    root = tmp_path / "empty.zarr"
    zarr.create_array(str(root), shape=(4, 4), chunks=(2, 2), dtype="f4")
    report = zdu.verify_chunks(str(root), sample_rate=1.0, seed=3, client=client, progress=False)
    assert report.decoded == 0
    assert report.missing == 4
    assert "every" not in report.statement
    assert "no chunk was decoded" in report.statement
    assert list(report.missing_keys) == ["c/0/0", "c/0/1", "c/1/0", "c/1/1"]

    done = run_zdu("verify-chunks", str(root), "--sample-rate", "1", "--json", scheduler=client)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert data["decoded"] == 0
    assert "every" not in data["statement"]
    assert "chunks-missing" in {f["code"] for f in data["findings"]}
    assert data["missing_keys"] == ["c/0/0", "c/0/1", "c/1/0", "c/1/1"]


# ---------------------------------------------------------------------------------------------
# Issue 12, items 1 and 9: zip stores in every command; zarr.json beside .zarray (zarrs)
# ---------------------------------------------------------------------------------------------


def _write_zip(path: Path, zarr_format: int) -> Path:
    """A zip as zarr-python 3 itself writes it: ZipStore(mode="w"), arrays, close."""
    store = zarr.storage.ZipStore(path, mode="w")
    group = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    extra = {"dimension_names": ("y", "x")} if zarr_format == 3 else {}
    array = group.create_array("a", shape=(10, 8), chunks=(5, 4), dtype="f4", **extra)
    array[:] = np.arange(80, dtype="f4").reshape(10, 8)
    group.create_group("g").create_array("b", shape=(6,), chunks=(4,), dtype="i2")[:] = 7
    store.close()
    return path


@pytest.fixture(params=[2, 3], ids=["v2", "v3"])
def zip_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return _write_zip(tmp_path / f"data-v{request.param}.zip", request.param)


def _zip_forms(path: Path) -> dict[str, tuple[object, object]]:
    """(store, its array 'a') as a path, an unopened ZipStore, and a zarr Group on one."""
    group = zarr.open_group(zarr.storage.ZipStore(path), mode="r")
    return {
        "path": (str(path), f"{path}/a"),
        "zipstore": (
            zarr.storage.ZipStore(path),
            zarr.open_array(zarr.storage.ZipStore(path), path="a", mode="r"),
        ),
        "group": (group, group["a"]),
    }


def _no_errors(report: zdu.Report) -> None:
    assert not [f for f in report.findings if f.severity == "error"], report


@pytest.mark.cluster
@pytest.mark.parametrize("form", ["path", "zipstore", "group"])
def test_zip_every_command_api(zip_path: Path, form: str, client, tmp_path: Path) -> None:
    store, array = _zip_forms(zip_path)[form]
    kw = {"client": client, "progress": False}
    info = zdu.walk_hierarchy(store, **kw)
    assert "distributed" in info.engine  # worker processes opened the zip themselves
    assert {(n.path, n.node_type) for n in info.nodes} == {
        ("", "group"),
        ("a", "array"),
        ("g", "group"),
        ("g/b", "array"),
    }
    _no_errors(zdu.validate_metadata(store, **kw))
    deep = zdu.check_data_integrity(store, deep=True, **kw)
    assert deep.ok, deep
    assert deep.chunks_decoded == 6
    doctor = zdu.diagnose_zarr_store(store, **kw)
    _no_errors(doctor)
    assert len(doctor.arrays) == 2
    sample = zdu.verify_chunks(array, sample_rate=1.0, seed=1, **kw)
    assert sample.ok
    assert sample.decoded == 4
    assert zdu.compare_stores(store, store, **kw).ok
    manifest = zdu.create_manifest(store, tmp_path / "m.json", **kw)
    assert manifest.ok
    assert manifest.objects > 0
    assert zdu.verify_manifest(store, tmp_path / "m.json", **kw).ok
    analysis = zdu.analyze_chunks(store, **kw)
    assert {a["path"] if isinstance(a, dict) else a.path for a in analysis.arrays} >= {"a"}
    out = tmp_path / "copy.zarr"
    rechunked = zdu.rechunk_array(array, (10, 8), str(out), max_mem="64MiB", **kw)
    assert rechunked.ok, rechunked
    copy = zarr.open_array(str(out), mode="r")
    assert copy.chunks == (10, 8)
    np.testing.assert_array_equal(copy[:], np.arange(80, dtype="f4").reshape(10, 8))


@pytest.mark.slow
@pytest.mark.cluster
def test_zip_every_command_cli(zip_path: Path, client, tmp_path: Path) -> None:
    z = str(zip_path)
    m = str(tmp_path / "m.json")
    cases = [
        (["info", z, "--json"], 0),
        (["validate", z, "--json"], 0),
        (["check", z, "--deep", "--json"], 0),
        (["doctor", z, "--json"], None),  # small chunks are a warning here: 0 or 1, never 2
        (["verify-chunks", z, "--array", "a", "--json"], 0),
        (["verify-chunks", f"{z}/g/b", "--json"], 0),
        (["compare", z, z, "--json"], 0),
        (["manifest", "create", z, m, "--json"], 0),
        (["manifest", "verify", z, m, "--json"], 0),
        (["analyze", z, "--json"], 0),
        (
            [
                "rechunk",
                f"{z}/a",
                str(tmp_path / "o.zarr"),
                "--chunks",
                "10,8",
                "--max-mem",
                "64MiB",
                "--json",
            ],
            0,
        ),
    ]
    for args, expected in cases:
        out = run_zdu(*args, scheduler=client)
        assert out.returncode in ((0, 1) if expected is None else (expected,)), (args, out)
        data = json.loads(out.stdout)
        assert not [f for f in data["findings"] if f["severity"] == "error"], (args, data)
    assert zarr.open_array(str(tmp_path / "o.zarr"), mode="r")[9, 7] == 79


@pytest.mark.cluster
def test_zip_is_never_written(zip_path: Path, client, tmp_path: Path) -> None:
    before = zip_path.read_bytes()
    with pytest.raises(zdu.ReadOnlyStoreError, match="zip file"):
        zdu.rechunk_array(f"{zip_path}/a", (10, 8), str(tmp_path / "o.zip"), client=client)
    out = run_zdu("consolidate", str(zip_path), "--json", scheduler=client)
    assert out.returncode == 2, out
    assert "zip" in out.stdout + out.stderr
    assert zip_path.read_bytes() == before


def test_zip_still_being_written_is_named(tmp_path: Path) -> None:
    store = zarr.storage.ZipStore(tmp_path / "open.zip", mode="w")
    zarr.open_group(store, mode="w").create_array("a", shape=(2,), dtype="i1")
    try:
        with pytest.raises(zdu.StoreUnreadableError, match="close that store first"):
            zdu.walk_hierarchy(store, progress=False)
    finally:
        store.close()


def test_zip_location_reopens_on_workers(zip_path: Path) -> None:
    import pickle

    loc = resolve_location(zarr.storage.ZipStore(zip_path))
    assert loc.kind == "zip"
    assert loc.store is None
    again = pickle.loads(pickle.dumps(loc))
    assert again.open_store() is not None
    inner = resolve_location(f"{zip_path}/g/b")
    assert (inner.kind, inner.url, inner.path) == ("zip", str(zip_path), "g/b")


@pytest.mark.cluster
@pytest.mark.parametrize("mode", ["w", "a"])
def test_wrapped_zip_store_open_for_writing_is_refused_up_front(
    zip_path: Path, client, mode: str
) -> None:
    before = zip_path.read_bytes()
    wrapped = zarr.storage.LoggingStore(zarr.storage.ZipStore(zip_path, mode=mode))
    with pytest.raises(zdu.InvalidOptionError, match=r"ZipStore .* opened for writing") as info:
        zdu.walk_hierarchy(wrapped, client=client, progress=False)
    assert "mode='r'" in str(info.value)
    assert info.value.to_dict()["kind"] == "invalid-option"
    again = zarr.storage.LoggingStore(zarr.storage.ZipStore(zip_path, mode=mode))
    with pytest.raises(zdu.InvalidOptionError):
        zdu.check_data_integrity(again, deep=True, client=client, progress=False)
    assert zip_path.read_bytes() == before  # no worker reopened it for writing


@pytest.mark.cluster
def test_wrapped_read_only_zip_store_runs_on_worker_processes(zip_path: Path, client) -> None:
    wrapped = zarr.storage.LoggingStore(zarr.storage.ZipStore(zip_path, mode="r"))
    info = zdu.walk_hierarchy(wrapped, client=client, progress=False)
    assert "distributed" in info.engine  # worker processes opened their own read handles
    assert {n.path for n in info.nodes} >= {"", "a", "g", "g/b"}
    report = zdu.check_data_integrity(wrapped, deep=True, client=client, progress=False)
    assert report.ok, report


@pytest.mark.cluster
def test_v2_documents_beside_zarr_json_are_shadowed(tmp_path: Path, client) -> None:
    root = write_zarrs_dual_metadata(tmp_path / "zarrs.zarr")
    kw = {"client": client, "progress": False}
    info = zdu.walk_hierarchy(str(root), **kw)
    assert [(n.path, n.node_type, n.zarr_format) for n in info.nodes] == [
        ("", "group", 3),
        ("a", "array", 3),
    ]
    report = zdu.validate_metadata(str(root), **kw)
    codes = {(f.severity, f.code, f.location) for f in report.findings}
    assert ("warning", "v2-document-shadowed", "a") in codes
    assert ("warning", "v2-document-shadowed", "") in codes
    assert not report.findings_with("mixed-formats")
    assert (report.groups, report.arrays) == (1, 1)
    doctor = zdu.diagnose_zarr_store(str(root), **kw)
    assert (doctor.groups, len(doctor.arrays)) == (1, 1)
    seen = [(f.code, f.location) for f in doctor.findings]
    assert len(seen) == len(set(seen)), seen  # every warning once
    assert ("v2-document-shadowed", "a") in seen
    out = run_zdu("validate", str(root), "--json", scheduler=client)
    assert out.returncode == 1, out
    found = {(f["code"], f["location"]) for f in json.loads(out.stdout)["findings"]}
    assert ("v2-document-shadowed", "a") in found
    with pytest.warns(zarr.errors.ZarrUserWarning, match="Zarr v3 will be used"):
        assert zarr.open_array(str(root / "a"), mode="r").metadata.zarr_format == 3  # as we say


def test_shadowing_follows_the_hierarchy_format() -> None:
    from zarr_dask_utils._core.pure.keys import shadowed_v2_documents
    from zarr_dask_utils._core.pure.nodes import nodes_from_documents

    v3 = ["zarr.json", ".zgroup", "a/zarr.json", "a/.zarray", "a/.zattrs", "b/.zattrs"]
    assert shadowed_v2_documents(v3) == {"": [".zgroup"], "a": ["a/.zarray", "a/.zattrs"]}
    # through a format 2 parent, zarr-python reads the child's .zarray: nothing is shadowed
    v2 = [".zgroup", "a/zarr.json", "a/.zarray"]
    assert shadowed_v2_documents(v2) == {}
    docs = {
        ".zgroup": b'{"zarr_format": 2}',
        "a/.zarray": json.dumps(
            {
                "zarr_format": 2,
                "shape": [2],
                "chunks": [2],
                "dtype": "<i2",
                "compressor": None,
                "fill_value": 0,
                "filters": None,
                "order": "C",
            }
        ).encode(),
        "a/zarr.json": json.dumps(
            {
                "zarr_format": 3,
                "node_type": "array",
                "shape": [2],
                "data_type": "int16",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
                "chunk_key_encoding": {"name": "default"},
                "fill_value": 0,
                "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            }
        ).encode(),
    }
    assert [(n.path, n.zarr_format) for n in nodes_from_documents(docs)] == [("", 2), ("a", 2)]


# ---------------------------------------------------------------------------------------------
# Issue 12, items 2, 4, 5: codecs not installed here, compare goes on past damaged chunks,
# rechunk names a damaged source chunk; no fix text that would destroy good data
# ---------------------------------------------------------------------------------------------

_DESTRUCTIVE = r"\b(delete|remove|erase|discard|overwrite|rm)\b|mode='w'|copy the chunk again"


def _codec_store(root: Path, fmt: int) -> Path:
    """A normal array whose document then names a codec not installed here (chunks untouched)."""
    arr = zarr.create_array(root, shape=(8, 8), chunks=(4, 4), dtype="f8", zarr_format=fmt)
    arr[:] = np.arange(64.0).reshape(8, 8)
    if fmt == 3:
        doc_path = root / "zarr.json"
        doc = json.loads(doc_path.read_text())
        zfpy = {"name": "numcodecs.zfpy", "configuration": {"mode": 4, "tolerance": 0.01}}
        doc["codecs"] = [zfpy]
    else:
        doc_path = root / ".zarray"
        doc = json.loads(doc_path.read_text())
        doc["compressor"] = {"id": "pcodec", "level": 8}
    doc_path.write_text(json.dumps(doc))
    return root


@pytest.fixture(params=[3, 2], ids=["v3-zfpy", "v2-pcodec"])
def codec_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, str]:
    fmt = request.param
    missing = "zfpy" if fmt == 3 else "pcodec"
    # the premise of every test using this store: neither package is in the project's install
    assert importlib.util.find_spec(missing) is None, f"{missing} is installed: pick another codec"
    return _codec_store(tmp_path / f"codec{fmt}.zarr", fmt), missing, f"pip install {missing}"


def _only_codec_unavailable(report: zdu.Report, codec: str, hint: str) -> None:
    codes = [f.code for f in report.findings if f.severity in ("error", "warning")]
    assert "codec-unavailable" in codes, report.findings
    assert not [c for c in codes if c.startswith("chunk-") or c.endswith("-invalid")], codes
    (found,) = [f for f in report.findings if f.code == "codec-unavailable"]
    assert codec in found.message
    assert found.fix is not None
    assert hint in found.fix
    assert "not checked" in found.message
    assert not report.ok


def test_codec_table_names_the_package() -> None:
    from zarr_dask_utils._core.checks.codecs import install_hint, unavailable_codecs

    assert install_hint("zfpy") == "pip install zfpy"
    assert install_hint("pcodec") == "pip install pcodec"
    assert install_hint("imagecodecs_jpegxl") == "pip install imagecodecs"
    assert "numcodecs codec 'mystery'" in install_hint("mystery")
    assert unavailable_codecs({"zarr_format": 2, "compressor": {"id": "zlib", "level": 1}}) == ()
    assert unavailable_codecs({"zarr_format": 2, "compressor": {"id": "mystery"}}) == ("mystery",)
    nested = {
        "zarr_format": 3,
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [2],
                    "codecs": [{"name": "numcodecs.zfpy", "configuration": {"mode": 4}}],
                    "index_codecs": [{"name": "bytes"}],
                },
            }
        ],
    }
    assert unavailable_codecs(nested) == (() if _installed("zfpy") else ("zfpy",))


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.mark.cluster
def test_codec_unavailable_api_every_command(codec_store, client) -> None:
    root, codec, hint = codec_store
    path = str(root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for report in (
        zdu.check_data_integrity(path, deep=True, client=client, progress=False),
        zdu.verify_chunks(path, sample_rate=1.0, seed=1, client=client, progress=False),
        zdu.validate_metadata(path, client=client, progress=False),
        zdu.repair_metadata(path, dry_run=True, client=client, progress=False),
        zdu.diagnose_zarr_store(path, client=client, progress=False),
        zdu.walk_hierarchy(path, client=client, progress=False),
    ):
        _only_codec_unavailable(report, codec, hint)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


@pytest.mark.cluster
def test_codec_unavailable_cli_every_command(codec_store, client) -> None:
    root, _codec, hint = codec_store
    scheduler = str(client.scheduler.address)
    for args in (
        ["check", "--deep"],
        ["verify-chunks", "--sample-rate", "1"],
        ["validate"],
        ["repair"],
        ["doctor"],
        ["info"],
    ):
        done = run_zdu(args[0], str(root), *args[1:], "--json", scheduler=scheduler)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        doc = json.loads(done.stdout)
        codes = {f["code"] for f in doc["findings"]}
        assert "codec-unavailable" in codes, (args, codes)
        assert not {c for c in codes if c.startswith("chunk-")}, (args, codes)
        assert "Traceback" not in done.stderr
        fixes = [f["fix"] or "" for f in doc["findings"]]
        assert any(hint in fix for fix in fixes)


def _two_copies(tmp_path: Path, *, rechunked: bool, damaged: str = "a") -> tuple[str, str]:
    data = np.arange(64, dtype="f4").reshape(8, 8)
    a = zarr.create_array(tmp_path / "a.zarr", shape=(8, 8), chunks=(4, 4), dtype="f4")
    a[:] = data
    b_chunks = (8, 2) if rechunked else (4, 4)
    b = zarr.create_array(tmp_path / "b.zarr", shape=(8, 8), chunks=b_chunks, dtype="f4")
    b[:] = data
    b[7, 7] = -1.0  # a silent one-element change elsewhere
    bad = _UNDECODABLE[(rechunked, damaged)]
    (tmp_path / f"{damaged}.zarr" / "c" / bad.replace("c/", "")).write_bytes(b"")  # undecodable
    (tmp_path / "b.zarr" / "c" / "0" / "0").unlink()  # a chunk missing in b (fill value 0)
    return str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")


#: (rechunked copy?, damaged side) -> the key made undecodable on that side: never the chunk
#: of b[7, 7] (b's chunk c/0/3 when rechunked to (8, 2)), so that change stays comparable
_UNDECODABLE = {
    (False, "a"): "c/1/0",
    (False, "b"): "c/1/0",
    (True, "a"): "c/1/0",
    (True, "b"): "c/0/2",  # rows 0-7, columns 4-5: inside a's chunks c/0/1 and c/1/1
}


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("rechunked", "damaged"),
    sorted(_UNDECODABLE),
    ids=[f"{'rechunked' if r else 'same-chunks'}-{d}" for r, d in sorted(_UNDECODABLE)],
)
def test_compare_goes_on_past_an_undecodable_chunk(
    tmp_path: Path, client, rechunked: bool, damaged: str
) -> None:
    a, b = _two_copies(tmp_path, rechunked=rechunked, damaged=damaged)
    report = zdu.compare_stores(a, b, client=client, progress=False)
    by_code: dict[str, set[str]] = {}
    for f in report.findings:
        by_code.setdefault(f.code, set()).add(f.location)
    assert by_code["chunk-unreadable"] == {_UNDECODABLE[(rechunked, damaged)]}
    assert {"c/1/1", "c/0/0"} <= by_code["chunk-differs"]  # b[7, 7] and b's missing chunk
    (unreadable,) = [f for f in report.findings if f.code == "chunk-unreadable"]
    assert f"cannot be decoded in {damaged}" in unreadable.message
    (summary,) = report.arrays
    assert summary["mode"] == ("values" if rechunked else "raw-bytes")
    assert summary["chunks_unreadable"] == 1
    assert summary["elements_differing"] >= 1 + 7  # b[7, 7], and b's missing c/0/0 but a[0, 0]
    assert not report.ok

    done = run_zdu("compare", a, b, "--json", scheduler=client)
    assert done.returncode == 1, done.stderr
    codes = [f["code"] for f in json.loads(done.stdout)["findings"]]
    assert "chunk-unreadable" in codes
    assert "chunk-differs" in codes
    assert "Traceback" not in done.stderr


def _damaged(root: Path, compressor: str) -> Path:
    import numcodecs

    arr = zarr.create_array(
        root,
        shape=(8, 8),
        chunks=(4, 4),
        dtype="f8",
        zarr_format=2,
        compressors=numcodecs.get_codec({"id": compressor}),
    )
    arr[:] = np.arange(64.0).reshape(8, 8)
    raw = (root / "0.1").read_bytes()
    (root / "0.1").write_bytes(raw[: len(raw) // 2])
    return root


@pytest.mark.cluster
@pytest.mark.parametrize("compressor", ["zlib", "gzip", "bz2", "lz4"])
@pytest.mark.parametrize("engine", ["auto", "tasks"])
def test_rechunk_names_the_damaged_source_chunk(
    tmp_path: Path, client, compressor: str, engine: str
) -> None:
    src = _damaged(tmp_path / "src.zarr", compressor)
    with pytest.raises(zdu.ChunkUnreadableError, match=r"Chunk '0\.1' of .*zdu check --deep"):
        zdu.rechunk_array(
            str(src),
            (8, 8),
            str(tmp_path / "api.zarr"),
            max_mem="1GiB",
            engine=engine,
            client=client,
            progress=False,
        )
    done = run_zdu(
        "rechunk",
        str(src),
        str(tmp_path / "cli.zarr"),
        "--chunks",
        "8,8",
        "--max-mem",
        "1GiB",
        "--engine",
        engine,
        "--json",
        scheduler=client,
    )
    assert done.returncode == 1, done.stderr  # a problem found in the data, not bad input
    error = json.loads(done.stdout)["error"]
    assert error["kind"] == "chunk-unreadable"
    assert "'0.1'" in error["message"]
    assert "zdu check --deep" in error["message"]
    assert "Traceback" not in done.stderr


# --- the fix-text audit: destructive advice only where the data is proven bad ---------------

#: codes whose subject is proven bad: decoded with a working codec and refused by the decoder
#: or a checksum, an empty object no codec decodes, or the temporary file of a write that never
#: finished (zarr never reads it).  Anything else may be good data and must not be deleted.
_PROVEN_BAD = {
    "chunk-decode-error",
    "chunk-checksum-mismatch",
    "chunk-wrong-size",
    "chunk-zero-bytes",
    "chunk-too-small",
    "chunk-too-large",
    "conversion-mismatch",  # our own target read back and compared: its regions differ
    "partial-write-leftover",
}
#: explain-table rows about the user's own write call: they name mode='w' only as the way to
#: replace data the call was asked to write over, with "(this deletes the old data)" spelled out
_EXPLAINED_REPLACE = {"group-is-array", "already-exists"}
#: findings built with a code held in a variable: what each function can emit
_DYNAMIC_CODES = {
    "decode_findings": {"chunk-decode-error", "chunk-checksum-mismatch", "chunk-wrong-size"},
}


def _text(node: object) -> str | None:
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) or "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        left, right = _text(node.left), _text(node.right)
        return None if left is None and right is None else (left or "") + (right or "")
    if isinstance(node, ast.FormattedValue):
        return "{}"
    return None


def _emitted_fixes() -> list[tuple[str, str, str]]:
    """(where, code, fix) of every Finding the package builds, read from its source."""
    import ast

    import zarr_dask_utils

    root = Path(zarr_dask_utils.__file__).parent
    out: list[tuple[str, str, str]] = []
    for file in sorted(root.rglob("*.py")):
        tree = ast.parse(file.read_text())
        owner: dict[int, str] = {}  # node → innermost enclosing function
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            owner.update({id(n): func.name for n in ast.walk(func)})
        for node in ast.walk(tree):
            name = owner.get(id(node), "<module>")
            where = f"{file.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                callee = getattr(node.func, "id", getattr(node.func, "attr", ""))
                fix_kw = [k.value for k in node.keywords if k.arg == "fix"]
                if callee == "Finding":
                    code_node, fix_node = node.args[1:2], node.args[4:5] or fix_kw
                elif callee == "_err":
                    code_node, fix_node = node.args[0:1], node.args[3:4] or fix_kw
                elif callee == "_listed":  # (severity, code, keys, message, fix)
                    code_node, fix_node = node.args[1:2], node.args[4:5] or fix_kw
                elif callee == "keys_finding":  # (severity, code, where, keys, n, message, fix)
                    code_node, fix_node = node.args[1:2], node.args[6:7] or fix_kw
                else:
                    continue
                fix = _text(fix_node[0]) if fix_node else None
                if fix is None:
                    continue
                code = _text(code_node[0]) if code_node else None
                for c in [code] if code else sorted(_DYNAMIC_CODES.get(name, {"<dynamic>"})):
                    out.append((where, c, fix))
            elif (
                isinstance(node, ast.Tuple)
                and len(node.elts) == 4
                and _text(node.elts[0]) in ("error", "warning", "info")
            ):
                code, fix = _text(node.elts[1]), _text(node.elts[3])
                if code and fix:
                    out.append((where, code, fix))
    return out


def test_the_audit_sees_the_fix_strings() -> None:
    seen = {code for _, code, _ in _emitted_fixes()}
    assert {"chunk-decode-error", "chunk-key-outside-grid", "codec-unavailable"} <= seen
    assert {"chunk-differs", "chunk-zero-bytes", "unexpected-key", "chunk-key-invalid"} <= seen
    assert len(seen) > 30


def test_no_fix_text_destroys_data_not_proven_bad() -> None:
    import re

    from zarr_dask_utils._core.checks.codecs import codec_unavailable_finding
    from zarr_dask_utils.debug.error_table import RULES

    fixes = _emitted_fixes()
    unavailable = codec_unavailable_finding("k", "", ("x",)).fix or ""
    fixes.append(("codecs", "codec-unavailable", unavailable))
    fixes += [(f"error_table:{r.kind}", r.kind, r.fix) for r in RULES]
    offending = [
        (where, code, fix)
        for where, code, fix in fixes
        if re.search(_DESTRUCTIVE, fix, re.IGNORECASE)
        and code not in _PROVEN_BAD | _EXPLAINED_REPLACE
    ]
    assert not offending
    for kind in _EXPLAINED_REPLACE:
        (rule,) = [r for r in RULES if r.kind == kind]
        assert "this deletes the old data" in rule.fix


def test_chunk_unreadable_text_suggests_no_deletion() -> None:
    import re

    from zarr_dask_utils._core.decoding.block_reader import unreadable

    assert not re.search(_DESTRUCTIVE, str(unreadable("c/0", "s.zarr", "x")), re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Issue 12, item 11: noise (one missing-chunks note, summarised junk keys, unnamed dims, N5)
# ---------------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_noise_is_said_once(tmp_path: Path, client) -> None:
    root = tmp_path / "noisy.zarr"
    group = zarr.open_group(root, mode="w", zarr_format=3)
    for name in ("t", "u"):
        arr = group.create_array(name, shape=(3, 4, 4), chunks=(1, 4, 4), dtype="f4")
        arr[:] = 1
        (root / name / "c" / "0" / "0" / "0").unlink()
    for i in range(120):
        (root / f"junk{i:03d}.txt").write_text("x")
    kw = {"client": client, "progress": False}
    report = zdu.check_data_integrity(str(root), **kw)
    missing = report.findings_with("chunks-missing")
    assert len(missing) == 2
    assert not any("checksum manifest" in f.message for f in missing)
    assert sum("checksum manifest" in n for n in report.notes) == 1
    assert str(report).count("checksum manifest") == 1
    junk = report.findings_with("unexpected-key")
    assert len(junk) == 1
    assert "120 objects ('junk000.txt'" in junk[0].message
    valid = zdu.validate_metadata(str(root), **kw)
    junk = valid.findings_with("unexpected-key")
    assert len(junk) == 1
    assert junk[0].location == ""
    assert "120 objects" in junk[0].message
    analysis = zdu.analyze_chunks(str(root), **kw)
    assert "None" not in str(analysis)  # arrays without dimension names: nothing printed


def test_metadiff_names_unnamed_dimensions() -> None:
    from zarr_dask_utils.integrity.metadiff import _dims

    assert _dims((None, "x")) == "unnamed, x"


def test_n5_store_is_named(tmp_path: Path) -> None:
    root = tmp_path / "data.n5"
    (root / "volume").mkdir(parents=True)
    (root / "attributes.json").write_text(json.dumps({"n5": "2.5.0"}))
    (root / "volume" / "attributes.json").write_text(
        json.dumps({"dimensions": [4], "blockSize": [2], "dataType": "int16"})
    )
    with pytest.raises(NotAZarrStoreError, match="N5 container") as err:
        zdu.walk_hierarchy(str(root), progress=False)
    assert "z5py" in str(err.value)
    out = run_zdu("validate", str(root), "--json")
    assert out.returncode == 2, out
    assert "N5" in json.loads(out.stdout)["error"]["message"]
