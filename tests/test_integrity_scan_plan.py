"""The deep scan's batches: two rounds per thread on small scans (pure, no I/O)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from zarr_dask_utils._core.pure.partition import two_rounds
from zarr_dask_utils.integrity.scan import array_work

MiB = 2**20


def _doc(n: int, chunk: int) -> tuple[str, dict[str, object]]:
    return (
        "zarr.json",
        {
            "zarr_format": 3,
            "node_type": "array",
            "shape": [n * chunk],
            "data_type": "float32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "fill_value": 0,
        },
    )


def test_small_scan_runs_in_two_rounds_with_a_cut_last_round():
    # 256 MiB of 64 KiB chunks on 2 threads, 128 MiB batches: was 2 batches (one per thread,
    # so a thread held up by the listing left the other idle); now 2 x 64 MiB + cut pieces
    work = array_work({"a": _doc(4096, 16384)}, 128 * MiB, parallelism=2)
    chunks = [sum(len(r) for _, _, r in w) for w in work]
    assert sum(chunks) == 4096
    assert chunks == sorted(chunks, reverse=True)  # largest first
    assert chunks[:2] == [1024, 1024]
    assert len(work) == 8
    assert min(chunks) == 256  # a quarter of a batch: never below an eighth of 128 MiB


def test_large_scan_keeps_the_configured_batch():
    work = array_work({"a": _doc(16384, 16384)}, 128 * MiB, parallelism=2)
    assert max(sum(len(r) for _, _, r in w) for w in work) == 2048  # 128 MiB
    assert len(array_work({"a": _doc(4096, 16384)}, 128 * MiB, parallelism=1)) == 2


@given(total=st.integers(0, 10**9), batch=st.integers(1, 10**8), parallelism=st.integers(1, 8))
@settings(max_examples=200, deadline=None)
def test_two_rounds_bounds(total, batch, parallelism):
    size = two_rounds(total, batch, parallelism)
    assert 1 <= size <= batch  # never larger than configured
    if parallelism == 1:
        assert size == batch
    else:
        assert size >= batch // 8  # never tiny
        if size < batch:  # shrunk: at least two rounds per thread
            assert math.ceil(total / size) >= 2 * parallelism or size == max(batch // 8, 1)


# --- threads or processes for the embedded deep scan ---------------------------------------------


def test_scan_workload_from_the_chunk_count():
    from zarr_dask_utils.integrity.plan import scan_workload
    from zarr_dask_utils.integrity.scan import chunk_sizes

    small = chunk_sizes({"a": _doc(30_000, 16_384), "b": _doc(2_000, 16_384)})
    assert small == {"a": (30_000, 65_536), "b": (2_000, 65_536)}
    why = scan_workload(small, 25_000)
    assert why is not None
    assert why.startswith("32,000 chunks of 64 KiB on average to decode")
    assert "holds the GIL" in why
    assert scan_workload(small, 32_001) is None
    assert scan_workload(small, 0) is None  # null in the config: never
    large = chunk_sizes({"a": _doc(256, 4 * MiB // 4)})
    assert scan_workload(large, 25_000) is None
