"""The profiler's instruments: opened and read in three requests, nothing left on the cluster.

- worker memory and the cluster's series come from the workers' system monitors (no
  ``MemorySampler``): the cluster's series sums each worker's latest sample;
- after a profile (also one whose call raises) no tracer plugin is left on the scheduler or
  the workers, and the workers' store operations reached the report.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from zarr_dask_utils import check_data_integrity, profile_zarr_operation
from zarr_dask_utils.profiling.collect import memory_since, worker_memory


def test_cluster_memory_sums_the_latest_sample_of_every_worker():
    results = {
        "tcp://b": {"name": "1", "time": [100.5, 101.5], "memory": [30, 50], "now": 40, "limit": 9},
        "tcp://a": {"name": "0", "time": [100.0, 101.0], "memory": [10, 20], "now": 25, "limit": 9},
    }
    memory, cluster = worker_memory(results, since=100.0)
    assert [m.worker for m in memory] == ["0 (tcp://a)", "1 (tcp://b)"]
    assert [m.peak_bytes for m in memory] == [25, 50]  # "now" counts when it is the highest
    assert memory[0].times == (0.0, 1.0)
    assert cluster == ((0.0, 10), (0.5, 40), (1.0, 50), (1.5, 70))


def test_no_samples_give_empty_series():
    results = {"tcp://a": {"name": "0", "time": [], "memory": [], "now": 7, "limit": 0}}
    memory, cluster = worker_memory(results, since=0.0)
    assert memory[0].peak_bytes == 7
    assert cluster == ()


def _tracer_plugins(client) -> tuple[list[str], list[str]]:
    on_scheduler = client.run_on_scheduler(
        lambda dask_scheduler: sorted(n for n in dask_scheduler.worker_plugins if "zdu-trace" in n)
    )
    on_workers = client.run(
        lambda dask_worker: sorted(n for n in dask_worker.plugins if "zdu-trace" in n)
    )
    return on_scheduler, [n for names in on_workers.values() for n in names]


@pytest.mark.cluster
def test_profile_reads_workers_and_leaves_no_plugin(tmp_path: Path, client):
    path = str(tmp_path / "a.zarr")
    zarr.create_array(
        path, data=np.arange(100 * 100, dtype="f4").reshape(100, 100), chunks=(25, 25)
    )
    report = profile_zarr_operation(check_data_integrity, path, deep=True, client=client)
    assert report.result.ok
    assert any(r.action == "compute" for r in report.tasks)  # the task stream since the start
    assert report.facts.threads == 2  # the session cluster: 2 workers x 1 thread
    assert report.requests_by_op["get"] >= 16  # every chunk, read on the workers
    assert report.cluster_memory
    assert all(b > 0 for _, b in report.cluster_memory)
    assert _tracer_plugins(client) == ([], [])


@pytest.mark.cluster
def test_a_call_shorter_than_the_monitor_interval_still_has_a_sample(client):
    # CI failure: a profile that ended before the workers' monitors sampled had no series
    since = time.time() + 3600.0  # no monitor sample can be this recent
    results = client.run(memory_since, since=since)
    assert len(results) == 2
    for r in results.values():
        assert len(r["time"]) == len(r["memory"]) == 1
        assert r["memory"][0] == r["now"] > 0
    _, cluster = worker_memory(results, since=time.time())
    assert cluster
    assert all(b > 0 for _, b in cluster)


@pytest.mark.cluster
def test_a_call_that_raises_leaves_no_plugin(client):
    def fails() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        profile_zarr_operation(fails, client=client)
    assert _tracer_plugins(client) == ([], [])
