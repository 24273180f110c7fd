"""Pure parts of the integrity checks: grids, keys, inventory, plans, probabilities, diffs."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zarr_dask_utils._core.decoding.classify import classify_decode_error
from zarr_dask_utils._core.decoding.pipeline_decoder import ArrayStats, DecodeResult
from zarr_dask_utils._core.pure.chunkgrid import (
    ArrayGrid,
    chunk_grid,
    grid_from_document,
    is_partial_key,
)
from zarr_dask_utils._core.pure.inventory import (
    MAX_LISTED,
    build_inventory,
    itemsize_of,
    size_bounds,
)
from zarr_dask_utils._core.pure.nodes import NodeInfo
from zarr_dask_utils._core.pure.partition import Segment, batch_bounds, partition_keys, plan_batches
from zarr_dask_utils.integrity.compare import compare_values
from zarr_dask_utils.integrity.metadiff import metadata_differences
from zarr_dask_utils.integrity.plan import (
    cap,
    inventory_findings,
    miss_probability,
    sample_indices,
    smallest_detectable,
)
from zarr_dask_utils.integrity.reports import (
    ChunkSampleReport,
    ComparisonReport,
    IntegrityReport,
    ManifestReport,
    ManifestVerificationReport,
)
from zarr_dask_utils.integrity.sample import sample_statement

V2 = {"shape": [10, 10], "chunks": [4, 5], "dtype": "<f4", "compressor": {"id": "zstd"}}
V2_SLASH = {**V2, "dimension_separator": "/"}
V3 = {
    "node_type": "array",
    "shape": [10, 10],
    "data_type": "float32",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 5]}},
    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
    "codecs": [{"name": "bytes"}, {"name": "zstd"}],
}
V3_DOT = {**V3, "chunk_key_encoding": {"name": "default", "configuration": {"separator": "."}}}
V3_V2ENC = {**V3, "chunk_key_encoding": {"name": "v2", "configuration": {"separator": "."}}}
V3_SHARDED = {
    **V3,
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [8, 10]}},
    "codecs": [
        {
            "name": "sharding_indexed",
            "configuration": {"chunk_shape": [4, 5], "codecs": [{"name": "bytes"}]},
        }
    ],
}


@pytest.mark.parametrize(
    ("name", "doc", "key", "coords"),
    [
        pytest.param(".zarray", V2, "2.1", (2, 1), id="v2-dot"),
        pytest.param(".zarray", V2_SLASH, "2/1", (2, 1), id="v2-slash"),
        pytest.param("zarr.json", V3, "c/2/1", (2, 1), id="v3-default"),
        pytest.param("zarr.json", V3_DOT, "c.2.1", (2, 1), id="v3-default-dot"),
        pytest.param("zarr.json", V3_V2ENC, "2.1", (2, 1), id="v3-v2-encoding"),
        pytest.param("zarr.json", V3_SHARDED, "c/1/0", (1, 0), id="v3-sharded"),
    ],
)
def test_grid_keys_round_trip(name, doc, key, coords):
    grid = grid_from_document("a", name, doc)
    assert grid is not None
    assert grid.parse(key) == coords
    assert grid.key(coords) == key
    assert grid.in_grid(coords)
    assert grid.coords(list(dict(grid.keys()).values()).index(key)) == coords
    for bad in ("x", "c", "2.1.0", "c/2", "2/x", ".zarray"):
        assert grid.parse(bad) is None or bad == key


def test_grid_details():
    sharded = grid_from_document("a", "zarr.json", V3_SHARDED)
    assert sharded.grid == (2, 1)
    assert sharded.inner == (4, 5)
    assert sharded.region((1, 0)) == (slice(8, 10), slice(0, 10))
    assert grid_from_document("a", "zarr.json", {"node_type": "group"}) is None
    assert grid_from_document("a", ".zarray", {"shape": [1], "chunks": [0]}) is None
    assert grid_from_document("a", "zarr.json", {**V3, "chunk_grid": {}}) is None
    assert grid_from_document("a", "zarr.json", {**V3, "chunk_key_encoding": "v2"}).prefix == ""
    assert grid_from_document("a", ".zgroup", {}) is None
    assert grid_from_document("a", ".zarray", []) is None
    scalar_v3 = ArrayGrid("s", (), "c", "/", (), ())
    assert (scalar_v3.parse("c"), scalar_v3.key(()), scalar_v3.nchunks) == ((), "c", 1)
    scalar_v2 = ArrayGrid("s", (), "", ".", (), ())
    assert (scalar_v2.parse("0"), scalar_v2.parse("1"), scalar_v2.key(())) == ((), None, "0")
    assert ArrayGrid("s", (3,), "c", "/").parse("c") is None
    assert chunk_grid([10, True], [3, 1]) is None
    assert chunk_grid([10], [3, 1]) is None
    assert chunk_grid([-1], [3]) is None
    assert chunk_grid((0, 7), (2, 2)) == (0, 4)


@given(
    shape=st.lists(st.integers(0, 30), min_size=1, max_size=3),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_grid_keys_cover_the_array_once(shape, data):
    chunks = [data.draw(st.integers(1, 8)) for _ in shape]
    sep = data.draw(st.sampled_from(["/", "."]))
    prefix = data.draw(st.sampled_from(["c", ""]))
    grid = ArrayGrid("a", chunk_grid(shape, chunks), prefix, sep, tuple(shape), tuple(chunks))
    covered = np.zeros(shape, dtype=int)
    keys = set()
    for index, key in grid.keys():  # noqa: SIM118 - ArrayGrid.keys is not a dict's
        coords = grid.parse(key)
        assert coords == grid.coords(index)
        covered[grid.region(coords)] += 1
        keys.add(key)
    assert len(keys) == grid.nchunks
    assert (covered == 1).all()


@pytest.mark.parametrize(
    ("key", "partial"),
    [
        ("a/c/0/0.0123456789abcdef0123456789abcdef.partial", True),
        ("a/0.0123456789abcdef0123456789abcdef.partial", True),
        ("a/0.partial", False),
        ("a/c/0/0", False),
    ],
)
def test_partial_keys(key, partial):
    assert is_partial_key(key) is partial


def inv_sizes():
    return _inventory_case(sizes_only=True)


def _inventory_case(sizes_only=False):
    docs = {
        "zarr.json": {"node_type": "group"},
        "v3/zarr.json": V3,
        "v2/.zarray": V2,
        "sh/zarr.json": V3_SHARDED,
        "raw/.zarray": {**V2, "compressor": None, "dtype": "<i2"},
        "bad/zarr.json": {"node_type": "array", "shape": "x"},
        "broken/zarr.json": None,
    }
    sizes = dict.fromkeys(docs, 10)
    sizes.update({f"v3/c/{i}/{j}": 100 for i in range(3) for j in range(2)})  # 6 of 6
    sizes.update({"v3/c/2/1": 0, "v3/c/9/9": 5, "v3/junk": 1})
    sizes.update({f"v2/{i}.{j}": 50 for i in range(3) for j in range(2)})
    sizes["v2/0.0.0123456789abcdef0123456789abcdef.partial"] = 3
    sizes.update({"sh/c/0/0": 900, "raw/0.0": 40, "raw/0.1": 39, "raw/1.0": 10**6})
    sizes.update({"bad/c/0": 1, "notes.txt": 1, "x.0123456789abcdef0123456789abcdef.partial": 1})
    sizes[".zdu/backups/zarr.json"] = 5
    if sizes_only:
        return sizes
    return build_inventory(docs, sizes, ignore_prefix=".zdu/backups")


def test_inventory_classifies_every_object():
    inv = _inventory_case()
    v3, v2, sh, raw = (inv.arrays[p] for p in ("v3", "v2", "sh", "raw"))
    assert (v3.expected, v3.present, v3.missing) == (6, 6, 0)
    assert v3.lists["zero_byte"].keys == ["v3/c/2/1"]
    assert v3.lists["out_of_grid"].keys == ["v3/c/9/9"]
    assert v3.lists["invalid"].keys == ["v3/junk"]
    assert (v2.present, v2.missing) == (6, 0)
    assert v2.lists["partial"].count == 1
    assert (sh.expected, sh.present, sh.missing) == (2, 1, 1)
    assert raw.expected_size == (40, 40)
    assert raw.lists["too_small"].keys == ["raw/0.1"]
    assert raw.lists["too_large"].keys == ["raw/1.0"]
    assert inv.unusable == ["bad"]
    assert inv.unchecked == 1
    assert inv.unexpected.keys == ["notes.txt"]
    assert inv.partial.count == 1
    assert (inv.objects == len(_inventory_case().arrays) and False) or inv.objects > 20
    summary = raw.summary()
    assert (summary["too_small"], summary["min_size"], summary["max_size"]) == (1, 39, 10**6)


@pytest.mark.parametrize(
    ("encoding", "key"),
    [
        ({"name": "default"}, "c/1/0"),
        ("default", "c/1/0"),
        (None, "c/1/0"),
        ({"name": "v2"}, "1.0"),
        ({"name": "default", "configuration": {"separator": "."}}, "c.1.0"),
    ],
    ids=["default-no-separator", "default-as-string", "no-encoding", "v2-no-separator", "dot"],
)
def test_v3_key_encoding_defaults(encoding, key):
    # zarr 3: the default encoding separates with "/" unless told otherwise, the v2 one with "."
    doc = {k: v for k, v in V3.items() if k != "chunk_key_encoding"}
    if encoding is not None:
        doc["chunk_key_encoding"] = encoding
    grid = grid_from_document("x", "zarr.json", doc)
    assert grid is not None
    assert grid.key((1, 0)) == key
    assert grid.parse(key) == (1, 0)


@pytest.mark.parametrize(
    ("key", "inside"),
    [("c/2/1", True), ("c/3/0", False), ("c/0/2", False), ("c/3/2", False)],
    ids=["last-chunk", "one-past-rows", "one-past-columns", "one-past-both"],
)
def test_chunk_one_past_the_grid_is_outside(key, inside):
    # shape (10, 10) in chunks (4, 5): a 3 x 2 grid; shrinking the shape by one chunk leaves
    # exactly these keys behind
    grid = grid_from_document("v3", "zarr.json", V3)
    assert grid is not None
    coords = grid.parse(key)
    assert coords is not None
    assert grid.in_grid(coords) == inside
    inv = build_inventory({"v3/zarr.json": V3}, {"v3/zarr.json": 10, f"v3/{key}": 100})
    assert inv.arrays["v3"].lists["out_of_grid"].keys == ([] if inside else [f"v3/{key}"])


def test_inventory_findings_codes_and_missing_policy():
    inv = _inventory_case()
    findings = inventory_findings(inv)
    codes = {(f.code, f.location) for f in findings}
    assert ("chunk-zero-bytes", "v3/c/2/1") in codes
    assert ("chunk-key-outside-grid", "v3/c/9/9") in codes
    assert ("chunk-key-invalid", "v3/junk") in codes
    assert ("chunk-too-small", "raw/0.1") in codes
    assert ("chunk-too-large", "raw/1.0") in codes
    assert ("array-grid-unknown", "bad") in codes
    assert ("unexpected-key", "notes.txt") in codes
    assert {f.code for f in findings if "partial" in f.location} == {"partial-write-leftover"}
    raw_missing, missing = [f for f in findings if f.code == "chunks-missing"]
    assert (raw_missing.location, missing.location, missing.severity) == ("raw", "sh", "info")
    assert "1 of 2 shards" in missing.message
    strict = inventory_findings(inv, missing_chunks="error")
    assert [f.severity for f in strict if f.code == "chunks-missing"] == ["error", "error"]


def test_inventory_caps_long_key_lists():
    sizes = {"zarr.json": 1, **{f"junk{i}": 1 for i in range(MAX_LISTED + 5)}}
    inv = build_inventory({"zarr.json": {"node_type": "group"}}, sizes)
    findings = inventory_findings(inv)
    # issue 12 item 11: one summarised finding (count + first keys), not one per key
    assert [(f.code, f.location) for f in findings] == [("unexpected-key", "")]
    assert f"{MAX_LISTED + 5} objects ('junk0'" in findings[0].message
    assert "and 100 more" in findings[0].message
    assert len(cap(findings * 20, 10)) == 11


@pytest.mark.parametrize(
    ("doc", "bounds"),
    [
        pytest.param({**V2, "compressor": None}, (80, 80), id="v2-raw"),
        pytest.param({**V3, "codecs": [{"name": "bytes"}, {"name": "crc32c"}]}, (84, 84), id="crc"),
        pytest.param(V3, (1, 80 + 8 + 1024 + 16 + 64), id="compressed"),
        pytest.param({**V3, "data_type": "string"}, None, id="variable"),
        pytest.param({**V3, "data_type": {"name": "x"}}, None, id="odd-dtype"),
        pytest.param({**V3, "data_type": "nonsense"}, None, id="unknown-dtype"),
        pytest.param({**V3, "codecs": "x"}, None, id="bad-codecs"),
    ],
)
def test_size_bounds(doc, bounds):
    name = ".zarray" if "dtype" in doc else "zarr.json"
    grid = grid_from_document("a", name, doc)
    assert size_bounds(name, doc, grid) == bounds


def test_itemsize():
    assert itemsize_of(".zarray", {"dtype": "|O"}) is None
    assert itemsize_of("zarr.json", {"data_type": "int16"}) == 2


@given(
    arrays=st.dictionaries(
        st.text("abc", min_size=1, max_size=3), st.tuples(st.integers(0, 50), st.integers(1, 500))
    ),
    batch=st.integers(1, 2000),
    parallelism=st.integers(1, 5),
)
@settings(max_examples=120, deadline=None)
def test_plan_batches_covers_every_object_once(arrays, batch, parallelism):
    batches = plan_batches(arrays, batch, parallelism)
    seen = {path: [] for path in arrays}
    grand = sum(n * per for n, per in arrays.values())
    for b in batches:
        assert b
        total = sum((s.stop - s.start) * arrays[s.path][1] for s in b)
        largest = max(arrays[s.path][1] for s in b)
        assert total <= batch + largest  # the target, give or take the object at a cut
        assert total <= max(batch, grand) + largest
        for s in b:
            seen[s.path].extend(range(s.start, s.stop))
    assert all(seen[p] == list(range(n)) for p, (n, _) in arrays.items())


@given(total=st.integers(0, 10**6), batch=st.integers(1, 10**5), parallelism=st.integers(1, 8))
@settings(max_examples=200, deadline=None)
def test_batch_bounds(total, batch, parallelism):
    bounds = batch_bounds(total, batch, parallelism)
    if total == 0:
        assert bounds == []
        return
    gaps = [b - a for a, b in zip([0, *bounds], bounds, strict=False)]
    assert bounds[-1] == total
    assert all(g >= 0 for g in gaps)
    assert max(gaps) <= batch + 1  # never above the target
    cut = parallelism > 1 and len(bounds) >= 4 * parallelism
    head = gaps[: -3 * parallelism] if cut else gaps
    assert max(head) - min(head) <= 1  # equal shares...
    if cut and min(head) >= 8:  # ... and a last round of halves and quarters
        tail = gaps[-3 * parallelism :]
        assert sorted(tail)[-parallelism:] == sorted(tail[0::3])  # the halves
        assert max(tail) <= max(head) // 2 + 1
        assert max(tail[1::3] + tail[2::3]) <= max(head) // 4 + 1
    if parallelism > 1 and total // batch >= 1:
        rounded = -(-len(bounds) // parallelism) * parallelism
        assert len(bounds) == rounded or total // rounded < batch // 4


def test_plan_batches_gives_every_thread_equal_work():
    # 476 chunks of 2 MiB in 128 MiB batches: 8 batches (not 7 full and a small one)
    # and the last round cut in halves, for threads that finish early
    batches = plan_batches({"a": (476, 2**21)}, 2**27, parallelism=2)
    counts = [sum(s.stop - s.start for s in b) for b in batches]
    assert counts[:6] == [60, 59, 60, 59, 60, 59]
    assert counts[6:] == [30, 15, 15, 30, 15, 14]
    assert len(plan_batches({"a": (476, 2**21)}, 2**27, parallelism=3)) == 15
    assert len(plan_batches({"a": (476, 2**21)}, 2**27, parallelism=1)) == 8
    # rounding up to the threads never cuts batches below a quarter of the target
    assert len(plan_batches({"a": (10, 2**20)}, 2**27, parallelism=4)) == 1
    # small arrays share one batch
    assert plan_batches({"x": (1, 8), "y": (2, 8)}, 1000) == [
        (Segment("x", 0, 1), Segment("y", 0, 2))
    ]


def test_partition_keys():
    sizes = {"a": 5, "b": 5, "c": 20, "d": 1}
    assert partition_keys(sizes, 10) == [["a", "b"], ["c"], ["d"]]
    assert partition_keys(sizes, 100, max_keys=3) == [["a", "b", "c"], ["d"]]
    assert partition_keys({}, 10) == []


def test_sample_is_reproducible():
    first = sample_indices(1000, 0.05, seed=7)
    assert first == sample_indices(1000, 0.05, seed=7)
    assert first != sample_indices(1000, 0.05, seed=8)
    assert len(first) == 50
    assert first == sorted(set(first))
    assert sample_indices(10, 0.001, seed=1) != []
    assert sample_indices(0, 0.5, seed=1) == []
    assert sample_indices(5, 1.0, seed=3) == [0, 1, 2, 3, 4]


def _brute_force_miss(n_total, n_sampled, n_bad):
    bad = set(range(n_bad))
    samples = list(itertools.combinations(range(n_total), n_sampled))
    return Fraction(sum(not bad & set(s) for s in samples), len(samples))


@pytest.mark.parametrize(
    ("n_total", "n_sampled", "n_bad"),
    [(10, 3, 1), (10, 3, 2), (12, 5, 4), (8, 4, 1), (9, 8, 2), (6, 6, 1), (7, 2, 0)],
)
def test_miss_probability_is_hypergeometric(n_total, n_sampled, n_bad):
    exact = Fraction(math.comb(n_total - n_bad, n_sampled), math.comb(n_total, n_sampled))
    assert exact == _brute_force_miss(n_total, n_sampled, n_bad)
    assert miss_probability(n_total, n_sampled, n_bad) == pytest.approx(float(exact), rel=1e-9)


@pytest.mark.parametrize(
    ("n_total", "n_sampled", "n_bad"),
    [(10, 8, 2), (5, 4, 1), (3, 1, 2), (20, 10, 10)],
    ids=["8-of-10-with-2-bad", "4-of-5-with-1-bad", "1-of-3-with-2-bad", "half-and-half"],
)
def test_miss_probability_when_the_sample_is_as_large_as_the_good_chunks(n_total, n_sampled, n_bad):
    # the sample can still be exactly the good chunks: one chance in C(N, n), not zero
    assert n_sampled == n_total - n_bad
    expected = 1 / math.comb(n_total, n_sampled)
    assert miss_probability(n_total, n_sampled, n_bad) == pytest.approx(expected, rel=1e-9)
    assert miss_probability(n_total, n_sampled + 1, n_bad) == 0.0  # one more must hit a bad one


@given(n_total=st.integers(1, 40), data=st.data())
@settings(max_examples=200, deadline=None)
def test_miss_probability_matches_the_exact_fraction(n_total, data):
    n_sampled = data.draw(st.integers(0, n_total), label="n_sampled")
    n_bad = data.draw(st.integers(0, n_total), label="n_bad")
    exact = Fraction(math.comb(n_total - n_bad, n_sampled), math.comb(n_total, n_sampled))
    assert miss_probability(n_total, n_sampled, n_bad) == pytest.approx(float(exact), rel=1e-9)


@pytest.mark.parametrize(
    ("n_total", "rate", "expected"),
    [(10, 0.25, 3), (4, 0.5, 2), (7, 0.5, 4), (3, 0.1, 1), (100, 0.011, 2), (9, 0.99, 9)],
    ids=["2.5-rounds-up", "exact", "3.5-rounds-up", "at-least-one", "1.1-rounds-up", "8.91"],
)
def test_sample_size_rounds_up(n_total, rate, expected):
    assert len(sample_indices(n_total, rate, seed=0)) == expected


@given(n_total=st.integers(1, 500), rate=st.floats(1e-4, 1.0), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_sample_is_the_smallest_that_covers_the_rate(n_total, rate, seed):
    n = len(sample_indices(n_total, rate, seed))
    assert n >= rate * n_total  # never less than asked for
    assert n == 1 or n - 1 < rate * n_total  # and not one more than needed


@given(n_total=st.integers(1, 10**6), data=st.data())
@settings(max_examples=60, deadline=None)
def test_smallest_detectable_is_the_threshold(n_total, data):
    n = data.draw(st.integers(1, n_total))
    k = smallest_detectable(n_total, n)
    assert 1 - miss_probability(n_total, n, k) >= 0.95
    if k > 1:
        assert 1 - miss_probability(n_total, n, k - 1) < 0.95


def test_sample_statement():
    probs, k, text = sample_statement(100, 10, 0)
    assert probs[1] == pytest.approx(0.9)
    assert k == smallest_detectable(100, 10)
    assert f"rules out {k} or more" in text
    assert "damaged" in sample_statement(100, 10, 3)[2]
    assert smallest_detectable(10, 0) == 11


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("ValueError: Stored and computed checksum do not match", "chunk-checksum-mismatch"),
        ("ValueError: cannot reshape array of size 3 into shape (4,)", "chunk-wrong-size"),
        ("ValueError: buffer size must be a multiple of element size", "chunk-wrong-size"),
        ("RuntimeError: Zstd decompression error: invalid input data", "chunk-decode-error"),
    ],
)
def test_classify_decode_error(message, code):
    assert classify_decode_error(message) == code


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "expected"),
    [
        pytest.param([1.0, np.nan], [1.0, np.nan], {}, (0, 0.0), id="nan-equal"),
        pytest.param([1.0, 2.0], [1.5, 2.0], {}, (1, 0.5), id="float"),
        pytest.param([1.0, 2.0], [1.5, 2.0], {"atol": 1}, (0, 0.0), id="atol"),
        pytest.param([1.0, 2.0], [1.0, np.nan], {}, (1, math.inf), id="nan-vs-number"),
        pytest.param([1, 2], [1, 5], {}, (1, 3.0), id="int"),
        pytest.param([1, 2], [1, 3], {"rtol": 0.5}, (0, 0.0), id="int-rtol"),
        pytest.param(["a", "b"], ["a", "c"], {}, (1, math.nan), id="strings"),
        pytest.param(["a"], ["a"], {}, (0, 0.0), id="strings-equal"),
        pytest.param([1j], [2j], {}, (1, 1.0), id="complex"),
        pytest.param([1.0], [1.0, 2.0], {}, (2, math.inf), id="shape"),
    ],
)
def test_compare_values(x, y, kwargs, expected):
    kwargs = {"rtol": 0.0, "atol": 0.0, **kwargs}
    n, gap = compare_values(np.asarray(x), np.asarray(y), **kwargs)
    assert n == expected[0]
    assert (math.isnan(gap) and math.isnan(expected[1])) or gap == expected[1]


def test_metadata_differences_dimension_names_and_encoding():
    a = NodeInfo("x", "array", 2, (4,), "<f4", (2,), None, ("zstd",), 0.0, ("t",), {"u": 1})
    b = NodeInfo("x", "array", 3, (4,), "float32", (4,), None, ("zstd",), 0.0, ("time",), {"u": 1})
    found, comparable = metadata_differences({"x": a}, {"x": b})
    assert {f.code for f in found} == {"dimension-names-differ", "encoding-differs"}
    assert comparable == ["x"]
    odd = NodeInfo("x", "array", 3, (4,), "not-a-dtype", (4,))
    found, comparable = metadata_differences({"x": odd}, {"x": odd})
    assert (found, comparable) == ([], ["x"])


def test_stats_and_results_merge():
    s = ArrayStats()
    s.add(np.array([1.0, np.nan, np.inf, -2.0]))
    s.add(np.array(["a"]))
    s.add(np.array([3 + 4j]))
    s.add(np.array([np.nan]))
    other = ArrayStats()
    other.add(np.array([10], dtype="i2"))
    s.merge(other)
    s.merge(ArrayStats())
    assert (s.nan, s.inf, s.min, s.max, s.elements) == (2, 1, -2.0, 10, 8)
    r = DecodeResult()
    for i in range(1005):
        r.add_bad(f"k{i}", "chunk-decode-error", "x")
    total = DecodeResult().merge(r).merge(r)
    assert (total.bad_count, len(total.bad)) == (2010, 1000)


def test_result_merge_adds_every_counter():
    def result(n: int) -> DecodeResult:
        r = DecodeResult(decoded=n, missing=n + 1, raw_bytes=n + 2, decoded_bytes=n + 3)
        r.add_bad(f"k{n}", "chunk-decode-error", "x")
        r.unreadable[f"a{n}"] = "gone"
        r.stats["x"] = ArrayStats(nan=n, inf=n, min=-n, max=n, elements=n)
        return r

    total = DecodeResult().merge(result(10)).merge(result(20))
    assert (total.decoded, total.missing, total.raw_bytes, total.decoded_bytes) == (
        30,
        32,
        34,
        36,
    )
    assert (total.bad_count, [k for k, _, _ in total.bad]) == (2, ["k10", "k20"])
    assert total.unreadable == {"a10": "gone", "a20": "gone"}
    stats = total.stats["x"]
    assert (stats.nan, stats.inf, stats.min, stats.max, stats.elements) == (30, 30, -20, 20, 30)


def test_reports_render():
    reports = [
        IntegrityReport(
            location="s",
            zarr_format=3,
            deep=True,
            seconds=2.0,
            bytes_decoded=4 * 10**9,
            arrays=({"path": "a", "missing": 1, "nan": 0, "inf": 0, "min": 1, "max": 2},),
            notes=("n",),
        ),
        ChunkSampleReport(location="s", array="a", seed=1, sample_rate=0.1, statement="st"),
        ComparisonReport(location="s", other="o"),
        ManifestReport(location="s", algorithm="sha256", document={"objects": {}}),
        ManifestVerificationReport(location="s", algorithm="sha256", manifest="m"),
    ]
    text = [str(r) for r in reports]
    assert "2.00 GB/s" in text[0]
    assert "note: n" in text[0]
    assert "seed 1" in text[1]
    assert "compared with o" in text[2]
    assert "not written" in text[3]
    assert "document" not in reports[3].to_dict()
    assert "0 changed" in text[4]
    assert all("<div>" in r._repr_html_() for r in reports)


def test_same_bytes():
    from zarr_dask_utils.integrity.compare import same_bytes

    a, b = memoryview(b"abc"), memoryview(bytearray(b"abc"))
    assert same_bytes(a, b)
    assert same_bytes(None, None)  # missing on both sides: both read as fill value
    assert not same_bytes(a, None)
    assert not same_bytes(None, b)
    assert not same_bytes(a, memoryview(b"abcd"))
    assert not same_bytes(a, memoryview(b"abd"))


def test_unreadable_arrays_and_overflow_become_findings(tmp_path):
    import zarr

    from zarr_dask_utils._core.storage.locations import resolve_location
    from zarr_dask_utils._core.storage.objectstream import StreamSettings
    from zarr_dask_utils.integrity.findings import decode_findings
    from zarr_dask_utils.integrity.scan import scan_batch_task

    zarr.create_group(str(tmp_path / "g.zarr")).create_array(
        "a", shape=(4,), chunks=(2,), dtype="i1"
    )
    location = resolve_location(str(tmp_path / "g.zarr"))
    # an array the plan names but the workers cannot open (removed since it was planned)
    result = scan_batch_task(
        location, (("gone", 3, range(2)), ("a", 3, range(2))), False, StreamSettings(concurrency=4)
    )
    assert set(result.unreadable) == {"gone"}
    assert result.missing == 2  # "a" has no chunks written: both read as fill value
    result.bad_count = len(result.bad) + 5  # more bad chunks than a task lists
    codes = [(f.code, f.location) for f in decode_findings(result)]
    assert ("array-unreadable", "gone") in codes
    assert ("chunk-decode-error", "") in codes  # "... and 5 more bad chunks not listed"


@given(
    dims=st.lists(st.tuples(st.integers(1, 300), st.integers(1, 40)), min_size=1, max_size=3),
    itemsize=st.sampled_from([1, 4, 8]),
    limit=st.integers(1, 2**16),
)
@settings(max_examples=150, deadline=None)
def test_aligned_block(dims, itemsize, limit):
    from zarr_dask_utils._core.pure.partition import aligned_block

    shape = tuple(s for s, _ in dims)
    chunks = tuple(c for _, c in dims)
    block = aligned_block(shape, chunks, itemsize, limit)
    for b, c, s in zip(block, chunks, shape, strict=True):
        assert b == s or b % min(c, s) == 0  # whole chunks, or the whole extent
        assert min(c, s) <= b <= max(s, min(c, s))
    if block != tuple(min(c, s) for c, s in zip(chunks, shape, strict=True)):
        assert math.prod(block) * itemsize <= limit  # grown only while it fits
