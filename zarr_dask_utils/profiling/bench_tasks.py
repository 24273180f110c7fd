"""Worker tasks of ``benchmark_store``: each times one kind of request on the worker it runs on.

Every task takes a picklable :class:`~zarr_dask_utils._core.storage.locations.Location` and a
small description of the requests, and returns a small dict of counts and times (no data).
``after`` arguments only order the stages of the graph (one stage at a time, so stages do not
compete for the network); their values are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import OffsetByteRequest, RangeByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from zarr_dask_utils._core.compute.pinning import worker_name
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.metered import Meter, MeteredStore, fresh_store
from zarr_dask_utils._core.storage.storeio import concurrent_map, list_keys, storage_errors

__all__ = [
    "barrier",
    "latency_task",
    "listing_task",
    "pattern_task",
    "remove_scratch",
    "stream_task",
    "write_task",
]

Selection = tuple[tuple[int, int], ...]
_SAMPLE = 256  # largest objects returned by the listing task


# --- the tasks -------------------------------------------------------------------------------


def listing_task(
    location: Location, prefixes: Sequence[str] = ("",), scratch: str | None = None
) -> dict[str, Any]:
    """Time a full listing of each prefix (the metadata-listing cost); sample the objects.

    Returns ``{"seconds", "keys", "objects", "bytes", "sample", "scratch_taken", "worker"}``:
    *sample* maps the largest stored objects (at most 256) to their sizes, for the planner to
    pick objects to read; *scratch_taken* lists keys already under *scratch* (none expected).
    """
    from zarr_dask_utils._core.storage.listing import list_sizes

    store = fresh_store(location.open_store())
    seconds, keys = 0.0, 0
    with storage_errors(location.display):
        for prefix in prefixes:
            t0 = time.perf_counter()
            listed = list_keys(store, prefix)
            seconds += time.perf_counter() - t0
            keys += len(listed)
        sizes = list_sizes(fresh_store(store), location.path)
        taken = list_keys(fresh_store(store), scratch) if scratch else []
    largest = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:_SAMPLE]
    return {
        "seconds": seconds,
        "keys": keys,
        "objects": len(sizes),
        "bytes": sum(sizes.values()),
        "sample": dict(largest),
        "scratch_taken": taken,
        "worker": worker_name(),
    }


def latency_task(
    location: Location, keys: Sequence[str], samples: int, after: Any = None
) -> dict[str, Any]:
    """Time *samples* one-byte reads, one at a time: the latency to the first byte."""
    del after
    store = fresh_store(location.open_store())
    proto = default_buffer_prototype()
    times: list[float] = []
    with storage_errors(location.display):
        for i in range(samples):
            t0 = time.perf_counter()
            sync(store.get(keys[i % len(keys)], proto, RangeByteRequest(0, 1)))
            times.append(time.perf_counter() - t0)
    return {"latency": times, "requests": samples, "worker": worker_name()}


def stream_task(
    location: Location,
    reads: Sequence[tuple[str, int]],
    *,
    level: int,
    size: int,
    scope: str,
    after: Any = None,
) -> dict[str, Any]:
    """Read ``(key, nbytes)`` ranges with *level* requests in flight; time the whole step."""
    del after
    store = fresh_store(location.open_store())
    proto = default_buffer_prototype()
    whole = OffsetByteRequest(0)

    async def one(key: str, nbytes: int) -> int:
        byte_range = RangeByteRequest(0, nbytes) if nbytes == size else whole
        value = await store.get(key, proto, byte_range)
        return len(value) if value is not None else 0

    with storage_errors(location.display):
        start = time.time()
        got = sync(concurrent_map(list(reads), one, limit=level))
        end = time.time()
    return _row("read", scope, level, size, len(reads), sum(got), start, end)


def write_task(
    location: Location, keys: Sequence[str], *, level: int, size: int, after: Any = None
) -> dict[str, Any]:
    """Write *keys* of *size* random bytes each with *level* requests in flight."""
    del after
    store = location.open_store()
    payload = np.random.default_rng(len(keys)).bytes(size)  # incompressible, like real chunks
    buffer = default_buffer_prototype().buffer.from_bytes(payload)

    async def one(key: str) -> None:
        await store.set(key, buffer)

    with storage_errors(location.display):
        start = time.time()
        sync(concurrent_map([(k,) for k in keys], one, limit=level))
        end = time.time()
    return _row("write", "worker", level, size, len(keys), size * len(keys), start, end)


def remove_scratch(location: Location, prefix: str, after: Any = None) -> dict[str, Any]:
    """Delete everything under the scratch *prefix* and say how many keys were left."""
    del after
    store = location.open_store()
    with storage_errors(location.display):
        found = list_keys(fresh_store(store), prefix)
        sync(store.delete_dir(prefix))
        left = list_keys(fresh_store(store), prefix)
    return {"deleted": len(found), "left": len(left)}


def pattern_task(
    location: Location,
    array: str,
    pattern: str,
    selections: Sequence[Selection],
    after: Any = None,
) -> dict[str, Any]:
    """Read *selections* of *array* through zarr, counting requests and bytes as they go."""
    del after
    meter = Meter()
    store = MeteredStore(fresh_store(location.open_store()), meter)
    path = "/".join(p for p in (location.path.strip("/"), array.strip("/")) if p)
    with storage_errors(location.display):
        arr = zarr.open_array(store, path=path, mode="r")
        meter.requests, meter.bytes, meter.intervals = 0, 0, []  # the data reads only
        decoded = 0
        t0 = time.perf_counter()
        for sel in selections:
            data = arr[tuple(slice(lo, hi) for lo, hi in sel)]
            decoded += int(np.asarray(data).nbytes)
        seconds = time.perf_counter() - t0
    busy = meter.busy_seconds()
    return {
        "array": array,
        "pattern": pattern,
        "requests": meter.requests,
        "bytes_read": meter.bytes,
        "bytes_needed": decoded,
        "seconds": seconds,
        "io_seconds": busy,
        "decode_seconds": max(seconds - busy, 0.0),
        "worker": worker_name(),
    }


def barrier(*results: Any) -> int:
    """Wait for every task of a stage (its arguments); return how many there were."""
    return len(results)


def _row(
    op: str,
    scope: str,
    level: int,
    size: int,
    requests: int,
    nbytes: int,
    start: float,
    end: float,
) -> dict[str, Any]:
    return {
        "op": op,
        "scope": scope,
        "level": level,
        "size": size,
        "requests": requests,
        "bytes": nbytes,
        "start": start,
        "end": end,
        "worker": worker_name(),
    }
