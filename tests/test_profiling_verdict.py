"""The verdict of a profile, on constructed facts whose answer is known (pure, no I/O)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarr_dask_utils._core.pure.trace_report import StoreOp
from zarr_dask_utils.profiling.advice import rechunk_advice
from zarr_dask_utils.profiling.summaries import PrefixTime, TaskRun, io_stats, prefix_times
from zarr_dask_utils.profiling.verdict import (
    MEMORY_FRACTION,
    ProfileFacts,
    busy_seconds,
    decide_verdict,
    grow_chunks,
)

#: A latency-bound read: 2000 requests of 4 kB, 20 ms each, 64 in flight.
LATENCY = ProfileFacts(
    wall_seconds=1.0,
    threads=2,
    tasks=4,
    median_task_seconds=0.5,
    cpu_seconds=0.05,
    requests=2000,
    store_seconds=40.0,
    io_busy_seconds=0.9,
    fixed_request_seconds=0.019,
    bytes_read=2000 * 4096,
    metadata_requests=10,
    median_request_bytes=4096,
)


@pytest.mark.parametrize(
    ("facts", "kind"),
    [
        pytest.param(LATENCY, "latency-bound", id="small-slow-requests"),
        pytest.param(
            ProfileFacts(
                wall_seconds=10.0,
                threads=2,
                tasks=8,
                median_task_seconds=2.0,
                cpu_seconds=1.0,
                requests=100,
                store_seconds=18.0,
                io_busy_seconds=9.0,
                fixed_request_seconds=0.01,  # 1 s of 18 s is fixed cost
                bytes_read=100 * 64 * 2**20,
                median_request_bytes=64 * 2**20,
            ),
            "bandwidth-bound",
            id="big-requests-slow-transfer",
        ),
        pytest.param(
            ProfileFacts(
                wall_seconds=4.0,
                threads=2,
                tasks=8,
                median_task_seconds=1.0,
                cpu_seconds=7.5,
                requests=50,
                store_seconds=0.5,
                io_busy_seconds=0.3,
                fixed_request_seconds=0.001,
                bytes_read=50 * 2**20,
                median_request_bytes=2**20,
            ),
            "decode-bound",
            id="cpu-beats-io",
        ),
        pytest.param(
            ProfileFacts(wall_seconds=5.0, threads=2, tasks=20000, median_task_seconds=0.0008),
            "task-overhead-bound",
            id="many-tiny-tasks",
        ),
        pytest.param(
            ProfileFacts(
                wall_seconds=5.0,
                tasks=20000,
                median_task_seconds=0.0008,
                memory_fraction=0.95,
                memory_worker="w0",
            ),
            "memory-bound",
            id="memory-first",
        ),
        pytest.param(ProfileFacts(wall_seconds=0.1), "inconclusive", id="nothing-measured"),
    ],
)
def test_verdict_of_known_cases(facts, kind):
    verdict = decide_verdict(facts)
    assert verdict.kind == kind
    assert verdict.evidence
    assert verdict.next_steps
    assert json.loads(json.dumps(verdict.to_dict()))["kind"] == kind
    assert kind in str(verdict)


def test_latency_verdict_names_concurrency_consolidation_and_the_rechunk_line():
    facts = ProfileFacts(**{**_asdict(LATENCY), "metadata_requests": 900, "concurrency": 16})
    line = rechunk_advice("/d/x.zarr", "t2m", (1000, 1000), (10, 10), 4096)
    assert line is not None
    verdict = decide_verdict(facts, rechunk=line)
    steps = " ".join(verdict.next_steps)
    assert "io.concurrency` (now 16)" in steps
    assert "zdu consolidate STORE" in steps
    assert "zdu rechunk /d/x.zarr/t2m /d/x.rechunked.zarr --chunks " in steps
    assert "--max-mem 1GiB" in steps


def test_memory_threshold_is_inclusive():
    at = ProfileFacts(1.0, memory_fraction=MEMORY_FRACTION, memory_worker="w1")
    below = ProfileFacts(1.0, memory_fraction=MEMORY_FRACTION - 0.01, requests=1)
    assert decide_verdict(at).kind == "memory-bound"
    assert "w1" in decide_verdict(at).summary
    assert decide_verdict(below).kind != "memory-bound"


def _asdict(f: ProfileFacts) -> dict:
    return {name: getattr(f, name) for name in ProfileFacts.__slots__}


@pytest.mark.parametrize(
    ("intervals", "busy"),
    [
        pytest.param([], 0.0, id="none"),
        pytest.param([(0.0, 1.0)], 1.0, id="one"),
        pytest.param([(0.0, 2.0), (1.0, 3.0)], 3.0, id="overlap"),
        pytest.param([(0.0, 4.0), (1.0, 2.0)], 4.0, id="nested"),
        pytest.param([(5.0, 6.0), (0.0, 1.0)], 2.0, id="disjoint-unsorted"),
    ],
)
def test_busy_seconds(intervals, busy):
    assert busy_seconds(intervals) == pytest.approx(busy)


@given(
    st.lists(
        st.tuples(st.floats(0, 100), st.floats(0, 10)).map(lambda t: (t[0], t[0] + t[1])),
        max_size=30,
    )
)
def test_busy_seconds_is_between_the_longest_and_the_sum(intervals):
    busy = busy_seconds(intervals)
    longest = max((b - a for a, b in intervals), default=0.0)
    assert longest - 1e-9 <= busy <= sum(b - a for a, b in intervals) + 1e-9


@given(
    st.lists(st.integers(1, 500), min_size=1, max_size=4).flatmap(
        lambda shape: st.tuples(
            st.just(tuple(shape)),
            st.tuples(*[st.integers(1, s) for s in shape]),
            st.integers(1, 64),
        )
    )
)
def test_grow_chunks_grows_within_the_shape(case):
    shape, chunks, factor = case
    new = grow_chunks(shape, chunks, factor)
    assert all(c <= n <= s for c, n, s in zip(chunks, new, shape, strict=True))
    full = new == shape

    assert full or math.prod(new) >= factor * math.prod(chunks)


def test_no_rechunk_advice_for_big_chunks():
    assert rechunk_advice("/d/x.zarr", "a", (100,), (10,), 16 * 2**20) is None


def test_io_stats_per_array_and_store():
    ops = [
        StoreOp("get", "t2m/zarr.json", 500, 0.001, "w0", "file:///x.zarr", 0.0),
        StoreOp("get", "t2m/c/0", 1000, 0.002, "w0", "file:///x.zarr", 0.1),
        StoreOp("get", "t2m/c/1", 3000, 0.004, "w1", "file:///x.zarr", 0.1),
        StoreOp("set", "out/c/0", 700, 0.003, "w1", "file:///y.zarr", 0.2),
        StoreOp("list_dir", "", 0, 0.010, "w0", "file:///x.zarr", 0.0),
    ]
    arrays, stores = io_stats(ops, cpu_seconds=2.0)
    by_name = {a.name: a for a in arrays}
    assert by_name["t2m"].requests == 3
    assert by_name["t2m"].bytes_read == 4500
    assert by_name["out"].bytes_written == 700
    assert by_name["t2m"].decode_seconds == pytest.approx(2.0)  # the only chunk reads
    assert by_name["t2m"].p50_ms <= by_name["t2m"].p95_ms <= by_name["t2m"].p99_ms
    by_store = {s.name: s for s in stores}
    assert by_store["file:///x.zarr"].requests == 4  # listings count as requests
    assert by_store["file:///y.zarr"].bytes_written == 700


def test_prefix_times_split_compute_transfer_waiting():
    metrics = {
        ("execute", "sum", "thread-cpu", "seconds"): 1.5,
        ("execute", "sum", "thread-noncpu", "seconds"): 0.25,
        ("execute", "sum", "executor", "seconds"): 0.25,
        ("execute", "sum", ("zdu-store", "get"), "store-seconds"): 9.0,  # not seconds
        ("execute", "sum", "memory-read", "bytes"): 100.0,
        ("execute", "N/A", "idle or other spans", "seconds"): 3.0,
    }
    runs = [
        TaskRun("sum", "w0", "compute", 0.0, 1.0),
        TaskRun("sum", "w1", "compute", 0.0, 1.0),
        TaskRun("sum", "w1", "transfer", 1.0, 1.5),
    ]
    assert prefix_times(metrics, runs) == (PrefixTime("sum", 2, 1.5, 0.5, 0.5),)


def test_reads_ahead_that_overlap_decoding_do_not_count_as_waiting():
    # requests were in flight the whole time, but the tasks hardly waited: they decoded
    facts = ProfileFacts(
        wall_seconds=2.0,
        tasks=4,
        median_task_seconds=0.5,
        cpu_seconds=1.6,
        waiting_seconds=0.2,
        requests=64,
        store_seconds=30.0,
        io_busy_seconds=1.9,
        fixed_request_seconds=0.001,
        median_request_bytes=2**21,
    )
    assert facts.io_wait_seconds == pytest.approx(0.2)
    assert decide_verdict(facts).kind == "decode-bound"
    # without tasks (reads in this process) the time in flight is the wait
    assert ProfileFacts(1.0, io_busy_seconds=0.7, waiting_seconds=0.1).io_wait_seconds == 0.7
