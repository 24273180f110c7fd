"""The pure metadata layer: document checks, structure checks, consolidated logic, planning."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarr_dask_utils._core.checks.consolidated_state import (
    canonical_order,
    consolidated_findings,
    current_entries,
    diff_entries,
    dropped_parents,
    expected_entries,
    render_consolidated,
)
from zarr_dask_utils._core.checks.documents import check_document
from zarr_dask_utils._core.checks.structure import (
    ArrayGrid,
    chunk_key_findings,
    parse_hierarchy,
    structure_findings,
)
from zarr_dask_utils.metadata.plan import plan_repairs

V3_ARRAY = {
    "zarr_format": 3,
    "node_type": "array",
    "shape": [10, 20],
    "data_type": "float32",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [5, 10]}},
    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
    "fill_value": 0.0,
    "codecs": [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "zstd", "configuration": {"level": 0, "checksum": False}},
    ],
    "attributes": {},
}
V2_ARRAY = {
    "zarr_format": 2,
    "shape": [10, 20],
    "chunks": [5, 10],
    "dtype": "<f4",
    "compressor": {"id": "zlib", "level": 1},
    "fill_value": "NaN",
    "order": "C",
    "filters": None,
    "dimension_separator": ".",
}
V3_GROUP = {"zarr_format": 3, "node_type": "group", "attributes": {"title": "x"}}


def _with(doc, **changes):
    new = copy.deepcopy(doc)
    for key, value in changes.items():
        if value is KeyError:
            new.pop(key)
        else:
            new[key] = value
    return new


def _codes(findings):
    return sorted({f.code for f in findings})


DOCUMENT_CASES = [
    ("v3-ok", "zarr.json", V3_ARRAY, []),
    ("v3-group-ok", "zarr.json", V3_GROUP, []),
    ("v2-ok", ".zarray", V2_ARRAY, []),
    ("v2-group-ok", ".zgroup", {"zarr_format": 2}, []),
    ("v2-attrs-ok", ".zattrs", {"a": 1}, []),
    ("v3-missing-shape", "zarr.json", _with(V3_ARRAY, shape=KeyError), ["metadata-missing-key"]),
    ("v3-missing-codecs", "zarr.json", _with(V3_ARRAY, codecs=KeyError), ["metadata-missing-key"]),
    ("v3-bad-dtype", "zarr.json", _with(V3_ARRAY, data_type="float33"), ["dtype-invalid"]),
    ("v3-negative-shape", "zarr.json", _with(V3_ARRAY, shape=[-1, 20]), ["shape-invalid"]),
    (
        "v3-zero-chunk",
        "zarr.json",
        _with(V3_ARRAY, chunk_grid={"name": "regular", "configuration": {"chunk_shape": [0, 10]}}),
        ["chunks-invalid"],
    ),
    (
        "v3-chunk-ndim",
        "zarr.json",
        _with(V3_ARRAY, chunk_grid={"name": "regular", "configuration": {"chunk_shape": [5]}}),
        ["chunks-invalid"],
    ),
    (
        "v3-irregular-grid",
        "zarr.json",
        _with(V3_ARRAY, chunk_grid={"name": "rectilinear", "configuration": {}}),
        ["chunks-invalid"],
    ),
    ("v3-bad-fill", "zarr.json", _with(V3_ARRAY, fill_value="abc"), ["fill-value-invalid"]),
    (
        "v3-fill-overflow",
        "zarr.json",
        _with(V3_ARRAY, data_type="int16", fill_value=70000),
        ["fill-value-invalid"],
    ),
    (
        "v3-unknown-codec",
        "zarr.json",
        _with(V3_ARRAY, codecs=[{"name": "bytes"}, {"name": "lzma9"}]),
        ["codec-unavailable"],
    ),
    (
        "v3-unknown-inner-codec",
        "zarr.json",
        _with(
            V3_ARRAY,
            codecs=[
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": [5, 5],
                        "codecs": [{"name": "bytes"}, {"name": "nope"}],
                        "index_codecs": [{"name": "bytes"}, {"name": "crc32c"}],
                    },
                }
            ],
        ),
        ["codec-unavailable"],
    ),
    (
        "v3-bad-encoding",
        "zarr.json",
        _with(
            V3_ARRAY, chunk_key_encoding={"name": "default", "configuration": {"separator": "-"}}
        ),
        ["chunk-key-encoding-invalid"],
    ),
    (
        "v3-dimension-names",
        "zarr.json",
        _with(V3_ARRAY, dimension_names=["x"]),
        ["dimension-names-invalid"],
    ),
    ("v3-attrs-list", "zarr.json", _with(V3_ARRAY, attributes=[1]), ["attributes-invalid"]),
    ("v3-wrong-format", "zarr.json", _with(V3_ARRAY, zarr_format=2), ["zarr-format-invalid"]),
    ("v3-node-type", "zarr.json", _with(V3_ARRAY, node_type="table"), ["node-type-invalid"]),
    ("v3-no-node-type", "zarr.json", _with(V3_GROUP, node_type=KeyError), ["metadata-missing-key"]),
    ("not-object", "zarr.json", [1, 2], ["metadata-invalid"]),
    ("v2-missing-dtype", ".zarray", _with(V2_ARRAY, dtype=KeyError), ["metadata-missing-key"]),
    ("v2-bad-dtype", ".zarray", _with(V2_ARRAY, dtype="<q9"), ["dtype-invalid"]),
    ("v2-bad-chunks", ".zarray", _with(V2_ARRAY, chunks=[5, "x"]), ["chunks-invalid"]),
    ("v2-bad-shape", ".zarray", _with(V2_ARRAY, shape="big"), ["shape-invalid"]),
    (
        "v2-bad-fill",
        ".zarray",
        _with(V2_ARRAY, dtype="<i2", fill_value="x"),
        ["fill-value-invalid"],
    ),
    ("v2-null-fill-ok", ".zarray", _with(V2_ARRAY, fill_value=None), []),
    (
        "v2-unknown-compressor",
        ".zarray",
        _with(V2_ARRAY, compressor={"id": "nope"}),
        ["codec-unavailable"],
    ),
    (
        "v2-unknown-filter",
        ".zarray",
        _with(V2_ARRAY, filters=[{"id": "nope"}]),
        ["codec-unavailable"],
    ),
    ("v2-codec-no-id", ".zarray", _with(V2_ARRAY, compressor={"level": 1}), ["metadata-invalid"]),
    ("v2-order", ".zarray", _with(V2_ARRAY, order="K"), ["metadata-invalid"]),
    (
        "v2-separator",
        ".zarray",
        _with(V2_ARRAY, dimension_separator="-"),
        ["chunk-key-encoding-invalid"],
    ),
    ("v2-wrong-format", ".zgroup", {"zarr_format": 3}, ["zarr-format-invalid"]),
    ("v2-group-no-format", ".zgroup", {}, ["metadata-missing-key"]),
    ("v2-attrs-not-object", ".zattrs", [1], ["attributes-invalid"]),
]


@pytest.mark.parametrize(
    ("name", "doc", "codes"),
    [pytest.param(n, d, c, id=i) for i, n, d, c in DOCUMENT_CASES],
)
def test_document_checks(name, doc, codes):
    findings = check_document(name, doc, f"a/{name}")
    assert _codes(findings) == codes
    assert all(f.location == f"a/{name}" for f in findings)
    # a codec not installed here is "not checkable", neither healthy nor broken (issue 12)
    assert all(
        f.severity == ("warning" if f.code == "codec-unavailable" else "error") for f in findings
    )


def _raw(docs):
    return {k: json.dumps(v).encode() if not isinstance(v, bytes) else v for k, v in docs.items()}


def _parsed(docs, fmt=3):
    parsed, findings = parse_hierarchy(_raw(docs), fmt)
    return parsed, findings


def test_broken_json_is_reported_and_skipped():
    parsed, findings = _parsed({"zarr.json": V3_GROUP, "a/zarr.json": b'{"x": '})
    assert _codes(findings) == ["json-invalid"]
    assert findings[0].location == "a/zarr.json"
    assert parsed.node_kind("a") == "unknown"
    assert "a/zarr.json" in parsed.broken


def test_missing_intermediate_group_and_root():
    parsed, _ = _parsed({"a/b/zarr.json": V3_ARRAY})
    found = structure_findings(parsed)
    missing = sorted(f.location for f in found if f.code == "group-document-missing")
    assert missing == ["", "a"]


def test_node_inside_array_and_mixed_formats():
    parsed, _ = _parsed(
        {
            "zarr.json": V3_GROUP,
            "x/zarr.json": V3_ARRAY,
            "x/y/zarr.json": V3_GROUP,
            "z/.zgroup": {"zarr_format": 2},
        }
    )
    found = structure_findings(parsed)
    assert ("node-inside-array", "x/y") in {(f.code, f.location) for f in found}
    assert ("mixed-formats", "z") in {(f.code, f.location) for f in found}


@pytest.mark.parametrize(
    ("grid", "key", "coords"),
    [
        (ArrayGrid("a", (2, 3), "c", "/"), "c/1/2", (1, 2)),
        (ArrayGrid("a", (2, 3), "c", "."), "c.1.2", (1, 2)),
        (ArrayGrid("a", (2, 3), "", "."), "1.2", (1, 2)),
        (ArrayGrid("a", (2, 3), "", "/"), "1/2", (1, 2)),
        (ArrayGrid("a", (), "c", "/"), "c", ()),
        (ArrayGrid("a", (), "", "."), "0", ()),
        (ArrayGrid("a", (2, 3), "c", "/"), "c/1", None),
        (ArrayGrid("a", (2, 3), "c", "/"), "1/2", None),
        (ArrayGrid("a", (2, 3), "", "."), "1.x", None),
        (ArrayGrid("a", (2,), "", "."), "0.abc.partial", None),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_chunk_key_parsing(grid, key, coords):
    assert grid.parse(key) == coords


def test_chunk_key_findings():
    docs = {"zarr.json": V3_GROUP, "t/zarr.json": V3_ARRAY}
    parsed, _ = _parsed(docs)
    listing = [
        "zarr.json",
        "t/zarr.json",
        "t/c/0/0",
        "t/c/1/1",
        "t/c/2/0",
        "t/c/0/0.x1.partial",
        "ghost/c/0/0",
        "README.md",
        ".zdu/backups/1/zarr.json",
    ]
    found = chunk_key_findings(parsed, listing, ignore_prefix=".zdu/backups")
    got = {(f.code, f.location) for f in found}
    assert ("chunk-key-outside-grid", "t/c/2/0") in got
    assert ("chunk-key-invalid", "t/c/0/0.x1.partial") in got
    assert ("array-document-missing", "ghost") in got
    assert ("unexpected-key", "README.md") in got
    assert not any(f.location.startswith(".zdu") for f in found)
    assert len(found) == 4


def test_chunk_key_findings_are_capped():
    parsed, _ = _parsed({"zarr.json": V3_GROUP, "t/zarr.json": V3_ARRAY})
    listing = [f"t/c/9/{i}" for i in range(150)]
    found = chunk_key_findings(parsed, listing)
    assert len(found) == 101
    assert "50 more" in found[-1].message


def _v3_hierarchy():
    child = {"zarr_format": 3, "node_type": "group", "attributes": {}}
    docs = {
        "zarr.json": dict(V3_GROUP),
        "b/zarr.json": child,
        "b/x/zarr.json": V3_ARRAY,
        "a/zarr.json": V3_ARRAY,
    }
    return docs


def test_expected_entries_v3_are_sorted_and_marked():
    parsed, _ = _parsed(_v3_hierarchy())
    entries = expected_entries(parsed)
    assert list(entries) == ["a", "b", "b/x"]
    assert entries["b"]["consolidated_metadata"] == {
        "kind": "inline",
        "must_understand": False,
        "metadata": {},
    }


def test_consolidated_findings_v3():
    docs = _v3_hierarchy()
    parsed, _ = _parsed(docs)
    assert _codes(consolidated_findings(parsed)) == ["consolidated-missing"]
    entries = expected_entries(parsed)
    stale = dict(entries)
    stale.pop("a")
    stale["gone"] = V3_ARRAY
    stale["b/x"] = _with(V3_ARRAY, shape=[99, 20])
    docs["zarr.json"] = {
        **V3_GROUP,
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": stale},
    }
    parsed, _ = _parsed(docs)
    found = consolidated_findings(parsed)
    by_loc = {f.location: f for f in found}
    assert set(by_loc) == {"a", "gone", "b/x"}
    assert "shape" in by_loc["b/x"].message


def test_consolidated_invalid_and_unreadable():
    docs = {"zarr.json": {**V3_GROUP, "consolidated_metadata": {"kind": "inline"}}}
    parsed, _ = _parsed(docs)
    assert _codes(consolidated_findings(parsed)) == ["consolidated-invalid"]
    parsed, _ = _parsed({".zgroup": {"zarr_format": 2}, ".zmetadata": b"{"}, fmt=2)
    assert consolidated_findings(parsed) == []


def test_unsorted_consolidated_that_drops_children():
    docs = {
        "zarr.json": V3_GROUP,
        "a/zarr.json": {"zarr_format": 3, "node_type": "group"},
        "b/zarr.json": {"zarr_format": 3, "node_type": "group"},
        "a/x/zarr.json": V3_ARRAY,
        "b/y/zarr.json": V3_ARRAY,
        "a/z/zarr.json": V3_ARRAY,
    }
    parsed, _ = _parsed(docs)
    entries = expected_entries(parsed)
    bad_order = ["a", "b", "a/x", "b/y", "a/z"]
    docs["zarr.json"] = {
        **V3_GROUP,
        "consolidated_metadata": {
            "kind": "inline",
            "must_understand": False,
            "metadata": {k: entries[k] for k in bad_order},
        },
    }
    parsed, _ = _parsed(docs)
    found = consolidated_findings(parsed)
    assert _codes(found) == ["consolidated-unsorted"]
    assert "'a'" in found[0].message


def test_plan_rewrites_consolidated_entries_that_are_current_but_unsorted():
    # the right entries in an order zarr-python 3.1 reads wrongly (#4226): a repair, not a guess
    docs = {
        "zarr.json": V3_GROUP,
        "a/zarr.json": {"zarr_format": 3, "node_type": "group", "attributes": {}},
        "b/zarr.json": {"zarr_format": 3, "node_type": "group", "attributes": {}},
        "a/x/zarr.json": V3_ARRAY,
        "b/y/zarr.json": V3_ARRAY,
        "a/z/zarr.json": V3_ARRAY,
    }
    parsed, _ = _parsed(docs)
    entries = expected_entries(parsed)
    docs["zarr.json"] = {
        **V3_GROUP,
        "consolidated_metadata": {
            "kind": "inline",
            "must_understand": False,
            "metadata": {k: entries[k] for k in ["a", "b", "a/x", "b/y", "a/z"]},
        },
    }
    parsed, _ = _parsed(docs)
    findings = consolidated_findings(parsed)
    assert _codes(findings) == ["consolidated-unsorted"]
    assert not diff_entries(current_entries(parsed)[1] or {}, expected_entries(parsed)).stale
    plan = plan_repairs(parsed, findings)
    assert [(a.action, a.key) for a in plan.actions] == [("write-consolidated", "zarr.json")]
    assert plan.unrepairable == ()
    written = json.loads(plan.actions[0].content)["consolidated_metadata"]["metadata"]
    assert list(written) == ["a", "b", "a/x", "a/z", "b/y"]


def test_v2_consolidated_round_trip():
    docs = {
        ".zgroup": {"zarr_format": 2},
        ".zattrs": {"t": 1},
        "x/.zarray": V2_ARRAY,
        "x/.zattrs": {},
    }
    parsed, _ = _parsed(docs, fmt=2)
    key, content = render_consolidated(parsed, expected_entries(parsed))
    assert key == ".zmetadata"
    docs[".zmetadata"] = json.loads(content)
    assert list(docs[".zmetadata"]["metadata"]) == [".zattrs", ".zgroup", "x/.zarray", "x/.zattrs"]
    parsed, _ = _parsed(docs, fmt=2)
    assert consolidated_findings(parsed) == []


def test_diff_entries_fields():
    diff = diff_entries({"a": {"shape": [1], "x": 1}}, {"a": {"shape": [2], "x": 1}, "b": {}})
    assert diff.added == ("b",)
    assert diff.changed == ("a",)
    assert diff.changed_fields["a"] == ("shape",)
    assert diff.stale


def test_plan_restores_from_consolidated_and_writes_consolidated_last():
    docs = _v3_hierarchy()
    parsed, _ = _parsed(docs)
    docs["zarr.json"] = {
        **V3_GROUP,
        "consolidated_metadata": {
            "kind": "inline",
            "must_understand": False,
            "metadata": expected_entries(parsed),
        },
    }
    docs["c/zarr.json"] = V3_ARRAY  # added after consolidation
    raw = _raw(docs)
    raw["a/zarr.json"] = b"{broken"
    del raw["b/zarr.json"]
    parsed, findings = parse_hierarchy(raw, 3)
    findings += structure_findings(parsed) + consolidated_findings(parsed)
    plan = plan_repairs(parsed, findings, existing_keys=raw)
    actions = [(a.action, a.key) for a in plan.actions]
    assert actions[-1] == ("write-consolidated", "zarr.json")
    assert ("restore-document", "a/zarr.json") in actions
    assert ("write-group-document", "b/zarr.json") in actions
    assert json.loads({a.key: a.content for a in plan.actions}["a/zarr.json"]) == V3_ARRAY
    assert plan.unrepairable == ()


def test_plan_leaves_guesses_to_humans_and_respects_consolidate_flag():
    docs = {"zarr.json": V3_GROUP, "t/zarr.json": _with(V3_ARRAY, data_type="float33")}
    parsed, findings = _parsed(docs)
    from zarr_dask_utils._core.checks.structure import document_findings

    findings += document_findings(parsed) + consolidated_findings(parsed)
    plan = plan_repairs(parsed, findings)
    assert plan.actions == ()
    assert _codes(plan.unrepairable) == ["dtype-invalid"]
    plan = plan_repairs(parsed, findings, consolidate=True)
    assert [a.action for a in plan.actions] == ["write-consolidated"]
    assert not plan.actions[0].replaces_existing or plan.actions[0].key == "zarr.json"


node_names = st.text(alphabet="abAB-._x", min_size=1, max_size=3)
paths = st.lists(node_names, min_size=1, max_size=3).map("/".join)


@given(st.lists(paths, min_size=1, max_size=15, unique=True))
def test_canonical_order_never_drops_children(keys):
    ordered = canonical_order(keys, 3)
    assert sorted(ordered) == sorted(keys)
    assert dropped_parents(ordered, 3) == []


@given(st.lists(paths, min_size=1, max_size=10, unique=True))
def test_dropped_parents_matches_zarr_grouping(keys):
    by_depth = sorted(keys, key=lambda k: k.count("/"))
    groups = [p for p, _ in itertools.groupby(by_depth, key=lambda k: k.rpartition("/")[0])]
    assert bool(dropped_parents(keys, 3)) == (len(groups) != len(set(groups)))
