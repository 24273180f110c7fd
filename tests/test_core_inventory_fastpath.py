"""The inventory's fast path for common chunk keys gives the general rules' answer for every key."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zarr_dask_utils._core.pure import inventory
from zarr_dask_utils._core.pure.chunkgrid import ArrayGrid
from zarr_dask_utils._core.pure.inventory import (
    KEY_CLASSES,
    ArrayInventory,
    _classify_array,
    _count_stored,
    _first_missing,
    _folder_owner,
    _reject,
    build_inventory,
)

PARTIAL = ".0123456789abcdef0123456789abcdef.partial"
PARTS = st.sampled_from(["0", "1", "2", "3", "7", "01", "00", "", "-1", "x", "٣", " 1", "10"])


def _slow(arr: ArrayInventory, keys: list[str], sizes: list[int]) -> list[str]:
    """The general rules alone, key by key (the reference the fast path must match)."""
    ok = [(k, s) for k, s in zip(keys, sizes, strict=True) if _reject(arr, k) is not None]
    _count_stored(arr, [k for k, _ in ok], [s for _, s in ok])
    return [k for k, _ in ok]


@st.composite
def cases(draw: st.DrawFn) -> tuple[ArrayGrid, list[str], list[int]]:
    grid = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=3)))
    prefix = draw(st.sampled_from(["c", ""]))
    sep = draw(st.sampled_from(["/", ".", "__"]))
    path = draw(st.sampled_from(["", "a", "g/a"]))
    arr = ArrayGrid(path, grid, prefix, sep, grid, (1,) * len(grid))
    keys = []
    for _ in range(draw(st.integers(0, 40))):
        parts = draw(st.lists(PARTS, min_size=len(grid) - 1, max_size=len(grid) + 1))
        head = draw(st.sampled_from([prefix + sep if prefix else "", "c/", "c.", ""]))
        rel = head + draw(st.sampled_from([sep, "/", "."])).join(parts)
        rel += draw(st.sampled_from(["", "", PARTIAL, "\n"]))
        keys.append(f"{path}/{rel}" if path else rel)
    sizes = draw(st.lists(st.sampled_from([0, 1, 2, 5, 9]), min_size=len(keys), max_size=len(keys)))
    return arr, keys, sizes


@pytest.mark.parametrize("named", [4096, 0])  # coordinates checked by set / by _Coordinate
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # the same value every example
@given(case=cases())
def test_fast_path_matches_general_rules(named, case, monkeypatch):
    monkeypatch.setattr(inventory, "_MAX_NAMED", named)
    grid, keys, sizes = case
    fast = ArrayInventory(grid.path, 3, grid, expected_size=(2, 5))
    slow = ArrayInventory(grid.path, 3, grid, expected_size=(2, 5))
    stored_fast = _classify_array(fast, keys, sizes)
    assert stored_fast == _slow(slow, keys, sizes)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    assert _first_missing(fast, stored_fast) == _first_missing(slow, stored_fast)


def test_inventory_of_common_and_odd_keys():
    doc = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [4, 5000],
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 1]}},
        "chunk_key_encoding": {"name": "default"},
        "codecs": [{"name": "bytes"}],
    }
    sizes = {f"a/c/{i}/{j}": 2 for i in range(2) for j in range(5000)}
    sizes["a/c/0/0"] = 0  # zero-byte
    sizes["a/c/1/0004999"] = 2  # leading zeros: the object at (1, 4999), stored
    del sizes["a/c/1/4999"]
    del sizes["a/c/0/7"]
    sizes |= {"a/c/2/0": 2, "a/c/0/5000": 2, "a/c/0//1": 2, "a/c/0/1" + PARTIAL: 2}
    sizes |= {"a/c/0/1/2": 2, "a/zarr.json": 9, "x/y": 1}
    inv = build_inventory({"a/zarr.json": doc}, sizes)
    arr = inv.arrays["a"]
    assert (arr.present, arr.expected, arr.missing) == (9999, 10000, 1)
    assert arr.missing_keys == ["a/c/0/7"]
    found = {c: arr.lists[c].keys for c in KEY_CLASSES if arr.lists[c].count}
    assert found == {
        "out_of_grid": ["a/c/2/0", "a/c/0/5000"],  # listing order
        "invalid": ["a/c/0//1", "a/c/0/1/2"],
        "partial": ["a/c/0/1" + PARTIAL],
        "zero_byte": ["a/c/0/0"],
    }
    assert (arr.min_size, arr.max_size, arr.stored_bytes) == (0, 2, 2 * 9998)
    assert (inv.objects, inv.metadata_objects, inv.unexpected.keys) == (len(sizes), 1, ["x/y"])


def _owner_by_prefixes(key: str, owners: set[str]) -> str | None:
    """The deepest owner among every ``/``-prefix of *key* (the rule the inventory had)."""
    parts = key.split("/")
    for i in range(len(parts) - 1, -1, -1):
        if "/".join(parts[:i]) in owners:
            return "/".join(parts[:i])
    return None


@settings(max_examples=300, deadline=None)
@given(
    owners=st.sets(st.sampled_from(["", "a", "a/b", "a/", "b/c/d", "/x"])),
    keys=st.lists(st.lists(st.sampled_from(["a", "b", "c", "d", "", "x"]), max_size=5)),
)
def test_owner_by_folder_matches_owner_by_prefixes(owners, keys):
    known: dict[str, str | None] = {}
    for parts in keys:
        key = "/".join(parts)
        parent = key.rpartition("/")[0]
        assert _folder_owner(parent, owners, known) == _owner_by_prefixes(key, owners)
