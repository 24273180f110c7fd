"""Pure optimize modules: rechunk plans, access patterns, cost model and recommendations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zarr_dask_utils import InvalidOptionError
from zarr_dask_utils._core.pure.access_patterns import (
    AccessPattern,
    resolve_patterns,
    selection_from_user,
    time_axis,
)
from zarr_dask_utils._core.pure.chunk_choice import consistent_chunks, recommend_chunks
from zarr_dask_utils._core.pure.cost_model import (
    CostParams,
    SelectionCost,
    pattern_cost,
    selection_cost,
)
from zarr_dask_utils.optimize.plan import (
    block_regions,
    choose_engine,
    normalize_chunks,
    plan_rechunk,
    read_amplification,
)

# --- plan ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "dims", "expected"),
    [
        (None, None, (10, 5)),
        ((-1, 3), None, (100, 3)),
        ((None, 500), None, (100, 50)),
        ({"time": 20}, ("time", "x"), (20, 5)),
        ({"other": 20}, ("time", "x"), (10, 5)),
        ({"time": -1}, None, (10, 5)),
    ],
    ids=["keep", "minus-one", "clip", "by-name", "unknown-name", "no-dims"],
)
def test_normalize_chunks(spec, dims, expected):
    assert normalize_chunks(spec, (100, 50), (10, 5), dims) == expected


@given(
    shape=st.lists(st.integers(0, 40), min_size=1, max_size=3),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_block_regions_tile_the_array_exactly(shape, data):
    block = [data.draw(st.integers(1, max(n, 1))) for n in shape]
    covered = sum(math.prod(b - a for a, b in r) for r in block_regions(shape, block))
    assert covered == math.prod(shape)
    for region in block_regions(shape, block):
        assert all(a % b == 0 for (a, _), b in zip(region, block, strict=True))


@pytest.mark.parametrize(
    ("shape", "block", "chunks", "expected"),
    [
        ((100,), (10,), (10,), 1.0),
        ((100,), (10,), (100,), 10.0),
        ((100, 100), (100, 10), (1, 100), 10.0),
        ((10,), (4,), (3,), 1.6),  # [0,6) + [3,9) + [6,10)
    ],
)
def test_read_amplification(shape, block, chunks, expected):
    assert read_amplification(shape, block, chunks) == pytest.approx(expected)


@given(
    t=st.integers(1, 200),
    y=st.integers(1, 60),
    x=st.integers(1, 60),
    src=st.tuples(st.integers(1, 50), st.integers(1, 60), st.integers(1, 60)),
    dst=st.tuples(st.integers(1, 200), st.integers(1, 10), st.integers(1, 10)),
    mem_units=st.integers(1, 40),
    two=st.booleans(),
)
@settings(max_examples=80, deadline=None)
def test_plan_blocks_fit_memory_and_align_to_stored_objects(t, y, x, src, dst, mem_units, two):
    shape = (t, y, x)
    dst = tuple(min(d, n) for d, n in zip(dst, shape, strict=True))
    max_mem = math.prod(dst) * 4 * mem_units
    plan = plan_rechunk(shape, 4, src, dst, max_mem, allow_two_stage=two)
    last = plan.stages[-1]
    assert last.target == "target"
    for stage in plan.stages:
        assert math.prod(stage.block) * 4 <= max_mem
        assert all(
            b % c == 0 or b >= n
            for b, c, n in zip(stage.block, stage.target_chunks, shape, strict=True)
        )
    assert all(b % d == 0 or b >= n for b, d, n in zip(last.block, dst, shape, strict=True))
    if plan.two_stage:
        assert plan.stages[0].target == "temp"
        assert plan.stages[1].source == "temp"


def test_plan_orthogonal_goes_two_stage_only_with_temp():
    args = ((730, 180, 360), 4, (1, 180, 360), (730, 18, 36), 8 * 2**20)
    one = plan_rechunk(*args, allow_two_stage=False)
    two = plan_rechunk(*args, allow_two_stage=True)
    assert not one.two_stage
    assert one.direct_amplification > 2
    assert two.two_stage
    assert all(s.read_amplification <= 2 for s in two.stages)
    assert two.to_dict()["stages"][0]["target"] == "temp"


def test_plan_finds_the_direct_copy_rechunker_misses():
    # rechunker grows write blocks from the target side only: (64, 512, 512) here, each
    # source chunk read 4x; (256, 128, 512) holds whole chunks of both (issue 13, space->time)
    plan = plan_rechunk(
        (256, 512, 512), 4, (256, 16, 16), (1, 128, 512), 64 * 2**20, allow_two_stage=True
    )
    assert not plan.two_stage
    assert plan.direct_amplification == 1.0
    assert plan.stages[0].block == (256, 128, 512)
    # no block of whole chunks of both fits: rechunker's two stages stay
    orthogonal = plan_rechunk(
        (256, 512, 512), 4, (4, 512, 512), (256, 64, 64), 64 * 2**20, allow_two_stage=True
    )
    assert orthogonal.two_stage


@given(
    shape=st.tuples(st.integers(1, 60), st.integers(1, 60), st.integers(1, 30)),
    data=st.data(),
    mem_units=st.integers(1, 20),
)
@settings(max_examples=150, deadline=None)
def test_direct_plan_never_reads_more_than_rechunkers(shape, data, mem_units):
    from rechunker.algorithm import rechunking_plan

    source = tuple(data.draw(st.integers(1, n)) for n in shape)
    target = tuple(data.draw(st.integers(1, n)) for n in shape)
    max_mem = max(math.prod(target), math.prod(source)) * 4 * mem_units
    plan = plan_rechunk(shape, 4, source, target, max_mem, allow_two_stage=False)
    _, _, write = rechunking_plan(shape, source, target, 4, max_mem)
    assert plan.direct_amplification <= read_amplification(shape, write, source)
    assert plan.direct_amplification == read_amplification(shape, plan.write_chunks, source)


@given(
    shape=st.tuples(st.integers(1, 64), st.integers(1, 64), st.integers(1, 32)),
    data=st.data(),
    mem_units=st.integers(1, 24),
    threads=st.integers(1, 8),
)
@settings(max_examples=200, deadline=None)
def test_blocks_per_thread_never_read_more_nor_split_stored_objects(
    shape, data, mem_units, threads
):
    source = tuple(data.draw(st.integers(1, n)) for n in shape)
    target = tuple(data.draw(st.integers(1, n)) for n in shape)
    max_mem = max(math.prod(target), math.prod(source)) * 4 * mem_units
    args = (shape, 4, source, target, max_mem)
    old = plan_rechunk(*args, allow_two_stage=True)
    new = plan_rechunk(*args, allow_two_stage=True, threads=threads)
    assert len(new.stages) == len(old.stages)
    for before, after in zip(old.stages, new.stages, strict=True):
        assert math.prod(after.block) * 4 <= max_mem
        assert after.read_amplification <= before.read_amplification
        assert after.n_blocks(shape) >= min(before.n_blocks(shape), 2 * threads)
        assert all(  # every task writes whole objects of what it writes
            b % c == 0 or b >= n
            for b, c, n in zip(after.block, after.target_chunks, shape, strict=True)
        )
    last = new.stages[-1]
    assert all(b % w == 0 or b >= n for b, w, n in zip(last.block, target, shape, strict=True))
    if new.two_stage:  # stage 1 writes the temp copy's chunks, stage 2 reads them
        assert new.stages[0].target_chunks == new.intermediate_chunks
        assert new.stages[1].read_amplification == read_amplification(
            shape, new.stages[1].block, new.intermediate_chunks
        )


@pytest.mark.parametrize(
    ("source", "target", "inter", "blocks"),
    [
        ((4, 512, 512), (256, 64, 64), (32, 128, 256), ((32, 512, 512), (256, 128, 256))),
        ((256, 64, 64), (4, 512, 512), (32, 128, 256), ((256, 128, 256), (32, 512, 512))),
    ],
    ids=["time-to-space", "space-to-time"],
)
def test_two_stages_get_two_blocks_per_thread(source, target, inter, blocks):
    # issue 13: 4 blocks of 64 MiB per stage left threads idle at the end of each stage; with
    # 4 threads each stage gets 8 blocks of 32 MiB, still reading every chunk once
    args = ((256, 512, 512), 4, source, target, 64 * 2**20)
    old = plan_rechunk(*args, allow_two_stage=True)
    assert [s.n_blocks(old.shape) for s in old.stages] == [4, 4]
    plan = plan_rechunk(*args, allow_two_stage=True, threads=4)
    assert plan.intermediate_chunks == inter
    assert tuple(s.block for s in plan.stages) == blocks
    assert [s.n_blocks(plan.shape) for s in plan.stages] == [8, 8]
    assert [s.read_amplification for s in plan.stages] == [1.0, 1.0]
    # more threads than whole source chunks allow: the blocks stop at whole source chunks
    many = plan_rechunk(*args, allow_two_stage=True, threads=1024)
    assert all(b % c == 0 for b, c in zip(many.stages[0].block, source, strict=True))
    assert [s.read_amplification for s in many.stages] == [1.0, 1.0]


def test_plan_rejects_shards_bigger_than_max_mem():
    with pytest.raises(InvalidOptionError, match="max_mem"):
        plan_rechunk((100,), 8, (10,), (100,), 100, allow_two_stage=False)


@pytest.mark.parametrize(
    ("shape", "source", "target", "max_mem", "same_as"),
    [
        ((25, 5), (12, 2), (16, 1), 192, "read"),
        ((9, 37), (4, 19), (5, 3), 660, "read"),
        ((24, 51), (11, 26), (6, 50), 2400, "write"),
        ((36, 41), (14, 41), (8, 4), 2432, "write"),
    ],
    ids=["read-25x5", "read-9x37", "write-24x51", "write-36x41"],
)
def test_plan_is_one_stage_when_the_intermediate_is_read_or_write(
    shape, source, target, max_mem, same_as
):
    # an intermediate equal to the read (or write) chunks is a copy that changes nothing: a
    # second stage would only double the I/O
    plan = plan_rechunk(shape, 4, source, target, max_mem, allow_two_stage=True)
    assert plan.direct_amplification > 2  # two stages were allowed and would be considered
    chunks = plan.read_chunks if same_as == "read" else plan.write_chunks
    assert plan.intermediate_chunks == chunks
    assert not plan.two_stage
    assert plan.stages[0].read_amplification == plan.direct_amplification


@given(
    shape=st.tuples(st.integers(1, 60), st.integers(1, 60)),
    data=st.data(),
    mem_units=st.integers(1, 20),
)
@settings(max_examples=150, deadline=None)
def test_two_stage_plans_have_a_distinct_intermediate(shape, data, mem_units):
    source = tuple(data.draw(st.integers(1, n)) for n in shape)
    target = tuple(data.draw(st.integers(1, n)) for n in shape)
    plan = plan_rechunk(
        shape, 4, source, target, math.prod(target) * 4 * mem_units, allow_two_stage=True
    )
    if plan.two_stage:
        assert plan.direct_amplification > 2
        assert plan.intermediate_chunks not in (plan.read_chunks, plan.write_chunks)


@pytest.mark.parametrize(
    ("write_unit", "itemsize"),
    [((100,), 8), ((10, 10), 8), ((25,), 32)],
    ids=["1d", "2d", "wide-items"],
)
def test_plan_write_unit_of_exactly_max_mem_fits(write_unit, itemsize):
    unit_bytes = math.prod(write_unit) * itemsize
    shape = tuple(4 * n for n in write_unit)
    plan = plan_rechunk(shape, itemsize, write_unit, write_unit, unit_bytes, allow_two_stage=False)
    assert math.prod(plan.stages[-1].block) * itemsize == unit_bytes
    with pytest.raises(InvalidOptionError, match=f"holds {unit_bytes} bytes, more than"):
        plan_rechunk(shape, itemsize, write_unit, write_unit, unit_bytes - 1, allow_two_stage=False)


def _plan(amp_src=(1, 100), max_mem=4000, two=False):
    return plan_rechunk((100, 100), 4, amp_src, (100, 1), max_mem, allow_two_stage=two)


@pytest.mark.parametrize(
    ("requested", "has_temp", "distributed", "threads", "engine", "why"),
    [
        ("auto", False, True, 1, "p2p", "orthogonal"),
        ("auto", True, True, 1, "rechunker", "two stages"),
        ("auto", False, False, 1, "rechunker", "temp_store"),
        ("auto", False, True, 100, "rechunker", "fits"),
        ("tasks", False, True, 1, "tasks", "requested"),
    ],
)
def test_choose_engine(requested, has_temp, distributed, threads, engine, why):
    got, reason = choose_engine(
        requested, [_plan()], has_temp=has_temp, distributed=distributed, threads=threads
    )
    assert got == engine
    assert why in reason


def test_choose_engine_direct_when_aligned_and_errors():
    plan = plan_rechunk((100, 100), 4, (10, 100), (100, 100), 40000, allow_two_stage=False)
    assert choose_engine("auto", [plan], has_temp=False, distributed=True, threads=2)[0] == (
        "rechunker"
    )
    with pytest.raises(InvalidOptionError, match="Unknown"):
        choose_engine("fast", [plan], has_temp=False, distributed=True, threads=2)
    with pytest.raises(InvalidOptionError, match="distributed"):
        choose_engine("p2p", [plan], has_temp=False, distributed=False, threads=2)


# --- patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dims", "axis"), [(("x", "time"), 1), (("lat", "lon"), 0), (None, 0), (("x", "T"), 1)]
)
def test_time_axis(dims, axis):
    assert time_axis(dims) == axis


def test_named_patterns_shapes():
    shape, dims = (100, 20, 30), ("time", "lat", "lon")
    (ts,) = resolve_patterns("time-series", shape, dims)
    assert all(s[0] == (0, 100) and s[1][1] - s[1][0] == 1 for s in ts.selections)
    (sp,) = resolve_patterns("spatial", shape, dims)
    assert all(s[0][1] - s[0][0] == 1 and s[1:] == ((0, 20), (0, 30)) for s in sp.selections)
    (seq,) = resolve_patterns("sequential", shape, dims)
    assert seq.selections == (((0, 100), (0, 20), (0, 30)),)
    (rnd,) = resolve_patterns("random", shape, dims, window=8, samples=5)
    assert len(rnd.selections) == 5
    assert all(hi - lo == 8 for s in rnd.selections for lo, hi in s)
    both = resolve_patterns({"spatial": 2, "random": 1}, shape, dims)
    assert [(p.name, p.weight) for p in both] == [("spatial", 2.0), ("random", 1.0)]
    assert [p.name for p in resolve_patterns(["spatial", "sequential"], shape, dims)] == [
        "spatial",
        "sequential",
    ]


def test_user_selections():
    shape, dims = (10, 20), ("time", "x")
    pats = resolve_patterns([(slice(0, 5), 3), ({"x": slice(2, 4)}, 2.5)], shape, dims)
    assert pats[0].selections == (((0, 5), (3, 4)),)
    assert pats[1].selections == (((0, 10), (2, 4)),)
    assert pats[1].weight == 2.5
    assert selection_from_user(-1, shape, dims) == ((9, 10), (0, 20))


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ({"y": 1}, "does not have"),
        ((1, 2, 3), "more entries"),
        ((slice(0, 10, 2),), "step"),
        ((11,), "outside"),
        (("a",), "neither"),
    ],
)
def test_bad_selections(item, match):
    with pytest.raises(InvalidOptionError, match=match):
        selection_from_user(item, (10, 20), ("time", "x"))


def test_bad_patterns():
    with pytest.raises(InvalidOptionError, match="Unknown access pattern"):
        resolve_patterns("diagonal", (10,), None)
    with pytest.raises(InvalidOptionError, match="empty"):
        resolve_patterns([], (10,), None)


# --- cost model ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sel", "chunks", "shards", "requests", "touched"),
    [
        (((0, 100),), (10,), None, 10, 10),
        (((5, 15),), (10,), None, 2, 2),
        (((0, 0),), (10,), None, 0, 0),
        (((0, 40),), (10,), (20,), 2, 4),  # two whole shards: one request each
        (((0, 10),), (10,), (20,), 2, 1),  # partial shard: index + one chunk
        (((0, 30),), (10,), (20,), 3, 3),  # one whole shard + index and a chunk of the next
    ],
    ids=["full", "straddle", "empty", "whole-shards", "partial-shard", "mixed"],
)
def test_selection_cost_counts(sel, chunks, shards, requests, touched):
    cost = selection_cost(sel, chunks, 4, shards=shards)
    assert cost.requests == requests
    assert cost.chunks_touched == touched


@pytest.mark.parametrize(
    ("requests", "concurrency", "waves"),
    [(1, 16, 1), (15, 16, 1), (16, 16, 1), (17, 16, 2), (0, 16, 0), (3, 1, 3)],
    ids=["one-request", "under-concurrency", "exactly", "one-over", "none", "serial"],
)
def test_request_latency_is_paid_per_started_wave(requests, concurrency, waves):
    # requests overlap `concurrency` deep: a partial wave still waits one full latency
    cost = SelectionCost(requests, requests, 0, 0, 0)
    params = CostParams(latency=1.0, concurrency=concurrency)
    assert cost.seconds(params) == pytest.approx(waves)


def test_selection_cost_bytes_and_time():
    cost = selection_cost(((0, 5), (0, 10)), (10, 10), 4, compression_ratio=2.0)
    assert cost.bytes_needed == 200
    assert cost.bytes_decoded == 400
    assert cost.bytes_read == 200
    params = CostParams(latency=1.0, bandwidth=100.0, decode_rate=400.0, concurrency=1)
    assert cost.seconds(params) == pytest.approx(1 + 2 + 1)
    assert params.to_dict()["source"] == "defaults"
    pc = pattern_cost(AccessPattern("p", (((0, 5), (0, 10)),)), (10, 10), 4, params)
    assert pc.amplification == 2.0
    assert pc.to_dict()["requests"] == 1


SHAPE = (1000, 100, 100)
DIMS = ("time", "lat", "lon")


def _recommend(pattern, **kw):
    pats = resolve_patterns(pattern, SHAPE, DIMS)
    return recommend_chunks(
        SHAPE,
        4,
        pats,
        current=(10, 10, 10),
        min_bytes=16 * 1024,
        max_bytes=16 * 2**20,
        dims=DIMS,
        **kw,
    )


def test_time_series_wants_long_time_chunks():
    rec = _recommend("time-series")
    assert rec.chunks[0] == 1000
    assert math.prod(rec.chunks) * 4 >= 16 * 1024
    assert "whole along time" in rec.reasoning


def test_spatial_wants_one_step_per_chunk():
    rec = _recommend("spatial")
    assert rec.chunks == (1, 100, 100)
    assert "one element along time" in rec.reasoning


def test_sequential_wants_big_chunks_and_shards_for_v3():
    rec = _recommend("sequential", zarr_format=3, shard_bytes=2**30)
    assert math.prod(rec.chunks) * 4 >= 4 * 2**20
    pats = resolve_patterns("random", SHAPE, DIMS, window=4)
    small = recommend_chunks(
        SHAPE,
        4,
        pats,
        current=(10, 10, 10),
        min_bytes=1,
        max_bytes=2**20,
        zarr_format=3,
        shard_bytes=2**24,
    )
    assert small.shards is not None
    assert all(s % c == 0 for s, c in zip(small.shards, small.chunks, strict=True))
    assert "shards" in small.reasoning


def test_weighted_mix_sits_between():
    ts = _recommend("time-series").chunks[0]
    sp = _recommend("spatial").chunks[0]
    mix = _recommend({"time-series": 1, "spatial": 1}).chunks[0]
    assert sp <= mix <= ts


def test_consistent_chunks_follow_the_largest_array():
    arrays = [
        {
            "path": "t2m",
            "dims": ["time", "lat"],
            "shape": [100, 10],
            "nbytes": 4000,
            "chunks": [50, 10],
        },
        {"path": "time", "dims": ["time"], "shape": [100], "nbytes": 800, "chunks": [100]},
        {"path": "lat", "dims": ["lat"], "shape": [10], "nbytes": 80, "chunks": [10]},
        {"path": "x", "dims": [None], "shape": [7], "nbytes": 7, "chunks": [7]},
    ]
    out = consistent_chunks(arrays)
    assert out == {"t2m": (50, 10), "time": (50,), "lat": (10,), "x": (7,)}
