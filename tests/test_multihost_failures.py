"""Failure modes on a multi-host cluster (issue 18, part 1): writers on two hosts, a host cut
off while it holds a lock, a host killed mid-rechunk.

Hosts are network namespaces (:class:`~zarr_dask_utils.testing.multihost.MultiHostCluster`);
the writers are in :mod:`zarr_dask_utils.testing.multihost_tasks`.  Destructive tests (cut,
kill) build their own cluster; the writers test shares the session ``multihost``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from zarr_dask_utils import ConcurrentModificationError, ZarrDaskUtilsError
from zarr_dask_utils.testing.cli_runner import run_zdu
from zarr_dask_utils.testing.multihost import MultiHostCluster, namespaces_skip_reason
from zarr_dask_utils.testing.multihost_tasks import hold_then_write, pieces, write_rows

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

_UNAVAILABLE = namespaces_skip_reason()
needs_namespaces = pytest.mark.skipif(_UNAVAILABLE is not None, reason=str(_UNAVAILABLE))

LEASE_ENV = {  # a 2 s lease: a cut-off holder loses its locks quickly
    "DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT": "2s",
    "DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_VALIDATION_INTERVAL": "200ms",
}


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[MultiHostCluster]:
    """A function-scoped cluster (2 worker hosts, moto) with a 2 s lock lease."""
    if _UNAVAILABLE is not None:
        pytest.skip(_UNAVAILABLE)
    with MultiHostCluster(tmp_path / "mh", env=LEASE_ENV) as cluster:
        yield cluster


def _create(url: str, options: dict[str, Any], shape: tuple[int, ...], chunks: tuple[int, ...]):
    store = zarr.storage.FsspecStore.from_url(url, storage_options=options)
    return zarr.create_array(store, shape=shape, chunks=chunks, dtype="i4", fill_value=0)


def _objects(url: str, options: dict[str, Any]) -> dict[str, str]:
    """Every object under *url* with the MD5 of its bytes."""
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    root = url.removeprefix("s3://")
    return {
        path[len(root) :]: hashlib.md5(fs.cat_file(path)).hexdigest()
        for path in fs.find(root, refresh=True)
    }


# --- synchronized_write from both worker hosts ----------------------------------------------


@needs_namespaces
def test_writers_on_two_hosts_lose_no_update(multihost, tmp_path) -> None:
    mh = multihost
    options = mh.storage_options()
    url = f"s3://{mh.make_bucket()}/shared.zarr"
    rows, width, step, rounds = 4, 24, 6, 1  # chunks (4, 8): every piece is partial
    _create(url, options, (rows, width), (rows, 8))
    values = {row: [100 * r + row + 1 for r in range(rounds)] for row in range(rows)}
    procs = []
    for row, host in ((2, "worker1"), (3, "worker2")):  # plain processes on each host
        argv = [sys.executable, "-m", "zarr_dask_utils.testing.multihost_tasks", "write"]
        argv += ["--scheduler-file", str(mh.scheduler_file), "--url", url]
        argv += ["--storage-options", json.dumps(options), "--row", str(row), "--step", str(step)]
        argv += ["--values", ",".join(map(str, values[row]))]
        procs.append(mh.run(host, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    with mh.client(set_as_default=False) as client:
        tasks = [  # Dask tasks pinned to each host's worker
            client.submit(
                write_rows,
                url,
                options,
                row,
                values[row],
                step,
                workers=mh.worker_addresses(host),
                allow_other_workers=False,
                pure=False,
            )
            for row, host in ((0, "worker1"), (1, "worker2"))
        ]
        done = client.gather(tasks)
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    done += [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    assert len({d["pid"] for d in done}) == 4  # four writer processes
    final = zarr.open_array(zarr.storage.FsspecStore.from_url(url, storage_options=options))[:]
    lost = [
        (row, region[1].start)
        for row in range(rows)
        for region in pieces(row, width, step)
        if not (final[region] == values[row][-1]).all()
    ]
    assert lost == [], f"{len(lost)} lost updates: {lost}"
    assert sum(d["attempts"] for d in done) >= rows * rounds * (width // step)


# --- a host cut off while holding a lock ------------------------------------------------------


def _wait_for(path: Path, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert time.monotonic() < deadline, f"{what} did not happen in {limit} s"
        time.sleep(0.05)


@needs_namespaces
def test_a_cut_off_holder_loses_its_lease_and_the_fence_refuses_its_late_write(
    own_cluster, tmp_path
) -> None:
    mh = own_cluster
    options = mh.storage_options()
    url = f"s3://{mh.make_bucket()}/fenced.zarr"
    _create(url, options, (2, 8), (2, 8))  # one storage key, shared by both rows
    gate = tmp_path / "gate"
    gate.mkdir()
    with mh.client(set_as_default=False) as client:
        holder = client.submit(
            hold_then_write,
            url,
            options,
            (slice(0, 1), slice(0, 4)),
            7,
            str(gate),
            workers=mh.worker_addresses("worker1"),
            allow_other_workers=False,
            pure=False,
        )
        _wait_for(gate / "holding", "the holder reading under its lock")
        mh.cut("worker1")  # it holds the lock of c/0/0 and has read it
        try:
            other = client.submit(
                write_rows,
                url,
                options,
                1,
                [5],
                4,
                workers=mh.worker_addresses("worker2"),
                allow_other_workers=False,
                pure=False,
            )
            assert other.result(timeout=60)["attempts"] == 2  # after the holder's lease expired
        finally:
            mh.restore("worker1")
        store = zarr.storage.FsspecStore.from_url(url, storage_options=options)
        expected = np.zeros((2, 8), "i4")
        expected[1] = 5
        np.testing.assert_array_equal(zarr.open_array(store, mode="r")[:], expected)
        (gate / "go").touch()  # the holder wakes up and writes what it read before the cut
        with pytest.raises(ConcurrentModificationError, match="changed between this writer"):
            holder.result(timeout=90)
    # the fence refused the late write: the other host's data is intact, row 0 untouched
    np.testing.assert_array_equal(zarr.open_array(store, mode="r")[:], expected)


# --- a host killed mid-rechunk ----------------------------------------------------------------


def _rechunk_argv(src: str, dst: str, options: dict[str, Any]) -> list[str]:
    argv = ["rechunk", src, dst, "--chunks", "32,16,16", "--max-mem", "64KiB", "--json"]
    for k, v in options.items():
        argv += [f"-o{k}={v}", f"--dst-storage-option={k}={v}"]
    return [*argv, "--no-progress"]


@pytest.fixture
def slow_cluster(tmp_path: Path) -> Iterator[MultiHostCluster]:
    """A function-scoped cluster whose S3 host answers after 5 ms (the latency rig)."""
    if _UNAVAILABLE is not None:
        pytest.skip(_UNAVAILABLE)
    with MultiHostCluster(tmp_path / "mh", latency="5ms") as cluster:
        yield cluster


def _wait_until_busy(client: Any, workers: list[str], thread: threading.Thread) -> None:
    """Return once *workers* run a task of the job (the thread must still be running)."""
    deadline = time.monotonic() + 120
    while not any(client.processing(workers=workers).values()):
        assert thread.is_alive(), "the rechunk ended before the host was killed"
        assert time.monotonic() < deadline, "no task of the rechunk reached the host in 120 s"
        time.sleep(0.02)


@needs_namespaces
def test_a_host_killed_mid_rechunk_the_job_finishes_or_resumes(slow_cluster) -> None:
    from zarr_dask_utils import rechunk_array

    mh = slow_cluster
    options = mh.storage_options()
    bucket = mh.make_bucket()
    src, dst = f"s3://{bucket}/src.zarr", f"s3://{bucket}/dst.zarr"
    source = _create(src, options, (32, 64, 64), (1, 64, 64))
    source[:] = np.arange(32 * 64 * 64, dtype="i4").reshape(32, 64, 64)
    before = _objects(src, options)
    outcome: dict[str, Any] = {}

    def job() -> None:
        try:
            outcome["report"] = rechunk_array(
                src,
                (32, 16, 16),
                dst,
                max_mem="64KiB",
                storage_options=options,
                target_storage_options=options,
                client=client,
                progress=False,
            )
        except Exception as err:  # the test looks at it below
            outcome["error"] = err

    with mh.client(set_as_default=False) as client:
        thread = threading.Thread(target=job)
        thread.start()
        try:
            _wait_until_busy(client, mh.worker_addresses("worker1"), thread)
            mh.kill_host("worker1")  # its task dies mid-copy
        finally:
            thread.join(180)
        assert not thread.is_alive()
        if "error" in outcome:  # failed: clearly, and a rerun on the remaining host resumes
            assert isinstance(outcome["error"], ZarrDaskUtilsError), repr(outcome["error"])
            rerun = run_zdu(*_rechunk_argv(src, dst, options), scheduler=client)
            assert rerun.returncode == 0, rerun.output
            assert json.loads(rerun.stdout)["resumed"] is True
        else:  # the scheduler moved the killed host's tasks to the other host
            report = outcome["report"]
            assert report.bytes_written == source.nbytes  # every block, once
            assert "1 worker(s)" in report.engine  # finished on the remaining host
        _assert_copy(dst, options, source)
        # the job's client dies mid-copy (a batch job's walltime): a rerun resumes
        dst2 = f"s3://{bucket}/dst2.zarr"
        with mh.client(set_as_default=False) as doomed:
            thread = threading.Thread(target=_rechunk_into, args=(src, dst2, options, doomed))
            thread.start()
            _wait_until_busy(client, mh.worker_addresses("worker2"), thread)
            doomed.close()
            thread.join(60)
        rerun = run_zdu(*_rechunk_argv(src, dst2, options), scheduler=client)
        assert rerun.returncode == 0, rerun.output
        report = json.loads(rerun.stdout)
        assert report["resumed"] is True
        assert report["blocks_skipped"] + report["blocks_written"] == 8
    _assert_copy(dst2, options, source)
    assert _objects(src, options) == before  # the source is untouched


def _rechunk_into(src: str, dst: str, options: dict[str, Any], client: Any) -> None:
    from zarr_dask_utils import rechunk_array

    with contextlib.suppress(Exception):  # its client is closed under it
        rechunk_array(
            src,
            (32, 16, 16),
            dst,
            max_mem="64KiB",
            storage_options=options,
            target_storage_options=options,
            client=client,
            progress=False,
        )


def _assert_copy(url: str, options: dict[str, Any], source: zarr.Array[Any]) -> None:
    result = zarr.open_array(zarr.storage.FsspecStore.from_url(url, storage_options=options))
    assert result.chunks == (32, 16, 16)
    np.testing.assert_array_equal(result[:], source[:])
