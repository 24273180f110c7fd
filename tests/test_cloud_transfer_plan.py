"""Pure planning of parallel_download: key selection, task cuts, documents last, resume rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarr_dask_utils.cloud.transfer_plan import (
    decide_resume,
    is_document,
    plan_transfer,
    select_keys,
)

KEYS = [
    "zarr.json",
    "climate/zarr.json",
    "climate/t2m/zarr.json",
    "climate/t2m/c/0/0",
    "climate/t2m/c/0/1",
    "climate/static/zarr.json",
    "climate/static/elevation/zarr.json",
    "climate/static/elevation/c/0",
    "time/zarr.json",
    "time/c/0",
    ".zmetadata",
    ".zdu-download/partial.json",
    "time/c/1.0123456789abcdef0123456789abcdef.partial",
]


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        pytest.param(
            None,
            sorted(k for k in KEYS if not k.startswith(".zdu-") and not k.endswith(".partial")),
            id="everything-but-markers-and-temp-files",
        ),
        pytest.param(
            ["time"],
            ["time/c/0", "time/zarr.json", "zarr.json"],
            id="one-array-and-root-document-without-zmetadata",
        ),
        pytest.param(
            ["climate/static/elevation"],
            [
                "climate/static/elevation/c/0",
                "climate/static/elevation/zarr.json",
                "climate/static/zarr.json",
                "climate/zarr.json",
                "zarr.json",
            ],
            id="nested-array-keeps-every-parent-document",
        ),
        pytest.param(
            ["climate/t2m", "time"],
            [
                "climate/t2m/c/0/0",
                "climate/t2m/c/0/1",
                "climate/t2m/zarr.json",
                "climate/zarr.json",
                "time/c/0",
                "time/zarr.json",
                "zarr.json",
            ],
            id="two-arrays",
        ),
    ],
)
def test_select_keys(arrays, expected):
    assert select_keys(KEYS, arrays) == expected


def test_select_unknown_node_names_it():
    with pytest.raises(KeyError, match="nope"):
        select_keys(KEYS, ["nope"])


def test_documents_last_deepest_first_root_last():
    sizes = dict.fromkeys(select_keys(KEYS, None), 10)
    plan = plan_transfer(sizes, batch_bytes=25, batch_objects=100)
    assert all(not is_document(k) for batch in plan.data for k in batch)
    assert plan.documents[-2:] == ("zarr.json", ".zmetadata")
    depths = [k.count("/") for k in plan.documents]
    assert depths == sorted(depths, reverse=True)


@pytest.mark.parametrize(
    ("n", "batch_bytes", "batch_objects", "parallelism", "tasks"),
    [
        pytest.param(10, 10**9, 10**6, 1, 1, id="one-task"),
        pytest.param(10, 30, 10**6, 1, 4, id="bytes-bound"),
        pytest.param(10, 10**9, 3, 1, 4, id="count-bound"),
        pytest.param(1000, 10**9, 10**6, 4, 4, id="parallelism"),
        pytest.param(100, 10**9, 10**6, 4, 1, id="too-few-objects-to-split"),
        pytest.param(13, 10**10, 10**6, 4, 2, id="few-large-objects-split-by-bytes"),
    ],
)
def test_task_count(n, batch_bytes, batch_objects, parallelism, tasks):
    size = 14_000_000 if n == 13 else 10
    sizes = {f"a/c/{i:04d}": size for i in range(n)}
    plan = plan_transfer(
        sizes, batch_bytes=batch_bytes, batch_objects=batch_objects, parallelism=parallelism
    )
    assert len(plan.data) == tasks
    assert plan.bytes == size * n


@given(
    sizes=st.lists(st.integers(0, 10_000), max_size=300),
    batch_bytes=st.integers(1, 50_000),
    batch_objects=st.integers(1, 400),
    parallelism=st.integers(1, 8),
)
def test_plan_invariants(sizes, batch_bytes, batch_objects, parallelism):
    listing = {f"x/c/{i}": s for i, s in enumerate(sizes)}
    listing["zarr.json"] = 5
    plan = plan_transfer(
        listing, batch_bytes=batch_bytes, batch_objects=batch_objects, parallelism=parallelism
    )
    flat = [k for b in plan.data for k in b]
    assert sorted(flat + list(plan.documents)) == sorted(listing)  # every key exactly once
    assert all(len(b) <= batch_objects for b in plan.data)
    assert all(b for b in plan.data)
    assert plan.bytes == sum(listing.values())
    assert plan.documents == ("zarr.json",)


def test_decide_resume_splits_by_record():
    source = {"a": (3, "e1"), "b": (3, "e2"), "c": (4, "e3"), "d": (1, None)}
    records = {"a": (3, "h", "e1"), "b": (3, "h", "e0"), "c": (3, "h", "e3")}
    d = decide_resume(source, records)
    assert d.skip == {"a": (3, "h")}
    assert d.changed == ("b", "c")  # new ETag; new size
    assert d.copy == ("d",)
