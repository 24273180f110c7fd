"""zarr_dask_utils.testing: the builders write what zarr writes, the damage is what zarr sees."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import zarr
from zarr.storage import MemoryStore

from zarr_dask_utils import open_store
from zarr_dask_utils._core.storage.storeio import list_keys, read_keys
from zarr_dask_utils.testing import (
    build_demo_store,
    build_sample_hierarchy,
    build_wide_hierarchy,
    corrupt,
)
from zarr_dask_utils.testing.builders import SAMPLE_ARRAYS, SAMPLE_GROUPS, consolidate

ALL_NODES = {"climate", "climate/precip", "climate/static", "climate/static/elevation"} | {
    "climate/t2m",
    "time",
}


def _group(case, *, consolidated: bool):
    """Open the root with zarr itself (the consolidated metadata's spec warning silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        return zarr.open_group(case.store(read_only=True), mode="r", use_consolidated=consolidated)


def _members(group) -> set[str]:
    return {k for k, _ in group.members(max_depth=None)}


def _all_bytes(store) -> dict[str, bytes | None]:
    return read_keys(store, list_keys(store))


def _doc_key(case, path: str) -> str:
    return f"{path}/zarr.json" if case.zarr_format == 3 else f"{path}/.zarray"


# --- build_sample_hierarchy -----------------------------------------------------------------------


def test_sample_hierarchy_as_zarr_reads_it(sample):
    real = _group(sample, consolidated=False)
    assert _members(real) == ALL_NODES
    assert _members(_group(sample, consolidated=True)) == ALL_NODES
    assert dict(real.attrs) == SAMPLE_GROUPS[""]
    assert dict(real["climate"].attrs) == SAMPLE_GROUPS["climate"]
    for path, (shape, chunks, dtype, dims) in SAMPLE_ARRAYS.items():
        array = real[path]
        assert array.metadata.zarr_format == sample.zarr_format
        assert (array.shape, array.chunks, array.dtype) == (shape, chunks, np.dtype(dtype))
        if sample.zarr_format == 3:
            assert array.metadata.dimension_names == dims
        else:
            assert array.attrs["_ARRAY_DIMENSIONS"] == list(dims)
    assert real["time"][:].tolist() == [0, 3, 6, 9, 12, 15, 18, 21]
    assert real["climate/t2m"][0, 0, :3].tolist() == [250.0, 250.5, 251.0]
    assert real["climate/static/elevation"][0, :2].tolist() == [-500, -490]
    np.testing.assert_allclose(real["climate/precip"][0, 0, :2], [0.0, 0.001])
    # every chunk is written: 8 + 4 + 4 + 1
    keys = list_keys(sample.store())
    chunk_keys = [k for k in keys if not k.rpartition("/")[2].startswith((".z", "zarr.json"))]
    assert len(chunk_keys) == 17


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_sample_without_consolidation(tmp_path, zarr_format):
    build_sample_hierarchy(tmp_path / "s.zarr", zarr_format=zarr_format, consolidated=False)
    keys = list_keys(open_store(tmp_path / "s.zarr"))
    assert ".zmetadata" not in keys
    if zarr_format == 3:
        root = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())
        assert "consolidated_metadata" not in root or root["consolidated_metadata"] is None
    with pytest.raises(ValueError, match=r"onsolidated|\.zmetadata"):
        zarr.open_group(tmp_path / "s.zarr", mode="r", use_consolidated=True)


def test_sample_into_a_group_object_and_memory():
    memory = MemoryStore()
    parent = zarr.open_group(memory, mode="w", zarr_format=3).create_group("nested")
    build_sample_hierarchy(parent)
    keys = list_keys(memory)
    assert "zarr.json" in keys
    assert "nested/climate/t2m/zarr.json" in keys
    reopened = zarr.open_group(memory, path="nested", mode="r", use_consolidated=False)
    assert _members(reopened) == ALL_NODES


def test_sample_replaces_what_was_there(tmp_path):
    build_sample_hierarchy(tmp_path / "s.zarr", zarr_format=2)
    build_sample_hierarchy(tmp_path / "s.zarr", zarr_format=3)
    keys = list_keys(open_store(tmp_path / "s.zarr"))
    assert not [k for k in keys if k.rpartition("/")[2].startswith(".z")]


# --- build_wide_hierarchy -------------------------------------------------------------------------


def _zarr_reference(zarr_format, paths, groups, shape, chunks, dtype):
    """The same hierarchy written array by array with zarr itself."""
    memory = MemoryStore()
    root = zarr.open_group(memory, mode="w", zarr_format=zarr_format)
    for g in range(groups):
        root.create_group(f"group{g:03d}")
    for path in paths:
        array = root.create_array(path, shape=shape, chunks=chunks, dtype=dtype)
        first = tuple(slice(0, c) for c in chunks)
        array[first] = np.arange(int(np.prod(chunks))).astype(dtype).reshape(chunks)
    return _all_bytes(memory)


def test_wide_hierarchy_is_byte_identical_to_zarr(store_case):
    paths = build_wide_hierarchy(
        store_case.url,
        n_arrays=7,
        zarr_format=store_case.zarr_format,
        storage_options=store_case.storage_options,
        groups=3,
        shape=(20, 6),
        chunks=(10, 6),
        dtype="int32",
    )
    assert paths == [f"group{i % 3:03d}/var{i:05d}" for i in range(7)]
    written = _all_bytes(store_case.store())
    expected = _zarr_reference(store_case.zarr_format, paths, 3, (20, 6), (10, 6), "int32")
    assert written == expected
    group = zarr.open_group(store_case.store(read_only=True), mode="r")
    assert group["group002/var00005"][:2, :2].tolist() == [[0, 1], [6, 7]]
    assert group["group002/var00005"][10:, 0].tolist() == [0] * 10  # unwritten: fill value


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_wide_hierarchy_metadata_only(zarr_format):
    memory = MemoryStore()
    paths = build_wide_hierarchy(memory, n_arrays=4, zarr_format=zarr_format, write_chunks=False)
    keys = list_keys(memory)
    per_array = 1 if zarr_format == 3 else 2  # zarr.json, or .zarray + .zattrs
    per_group = 1 if zarr_format == 3 else 2
    assert len(keys) == per_group * 11 + per_array * 4  # root + 10 groups, 4 arrays
    assert set(zarr.open_group(memory, mode="r").array_keys()) == set()
    assert {k for k, _ in zarr.open_group(memory, mode="r").arrays()} == set()
    assert {k for k, _ in zarr.open_group(memory, mode="r").members(max_depth=None)} >= set(paths)


def test_wide_hierarchy_rejects_no_groups():
    with pytest.raises(ValueError, match="groups >= 1"):
        build_wide_hierarchy(MemoryStore(), n_arrays=3, groups=0)


# --- build_demo_store -----------------------------------------------------------------------------


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_demo_store_has_its_problems(tmp_path, zarr_format):
    path = build_demo_store(tmp_path / "demo.zarr", zarr_format=zarr_format)
    assert path == str(tmp_path / "demo.zarr")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        consolidated = zarr.open_group(path, mode="r")
    assert "climate/wind" not in _members(consolidated)  # stale: added afterwards
    real = zarr.open_group(path, mode="r", use_consolidated=False)
    with pytest.warns(UserWarning, match="static is not recognized"):
        members = _members(real)
    assert "climate/wind" in members
    assert "climate/static" not in members
    assert "climate/static/elevation" not in members
    assert real["climate/wind"].shape == (8, 16, 16)


# --- corrupt ------------------------------------------------------------------------------------


def test_break_json(sample):
    key = _doc_key(sample, "climate/t2m")
    before = read_keys(sample.store(), [key])[key]
    corrupt.break_json(sample.store(), key)
    after = read_keys(sample.store(), [key])[key]
    assert after is not None
    assert before.startswith(after)
    assert len(after) < len(before)
    with pytest.raises(json.JSONDecodeError):
        json.loads(after)
    real = _group(sample, consolidated=False)
    with pytest.raises(ValueError, match=r"JSON|Expecting|Unterminated|delimiter"):
        real["climate/t2m"]


def test_delete_key_and_write_bytes(sample):
    key = _doc_key(sample, "time")
    corrupt.delete_key(sample.url, key, storage_options=sample.storage_options)
    assert key not in list_keys(sample.store())
    with pytest.raises(FileNotFoundError, match="time"):
        corrupt.delete_key(sample.store(), key)
    corrupt.write_bytes(sample.store(), "climate/junk.bin", b"\x00\x01")
    assert read_keys(sample.store(), ["climate/junk.bin"]) == {"climate/junk.bin": b"\x00\x01"}
    corrupt.write_bytes(sample.store(), "climate/empty", b"")
    assert read_keys(sample.store(), ["climate/empty"]) == {"climate/empty": b""}


def test_edit_document(sample):
    key = _doc_key(sample, "climate/t2m")
    original = json.loads(read_keys(sample.store(), [key])[key])
    written = corrupt.edit_document(
        sample.store(), key, set={"shape": [9, 16, 16], "extra": True}, remove=("fill_value",)
    )
    stored = json.loads(read_keys(sample.store(), [key])[key])
    assert stored == written
    assert stored["shape"] == [9, 16, 16]
    assert stored["extra"] is True
    assert "fill_value" not in stored
    assert {k: v for k, v in stored.items() if k not in ("shape", "extra")} == {
        k: v for k, v in original.items() if k not in ("shape", "fill_value")
    }
    corrupt.write_bytes(sample.store(), "list.json", b"[1]")
    with pytest.raises(ValueError, match="not a JSON object"):
        corrupt.edit_document(sample.store(), "list.json", set={"a": 1})


def test_add_array_unconsolidated(sample):
    path = corrupt.add_array_unconsolidated(
        sample.url,
        "climate/late",
        shape=(3, 4),
        chunks=(2, 2),
        dtype="int32",
        storage_options=sample.storage_options,
    )
    assert path == "climate/late"
    assert "climate/late" not in _members(_group(sample, consolidated=True))
    real = _group(sample, consolidated=False)
    assert "climate/late" in _members(real)
    assert real["climate/late"][:].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert real["climate/late"].metadata.zarr_format == sample.zarr_format


def test_remove_group_document(sample):
    removed = corrupt.remove_group_document(sample.store(), "climate/static")
    expected = (
        ["climate/static/zarr.json"]
        if sample.zarr_format == 3
        else ["climate/static/.zgroup", "climate/static/.zattrs"]
    )
    assert removed == expected
    keys = list_keys(sample.store())
    assert not set(expected) & set(keys)
    assert _doc_key(sample, "climate/static/elevation") in keys  # the children stay
    with pytest.raises(ValueError, match="No group document at 'time'"):
        corrupt.remove_group_document(sample.store(), "time")
    root = corrupt.remove_group_document(sample.store(), "")
    assert root[0] in ("zarr.json", ".zgroup")


def test_unsort_consolidated_makes_zarr_drop_children(sample):
    dropped = corrupt.unsort_consolidated(sample.store())
    assert dropped == ["climate"]
    # the sample has one parent per depth: a sibling group was added (and consolidated)
    real = _group(sample, consolidated=False)
    assert _members(real) == ALL_NODES | {"climate_aux", "climate_aux/flag"}
    misread = _group(sample, consolidated=True)
    children = {k for k, _ in misread["climate"].members()}
    assert children < {"precip", "static", "t2m"}  # zarr-python #4226
    with pytest.raises(KeyError, match="not found in consolidated metadata"):
        _members(misread)
    # a fresh consolidation puts everything back
    consolidate(sample.store())
    assert _members(_group(sample, consolidated=True)) == _members(real)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_unsort_consolidated_without_helper_nodes(zarr_format):
    memory = MemoryStore()
    build_wide_hierarchy(memory, n_arrays=4, groups=2, zarr_format=zarr_format)
    consolidate(memory)
    before = list_keys(memory)
    dropped = corrupt.unsort_consolidated(memory)
    assert dropped == ["group000", "group001"]
    assert list_keys(memory) == before  # only the consolidated document changed
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
        group = zarr.open_group(memory, mode="r", use_consolidated=True)
    assert {k for k, _ in group["group000"].members()} == {"var00002"}


def test_unsort_consolidated_with_no_busy_group():
    memory = MemoryStore()
    root = zarr.open_group(memory, mode="w", zarr_format=3)
    root.create_group("only").create_array("one", shape=(2,), dtype="i1")
    consolidate(memory)
    assert corrupt.unsort_consolidated(memory) == ["aux"]
    real = zarr.open_group(memory, mode="r", use_consolidated=False)
    assert _members(real) == {
        "only",
        "only/one",
        "aux",
        "aux/flag_a",
        "aux/flag_b",
        "aux_aux",
        "aux_aux/flag",
    }


def test_unsort_needs_consolidated_metadata(tmp_path):
    build_sample_hierarchy(tmp_path / "s.zarr", consolidated=False)
    with pytest.raises(ValueError, match="no consolidated metadata"):
        corrupt.unsort_consolidated(tmp_path / "s.zarr")


def test_write_out_of_grid_chunk(sample):
    key = corrupt.write_out_of_grid_chunk(sample.store(), "climate/static/elevation")
    sep = "/c/" if sample.zarr_format == 3 else "/"
    joiner = "/" if sample.zarr_format == 3 else "."
    assert key == f"climate/static/elevation{sep}{joiner.join(['2', '0'])}"
    values = read_keys(sample.store(), [key, key.replace("/2", "/0").replace("2.0", "0.0")])
    assert len(set(values.values())) == 1  # a copy of chunk 0
    # zarr ignores it: the array still reads as before
    real = _group(sample, consolidated=False)
    assert real["climate/static/elevation"].shape == (16, 16)


@pytest.mark.parametrize(
    ("zarr_format", "encoding"),
    [
        pytest.param(2, {"name": "v2", "separator": "."}, id="v2-dot"),
        pytest.param(2, {"name": "v2", "separator": "/"}, id="v2-slash"),
        pytest.param(3, None, id="v3-default"),
        pytest.param(3, {"name": "default", "separator": "."}, id="v3-default-dot"),
        pytest.param(3, {"name": "v2", "separator": "."}, id="v3-v2-dot"),
        pytest.param(3, {"name": "v2", "separator": "/"}, id="v3-v2-slash"),
    ],
)
def test_out_of_grid_chunk_key_encodings(zarr_format, encoding):
    memory = MemoryStore()
    root = zarr.open_group(memory, mode="w", zarr_format=zarr_format)
    array = root.create_array(
        "a", shape=(10, 4), chunks=(5, 4), dtype="i2", chunk_key_encoding=encoding
    )
    array[:] = 1
    key = corrupt.write_out_of_grid_chunk(memory, "a")
    assert key == "a/" + array.metadata.encode_chunk_key((2, 0))  # zarr's own encoding
    assert key in list_keys(memory)


def test_out_of_grid_needs_dimensions():
    memory = MemoryStore()
    zarr.open_group(memory, mode="w").create_array("s", shape=(), dtype="i1")
    with pytest.raises(ValueError, match="no dimensions"):
        corrupt.write_out_of_grid_chunk(memory, "s")
    with pytest.raises(ValueError, match="No array document"):
        corrupt.write_out_of_grid_chunk(memory, "missing")


def test_mixed_format_node(sample):
    array_key = corrupt.mixed_format_node(sample.store(), "climate/t2m")
    group_key = corrupt.mixed_format_node(sample.store(), "climate")
    if sample.zarr_format == 3:
        assert (array_key, group_key) == ("climate/t2m/.zarray", "climate/.zgroup")
        doc = json.loads(read_keys(sample.store(), [array_key])[array_key])
        assert (doc["shape"], doc["chunks"], doc["dtype"]) == ([8, 16, 16], [4, 8, 8], "<f4")
        assert doc["zarr_format"] == 2
    else:
        assert (array_key, group_key) == ("climate/t2m/zarr.json", "climate/zarr.json")
        doc = json.loads(read_keys(sample.store(), [array_key])[array_key])
        assert doc["shape"] == [8, 16, 16]
        assert doc["data_type"] == "float32"
        assert doc["chunk_grid"]["configuration"]["chunk_shape"] == [4, 8, 8]
        group_doc = json.loads(read_keys(sample.store(), [group_key])[group_key])
        assert group_doc["node_type"] == "group"
    with pytest.raises(ValueError, match="No Zarr node"):
        corrupt.mixed_format_node(sample.store(), "nowhere")


@pytest.mark.parametrize("store_case", ["v2-local", "v3-s3"], indirect=True)
def test_store_case_by_id(store_case, tmp_path):
    assert (store_case.zarr_format, store_case.where) in ((2, "local"), (3, "s3"))
    if store_case.where == "local":
        assert store_case.url == str(tmp_path / "store.zarr")
        assert store_case.storage_options is None
        assert store_case.child("other.zarr") == str(tmp_path / "other.zarr")
    else:
        bucket = store_case.url.split("/")[2]
        assert store_case.url == f"s3://{bucket}/store.zarr"
        assert store_case.child("other.zarr") == f"s3://{bucket}/other.zarr"
        assert set(store_case.storage_options) == {"key", "secret", "endpoint_url"}
    build_sample_hierarchy(
        store_case.child("other.zarr"),
        zarr_format=store_case.zarr_format,
        storage_options=store_case.storage_options,
    )
    assert store_case.store().read_only is False
    assert list_keys(store_case.store()) == []  # the case's own location is still empty


def test_unsort_helper_names_do_not_collide():
    memory = MemoryStore()
    build_sample_hierarchy(memory, consolidated=False)
    zarr.open_group(memory, mode="r+").create_group("climate_aux")  # empty: no second parent
    consolidate(memory)
    assert corrupt.unsort_consolidated(memory) == ["climate"]
    real = zarr.open_group(memory, mode="r", use_consolidated=False)
    assert {"climate_aux", "climate_aux2", "climate_aux2/flag"} <= _members(real)


def test_demo_entry_point(tmp_path, capsys):
    from zarr_dask_utils.testing import demo

    assert demo.main([str(tmp_path / "d.zarr")]) == 0
    assert str(tmp_path / "d.zarr") in capsys.readouterr().out
    assert (tmp_path / "d.zarr" / "climate" / "wind" / "zarr.json").exists()
    assert demo.main([]) == 2
    assert "usage:" in capsys.readouterr().err
