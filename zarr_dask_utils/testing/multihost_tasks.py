"""Writers for the multi-host failure tests: Dask tasks and plain processes on worker hosts.

Everything here runs on the hosts of a :class:`~zarr_dask_utils.testing.multihost.MultiHostCluster`
(so it lives in the package: worker processes import it by name):

* :func:`write_rows` — a task or a process writes its row of a shared S3 array in unaligned
  pieces with :func:`~zarr_dask_utils.synchronized_write` (every storage key is shared by all
  writers, so without locks updates are lost);
* :func:`hold_then_write` — a task takes the locks of a read-modify-write, reads, then waits at
  a gate file (its host can be cut off meanwhile) before it writes with the fence, no retry;
* ``python -m zarr_dask_utils.testing.multihost_tasks write …`` — the plain-process writer
  (it connects to the scheduler with ``--scheduler-file``, as a batch job would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.buffer import BufferPrototype

from zarr_dask_utils.testing.concurrency import RaceStore, open_on

__all__ = ["GateStore", "hold_then_write", "open_s3_array", "pieces", "write_rows"]


def open_s3_array(url: str, storage_options: dict[str, Any]) -> zarr.Array[Any]:
    """Open the shared array read-write."""
    store = zarr.storage.FsspecStore.from_url(url, storage_options=storage_options)
    return zarr.open_array(store, mode="r+")


def pieces(row: int, width: int, step: int) -> list[tuple[slice, slice]]:
    """The unaligned pieces of *row*: ``[row, a:a+step]`` for ``a`` in ``0, step, …``."""
    return [(slice(row, row + 1), slice(a, min(a + step, width))) for a in range(0, width, step)]


def write_rows(
    url: str,
    storage_options: dict[str, Any],
    row: int,
    values: list[int],
    step: int,
    pause: float = 0.01,
    client: Any = None,
) -> dict[str, Any]:
    """Write each of *values* in turn over *row*, piece by piece, synchronized.

    A short pause between each read and write (a :class:`RaceStore`) widens the window in
    which an unprotected writer would lose another's update.  Returns this process's id,
    host address and the total number of attempts.
    """
    from zarr_dask_utils.concurrent import synchronized_write

    array = open_s3_array(url, storage_options)
    target = open_on(array, RaceStore(array.store_path.store, action="pause", seconds=pause))
    attempts = 0
    for value in values:
        for region in pieces(row, array.shape[1], step):
            data = np.full([s.stop - s.start for s in region], value, dtype=array.dtype)
            result = synchronized_write(target, region, data, client=client, timeout="60s")
            attempts += result.attempts
    return {"pid": os.getpid(), "attempts": attempts}


class GateStore(RaceStore):
    """After the first full read of a data key: write ``holding``, wait for ``go`` to exist.

    ``directory`` is a folder every host sees.  The wait is one-shot per process.
    """

    async def _act(self, key: str, prototype: BufferPrototype) -> None:
        folder = Path(self.directory)
        if (folder / "holding").exists():
            return
        (folder / "holding").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.seconds
        while not (folder / "go").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


def hold_then_write(
    url: str,
    storage_options: dict[str, Any],
    region: tuple[slice, ...],
    value: int,
    directory: str,
) -> int:
    """Lock, read, wait at the gate, then write *value* with the fence and no retry."""
    from zarr_dask_utils.concurrent import synchronized_write

    array = open_s3_array(url, storage_options)
    store: Store = GateStore(array.store_path.store, directory=directory, seconds=120.0)
    target = open_on(array, store)
    data = np.full([s.stop - s.start for s in region], value, dtype=array.dtype)
    return synchronized_write(target, region, data, timeout="60s", max_retries=0).attempts


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="multihost_tasks")
    parser.add_argument("command", choices=["write"])
    parser.add_argument("--scheduler-file", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--storage-options", required=True, help="JSON")
    parser.add_argument("--row", type=int, required=True)
    parser.add_argument("--values", required=True, help="comma-separated")
    parser.add_argument("--step", type=int, required=True)
    args = parser.parse_args(argv)
    from distributed import Client

    with Client(scheduler_file=args.scheduler_file, timeout=60) as client:  # type: ignore[no-untyped-call]
        done = write_rows(
            args.url,
            json.loads(args.storage_options),
            args.row,
            [int(v) for v in args.values.split(",")],
            args.step,
            client=client,
        )
    print(json.dumps(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
