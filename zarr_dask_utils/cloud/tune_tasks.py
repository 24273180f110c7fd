"""Worker task of ``optimize_s3_access``: read the user's pattern with one candidate's settings.

The task opens the store with the candidate's ``storage_options``, sets zarr's
``async.concurrency``, reads the selections through zarr (as the user will) and returns small
numbers: requests and bytes at the store, time, the most requests in flight at once, the S3
calls by operation (s3fs only: ``HeadObject`` vs ``GetObject``) and a digest of the values
read, so the choice can insist every candidate read the same bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.storage import FsspecStore, WrapperStore

from zarr_dask_utils._core.compute.pinning import worker_name
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.metered import Meter, MeteredStore, fresh_store
from zarr_dask_utils._core.storage.storeio import storage_errors

__all__ = ["max_in_flight", "s3_calls", "trial_task"]

Selection = tuple[tuple[int, int], ...]
_CACHE_BYTES = 256 * 2**20  # the read cache of a trial (fresh per trial)


def max_in_flight(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals ``(start, end)`` open at one instant.

    Examples
    --------
    >>> max_in_flight([(0, 2), (1, 3), (2.5, 4)])
    2
    """
    events = sorted([(lo, 1) for lo, _ in intervals] + [(hi, -1) for _, hi in intervals])
    top = now = 0
    for _, step in events:
        now += step
        top = max(top, now)
    return top


def _inner(store: Store) -> Store:
    while isinstance(store, WrapperStore):
        store = store._store
    return store


@contextmanager
def s3_calls(store: Store) -> Iterator[Counter[str] | None]:
    """Count the S3 API calls (``GetObject``, ``HeadObject``…) s3fs makes inside the block.

    Yields ``None`` for stores that are not s3fs (obstore sends no HEAD before a GET).
    The count hooks botocore's ``before-call`` event of the filesystem's own client.
    """
    inner = _inner(store)
    fs = inner.fs if isinstance(inner, FsspecStore) else None
    if fs is None or not hasattr(fs, "set_session"):
        yield None
        return
    client = sync(fs.set_session())
    counts: Counter[str] = Counter()

    def before_call(model: Any = None, **kwargs: Any) -> None:
        counts[str(getattr(model, "name", "?"))] += 1

    client.meta.events.register("before-call.s3", before_call)
    try:
        yield counts
    finally:
        client.meta.events.unregister("before-call.s3", before_call)


def trial_task(
    location: Location,
    concurrency: int,
    array: str,
    selections: Sequence[Selection],
    after: Any = None,
    cache: bool = False,
) -> dict[str, Any]:
    """Read *selections* of *array* with *concurrency* requests in flight; measure it.

    With *cache* the reads go through a fresh ``smart_caching`` read cache, above the meter:
    ``requests`` then counts only what reached the store.

    Returns ``{"requests", "bytes_read", "bytes_needed", "seconds", "max_in_flight",
    "calls", "digest", "worker"}``, or ``{"error": message, "worker"}`` when the settings
    fail (the candidate is then rejected, not the whole tuning).
    """
    del after
    meter = Meter()
    path = "/".join(p for p in (location.path.strip("/"), array.strip("/")) if p)
    digest = hashlib.sha256()
    try:
        store = fresh_store(location.open_store())
        with storage_errors(location.display), zarr.config.set({"async.concurrency": concurrency}):
            metered: Store = MeteredStore(store, meter)
            if cache:
                from zarr_dask_utils.cloud.caching import smart_caching

                metered = smart_caching(metered, cache_size=_CACHE_BYTES)
            arr = zarr.open_array(metered, path=path, mode="r")
            meter.requests, meter.bytes, meter.intervals = 0, 0, []  # the data reads only
            needed = 0
            with s3_calls(store) as calls:
                t0 = time.perf_counter()
                for sel in selections:
                    data = np.ascontiguousarray(arr[tuple(slice(lo, hi) for lo, hi in sel)])
                    digest.update(data.tobytes())
                    needed += int(data.nbytes)
                seconds = time.perf_counter() - t0
    except Exception as err:  # a candidate's settings may not work here: reject it, go on
        return {"error": f"{type(err).__name__}: {err}", "worker": worker_name()}
    return {
        "requests": meter.requests,
        "bytes_read": meter.bytes,
        "bytes_needed": needed,
        "seconds": seconds,
        "max_in_flight": max_in_flight(meter.intervals),
        "calls": dict(calls) if calls is not None else None,
        "digest": digest.hexdigest(),
        "worker": worker_name(),
    }
