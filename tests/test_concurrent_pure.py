"""Pure planning of concurrent writes: regions, storage keys, lock names, block alignment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarr_dask_utils import InvalidOptionError
from zarr_dask_utils.concurrent.regions import (
    block_alignment,
    block_range,
    lock_name,
    lock_names,
    normalize_region,
    plan_region,
    region_shape,
)


def _key(index: tuple[int, ...]) -> str:
    return "c/" + "/".join(map(str, index))


@pytest.mark.parametrize(
    ("region", "shape", "expected"),
    [
        (None, (4, 5), (slice(0, 4), slice(0, 5))),
        (slice(1, 3), (4, 5), (slice(1, 3), slice(0, 5))),
        ((slice(None), slice(2, None)), (4, 5), (slice(0, 4), slice(2, 5))),
        ((slice(-2, None),), (4,), (slice(2, 4),)),
        ((Ellipsis, slice(1, 2)), (4, 5, 6), (slice(0, 4), slice(0, 5), slice(1, 2))),
        ([slice(0, 1), slice(0, 1)], (2, 2), (slice(0, 1), slice(0, 1))),
        ((slice(0, 3, 1),), (3,), (slice(0, 3),)),
    ],
    ids=["none", "one-slice", "open-ends", "negative", "ellipsis", "list", "step-1"],
)
def test_normalize_region(region, shape, expected) -> None:
    assert normalize_region(region, shape) == expected


@pytest.mark.parametrize(
    ("region", "shape", "match"),
    [
        (3, (4,), "tuple of slices"),
        ((slice(0, 1), slice(0, 1)), (4,), "2 dimensions"),
        ((1,), (4,), "slices only"),
        ((slice(0, 4, 2),), (4,), "step 2"),
        ((slice(2, 2),), (4,), "out of bounds or empty"),
        ((slice(0, 5),), (4,), "resolves to 0:5"),
        ((Ellipsis, Ellipsis), (4,), "more than one"),
    ],
    ids=["not-a-tuple", "too-many-dims", "integer", "strided", "empty", "too-far", "two-ellipses"],
)
def test_normalize_region_errors(region, shape, match) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        normalize_region(region, shape, where="array 't2m'")


@pytest.mark.parametrize(
    ("region", "shape", "grid", "partial", "full"),
    [
        ((slice(0, 8),), (16,), (8,), (), ("c/0",)),
        ((slice(0, 16),), (16,), (8,), (), ("c/0", "c/1")),
        ((slice(4, 12),), (16,), (8,), ("c/0", "c/1"), ()),
        ((slice(8, 10),), (10,), (8,), (), ("c/1",)),  # edge block clipped to the array
        ((slice(8, 9),), (10,), (8,), ("c/1",), ()),
        ((slice(0, 4), slice(0, 8)), (4, 16), (4, 8), (), ("c/0/0",)),
        ((slice(0, 2), slice(0, 16)), (4, 16), (4, 8), ("c/0/0", "c/0/1"), ()),
        ((slice(0, 4), slice(4, 16)), (4, 16), (4, 8), ("c/0/0",), ("c/0/1",)),
    ],
    ids=[
        "one-full",
        "two-full",
        "straddle",
        "edge-full",
        "edge-partial",
        "2d-full",
        "2d-row",
        "2d-mixed",
    ],
)
def test_plan_region(region, shape, grid, partial, full) -> None:
    plan = plan_region(region, shape, grid, _key)
    assert plan.partial_keys == partial
    assert plan.full_keys == full
    assert plan.keys == tuple(sorted(partial + full))
    assert plan.aligned == (not partial)


def test_lock_names_sorted_unique_and_credential_free() -> None:
    names = lock_names("s3://bucket/data.zarr/", ["c/1", "c/0", "c/1"])
    assert names == ("zdu-lock/s3://bucket/data.zarr/c/0", "zdu-lock/s3://bucket/data.zarr/c/1")
    assert lock_name("/tmp/x", "a/c/0") == "zdu-lock//tmp/x/a/c/0"


@pytest.mark.parametrize(
    ("chunks", "offset", "shape", "grid", "shared", "misaligned"),
    [
        (((8, 8),), (0,), (16,), (8,), (), 0),
        (((4, 4, 4, 4),), (0,), (16,), (8,), ((0,), (1,)), 4),
        (((6, 6, 4),), (0,), (16,), (8,), ((0,), (1,)), 3),
        (((8, 2),), (0,), (10,), (8,), (), 0),  # last block ends at the array end
        (((8,),), (4,), (16,), (8,), (), 1),  # one block, region edges off the grid
        (((2, 2), (8, 8)), (0, 0), (4, 16), (4, 8), ((0, 0), (0, 1)), 4),
        (((0,),), (0,), (16,), (8,), (), 0),  # empty array: nothing written
    ],
    ids=["aligned", "halves", "uneven", "edge", "offset", "2d-rows", "empty"],
)
def test_block_alignment(chunks, offset, shape, grid, shared, misaligned) -> None:
    result = block_alignment(chunks, offset, shape, grid)
    assert result.shared_keys == shared
    assert len(result.misaligned_blocks) == misaligned
    assert result.aligned == (not shared)


@st.composite
def _grid_and_region(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 20)) for _ in range(ndim))
    grid = tuple(draw(st.integers(1, 8)) for _ in range(ndim))
    region = []
    for size in shape:
        start = draw(st.integers(0, size - 1))
        stop = draw(st.integers(start + 1, size))
        region.append(slice(start, stop))
    return shape, grid, tuple(region)


@given(_grid_and_region())
def test_plan_region_matches_brute_force(case) -> None:
    """Keys touched and fully covered agree with a per-element brute force."""
    shape, grid, region = case
    plan = plan_region(region, shape, grid, _key)
    mask = np.zeros(shape, bool)
    mask[region] = True
    touched, full = set(), set()
    for index in itertools.product(*[range(-(-n // b)) for n, b in zip(shape, grid, strict=True)]):
        block = tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, grid, strict=True))
        if mask[block].any():
            touched.add(_key(index))
            if mask[block].all():
                full.add(_key(index))
    assert set(plan.keys) == touched
    assert set(plan.full_keys) == full
    assert list(plan.partial_keys) == sorted(touched - full)
    assert region_shape(region) == mask[region].shape


@given(
    st.lists(st.integers(1, 9), min_size=1, max_size=6),
    st.integers(0, 5),
    st.integers(1, 7),
)
def test_block_alignment_matches_brute_force(sizes, offset, grid) -> None:
    """A storage block is shared iff two Dask blocks write into it."""
    size = offset + sum(sizes) + 3
    result = block_alignment((tuple(sizes),), (offset,), (size,), (grid,))
    owners: dict[int, set[int]] = {}
    start = offset
    for b, n in enumerate(sizes):
        for pos in range(start, start + n):
            owners.setdefault(pos // grid, set()).add(b)
        start += n
    assert {k[0] for k in result.shared_keys} == {k for k, v in owners.items() if len(v) > 1}
    assert result.n_keys == len(owners)
    assert result.n_blocks == len(sizes)


@given(st.integers(0, 100), st.integers(1, 50), st.integers(1, 10))
def test_block_range_covers_exactly(start, length, block) -> None:
    stop = start + length
    blocks = block_range(start, stop, block)
    assert blocks[0] * block <= start < (blocks[0] + 1) * block
    assert blocks[-1] * block < stop <= (blocks[-1] + 1) * block
