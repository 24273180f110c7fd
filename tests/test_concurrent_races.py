"""Real races between worker processes: lost updates without protection, none with it.

A dedicated ``LocalCluster`` with 4 single-threaded worker processes (module scope, so the
session ``client`` fixture's workers are never killed) and a short lock lease, so the kill test
sees a dead holder's lock come back in seconds.  Races are forced with
:class:`~zarr_dask_utils.testing.concurrency.RaceStore` (a file barrier between each writer's
read and write), not left to luck.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

from zarr_dask_utils import DistributedLock, LockTimeoutError, synchronized_write
from zarr_dask_utils.concurrent.regions import lock_name
from zarr_dask_utils.testing.concurrency import (
    write_plain,
    write_safe_store,
    write_synchronized,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

WRITERS = 4
SHAPE = (WRITERS, 24)
ROUNDS = 3
LEASE = {
    "distributed.scheduler.locks.lease-timeout": "2s",
    "distributed.scheduler.locks.lease-validation-interval": "200ms",
}


@pytest.fixture(scope="module")
def race_client() -> Iterator[Client]:
    """4 worker processes with a 2 s lock lease (set before the scheduler starts)."""
    with (
        dask.config.set(LEASE),
        LocalCluster(
            n_workers=WRITERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as cl,
    ):
        cl.wait_for_workers(WRITERS)
        yield cl


def _make_array(kind: str, where: str, s3: dict[str, Any] | None, path: Path) -> zarr.Array[Any]:
    """A (4, 24) int32 array: chunks (4, 8), or shards (4, 8) of chunks (2, 4)."""
    if where == "local":
        store: Any = zarr.storage.LocalStore(str(path / "data.zarr"))
    else:
        assert s3 is not None
        store = zarr.storage.FsspecStore.from_url(
            f"s3://{s3['bucket']}/data.zarr", storage_options=s3["options"]
        )
    if kind == "sharded":
        return zarr.create_array(
            store, shape=SHAPE, shards=(4, 8), chunks=(2, 4), dtype="i4", fill_value=0
        )
    return zarr.create_array(store, shape=SHAPE, chunks=(4, 8), dtype="i4", fill_value=0)


@pytest.fixture(
    params=[
        "chunked-local",
        "sharded-local",
        pytest.param("chunked-s3", marks=pytest.mark.s3),
        pytest.param("sharded-s3", marks=pytest.mark.s3),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> zarr.Array[Any]:
    kind, where = request.param.split("-")
    s3 = None
    if where == "s3":
        s3 = {
            "bucket": request.getfixturevalue("s3_bucket"),
            "options": request.getfixturevalue("s3_storage_options"),
        }
    return _make_array(kind, where, s3, tmp_path)


def _row(i: int) -> tuple[slice, slice]:
    """Writer *i* owns row *i*: it touches every storage key, each only partly."""
    return (slice(i, i + 1), slice(0, SHAPE[1]))


def _run(cl: Client, fn: Any, args: list[tuple[Any, ...]]) -> list[Any]:
    futures = [cl.submit(fn, *a, pure=False, workers=None) for a in args]
    return cl.gather(futures)


def test_without_protection_updates_are_lost(
    race_client: Client, target: zarr.Array[Any], tmp_path: Path
) -> None:
    """All 4 writers read every shared key before any writes: 3 of 4 rows vanish per key."""
    args = []
    for i in range(WRITERS):
        race = {"action": "barrier", "directory": str(tmp_path / "b"), "parties": WRITERS}
        args.append((target, _row(i), i + 1, race))
    pids = _run(race_client, write_plain, args)
    assert len(set(pids)) == WRITERS  # four processes really wrote
    final = target[:]
    grid = 8
    for col in range(0, SHAPE[1], grid):
        block = final[:, col : col + grid]
        current = [i for i in range(WRITERS) if (block[i] == i + 1).all()]
        assert len(current) == 1, block  # exactly one writer's update survived in this key
        lost = [i for i in range(WRITERS) if i not in current]
        assert all((block[i] == 0).all() for i in lost)


def test_synchronized_write_loses_nothing(
    race_client: Client, target: zarr.Array[Any], tmp_path: Path
) -> None:
    """Same overlap, widened read→write window, several rounds: every update survives."""
    rng = random.Random(7)
    for rnd in range(ROUNDS):
        args = []
        for i in range(WRITERS):
            cols = [(c, c + 6) for c in range(0, SHAPE[1], 6)]  # unaligned pieces of row i
            rng.shuffle(cols)  # random region order per writer: must never deadlock
            regions = [(slice(i, i + 1), slice(a, b)) for a, b in cols]
            race = {"action": "pause", "seconds": 0.02}
            args.append((target, regions, 100 * rnd + i + 1, race, "60s"))
        attempts = _run(race_client, write_synchronized, args)
        assert all(a >= 4 for a in attempts)
        expected = np.array([[100 * rnd + i + 1] * SHAPE[1] for i in range(WRITERS)], "i4")
        np.testing.assert_array_equal(target[:], expected)


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        ("chunked", "local"),
        ("sharded", "local"),
        pytest.param("sharded", "s3", marks=pytest.mark.s3),
    ],
)
def test_safe_zarr_store_loses_nothing(
    race_client: Client, kind: str, where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Partial writes through SafeZarrStore.writing(), one storage key per write, random order."""
    s3 = None
    if where == "s3":
        s3 = {
            "bucket": request.getfixturevalue("s3_bucket"),
            "options": request.getfixturevalue("s3_storage_options"),
        }
    arr = _make_array(kind, where, s3, tmp_path)
    rng = random.Random(11)
    for rnd in range(ROUNDS):
        args = []
        for i in range(WRITERS):
            keys = list(range(0, SHAPE[1], 8))
            rng.shuffle(keys)
            regions = [(slice(i, i + 1), slice(c + 1, c + 7)) for c in keys]
            args.append((arr, regions, 100 * rnd + i + 1, {"action": "pause", "seconds": 0.02}))
        _run(race_client, write_safe_store, args)
        expected = np.zeros(SHAPE, "i4")  # columns c and c + 7 of each key are never written
        for i in range(WRITERS):
            for c in range(0, SHAPE[1], 8):
                expected[i, c + 1 : c + 7] = 100 * rnd + i + 1
        np.testing.assert_array_equal(arr[:], expected)


def test_killed_holder_releases_after_lease(race_client: Client, tmp_path: Path) -> None:
    """A worker SIGKILLed while holding a key's lock: the others finish, nothing is corrupt."""
    arr = _make_array("chunked", "local", None, tmp_path)
    hold = {"action": "hold", "directory": str(tmp_path)}
    # the scheduler re-runs the victim's task elsewhere after the kill; the hold is one-shot,
    # so the re-run writes row 0 normally once it gets the lock
    victim = race_client.submit(write_synchronized, arr, [_row(0)], 9, hold, "60s", pure=False)
    marker = tmp_path / "holding"
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the holder never took its lock"
        time.sleep(0.05)
    others = [
        race_client.submit(write_synchronized, arr, [_row(i)], i + 1, None, "60s", pure=False)
        for i in range(1, WRITERS)
    ]
    os.kill(int(marker.read_text()), signal.SIGKILL)
    assert race_client.gather(others) == [1, 1, 1]
    assert victim.result() == 1
    expected = np.array([[9] * SHAPE[1]] + [[i + 1] * SHAPE[1] for i in range(1, WRITERS)])
    np.testing.assert_array_equal(arr[:], expected)  # every chunk decodes, no update lost
    # the lock itself is free again
    name = lock_name(str(Path(arr.store_path.store.root).resolve()), "c/0/0")
    with DistributedLock(name, client=race_client, timeout="10s") as lock:
        assert lock.locked()


def test_lock_timeout_names_the_lock(race_client: Client, tmp_path: Path) -> None:
    """A key held elsewhere: synchronized_write gives up after the timeout, naming the lock."""
    arr = _make_array("chunked", "local", None, tmp_path)
    root = str(Path(arr.store_path.store.root).resolve())
    region = (slice(0, 1), slice(0, 4))
    with (
        DistributedLock(lock_name(root, "c/0/0"), client=race_client),
        pytest.raises(LockTimeoutError, match=r"zdu-lock/.*/c/0/0") as info,
    ):
        synchronized_write(arr, region, np.ones((1, 4), "i4"), client=race_client, timeout=0.5)
    with DistributedLock(lock_name(root, "c/0/0"), client=race_client):
        on_worker = race_client.submit(write_synchronized, arr, [region], 1, None, 0.5)
        with pytest.raises(LockTimeoutError, match=r"Timed out after 0\.5 s"):
            on_worker.result()
    assert info.value.kind == "lock-timeout"
    assert "active lease" in str(info.value)
    assert (arr[:] == 0).all()  # nothing was written
