"""Chunk-shuffling sampler, rank split, patch planning and the mixing score (pure, no I/O)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zarr_dask_utils import InvalidOptionError
from zarr_dask_utils.ml.mixing import chunk_mixing
from zarr_dask_utils.ml.patches import plan_patches
from zarr_dask_utils.ml.sampler import (
    ChunkShuffleSampler,
    StripedBatches,
    chunk_groups,
    rank_slice,
)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 200),
    chunk=st.integers(1, 40),
    k=st.integers(1, 20),
    world=st.integers(1, 7),
    seed=st.integers(0, 2**16),
    drop_last=st.booleans(),
)
def test_every_sample_once_per_epoch_for_any_k_and_rank_split(
    n: int, chunk: int, k: int, world: int, seed: int, drop_last: bool
) -> None:
    groups = chunk_groups(n, chunk)
    ranks = [
        ChunkShuffleSampler(
            groups, buffer_chunks=k, seed=seed, rank=r, world_size=world, drop_last=drop_last
        )
        for r in range(world)
    ]
    parts = [list(s) for s in ranks]
    assert {len(p) for p in parts} == {len(ranks[0])}  # every rank the same count (DDP)
    counts = Counter(i for p in parts for i in p)
    if drop_last:
        assert all(c == 1 for c in counts.values())
        assert len(counts) == n - n % world
    else:
        assert set(counts) == set(range(n))
        # padding repeats samples only to even the ranks out, as DistributedSampler does
        assert sum(counts.values()) - n == (-n) % world
        if n % world == 0:
            assert all(c == 1 for c in counts.values())


def test_same_seed_same_order_new_epoch_new_order() -> None:
    groups = chunk_groups(100, 10)
    a, b = ChunkShuffleSampler(groups, seed=7), ChunkShuffleSampler(groups, seed=7)
    first = list(a)
    assert first == list(b)
    assert list(a) != first  # the next iteration is the next epoch
    a.set_epoch(0)
    assert list(a) == first
    assert list(ChunkShuffleSampler(groups, seed=8)) != first


def test_samples_stay_inside_their_buffer_of_k_chunks() -> None:
    groups = chunk_groups(120, 10)  # 12 chunks
    order = ChunkShuffleSampler(groups, buffer_chunks=3, seed=1).epoch_order(0)
    for start in range(0, 120, 30):  # each run of 30 samples comes from 3 chunks
        assert len({i // 10 for i in order[start : start + 30]}) == 3
    assert list(ChunkShuffleSampler(groups, shuffle=False)) == list(range(120))


def test_rank_split_keeps_ranks_on_different_chunks() -> None:
    order = np.arange(40)
    assert rank_slice(order, 1, 4, False).tolist() == list(range(10, 20))
    assert rank_slice(np.arange(5), 2, 3, False).tolist() == [4, 0]  # padded from the start


def test_chunk_groups_with_patches_group_by_starting_chunk() -> None:
    # 4 time steps in chunks of 2; patches start at x = 0, 3, 6 in chunks of 4 → x chunk 0,0,1
    groups = chunk_groups(4, 2, [np.array([0, 0, 1])])
    assert [g.tolist() for g in groups] == [[0, 1, 3, 4], [2, 5], [6, 7, 9, 10], [8, 11]]


def test_bad_sampler_options_are_refused() -> None:
    with pytest.raises(InvalidOptionError, match="buffer_chunks"):
        ChunkShuffleSampler([], buffer_chunks=0)
    with pytest.raises(InvalidOptionError, match="rank 2"):
        ChunkShuffleSampler([], rank=2, world_size=2)


def test_mixing_score_orders_sequential_buffered_and_full_shuffle() -> None:
    groups = chunk_groups(4096, 64)
    chunk_of = np.arange(4096) // 64
    sequential = chunk_mixing(np.arange(4096), chunk_of, 32)
    k4 = chunk_mixing(ChunkShuffleSampler(groups, buffer_chunks=4).epoch_order(0), chunk_of, 32)
    k16 = chunk_mixing(ChunkShuffleSampler(groups, buffer_chunks=16).epoch_order(0), chunk_of, 32)
    full = chunk_mixing(np.random.default_rng(0).permutation(4096), chunk_of, 32)
    assert sequential.randomness == 0.0
    assert 0 < k4.randomness < k16.randomness < 1.0
    assert full.randomness == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    ("patch", "stride", "edge", "starts"),
    [
        ({"x": 4}, None, "drop", ((0, 4),)),
        ({"x": 4}, {"x": 3}, "drop", ((0, 3, 6),)),
        ({"x": 4}, None, "pad", ((0, 4, 8),)),
        ({"x": 10}, None, "drop", ((0,),)),
    ],
    ids=["whole-patches", "stride", "pad-edge", "patch-is-dim"],
)
def test_patch_plan_starts(patch, stride, edge, starts) -> None:
    plan = plan_patches({"t": 3, "x": 10}, "t", patch, stride, edge)
    assert plan.starts == starts
    assert plan.total == 3 * len(starts[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sample_dim": "time"}, "sample_dim='time' is not a dimension"),
        ({"sample_dim": "t", "patch": {"y": 2}}, "patch/stride"),
        ({"sample_dim": "t", "patch": {"x": 11}}, "larger than the dimension"),
        ({"sample_dim": "t", "patch": {"x": 2}, "edge": "wrap"}, "edge must be"),
    ],
    ids=["no-sample-dim", "unknown-patch-dim", "patch-too-big", "bad-edge"],
)
def test_patch_plan_errors_say_what_to_pass(kwargs, match) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        plan_patches({"t": 3, "x": 10}, **kwargs)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_striped_batches_give_each_worker_its_own_buffers(workers: int) -> None:
    groups = chunk_groups(200, 10)  # 20 chunks of 10
    sampler = ChunkShuffleSampler(groups, buffer_chunks=2, seed=4)
    striped = StripedBatches(sampler, 5, workers, drop_last=False)
    sampler.set_epoch(0)
    batches = list(striped)
    sampler.set_epoch(0)
    plain = [b.tolist() for b in np.array_split(np.array(list(sampler)), 40)]
    assert sorted(map(tuple, batches)) == sorted(map(tuple, plain))  # the same batches
    assert len(batches) == len(striped) == 40
    chunks_per_worker = [
        {i // 10 for p, b in enumerate(batches) if p % workers == w for i in b}
        for w in range(workers)
    ]
    # each chunk is read by one worker, but for the last buffers (the tail is shared)
    assert sum(len(c) for c in chunks_per_worker) <= 20 + 2 * (workers - 1)
