"""``estimate_performance``: requests, bytes and time of an access pattern for a chunking.

Counts come from the pure cost model (exact for zarr-python 3's read path); the time uses
latency, bandwidth and decode rate measured on the real store by a short probe: one Dask task
on a worker reads a few stored objects raw and decoded.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import zarr
from dask.delayed import delayed
from distributed import Client
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.compute.runner import task_name
from zarr_dask_utils._core.pure.access_patterns import resolve_patterns
from zarr_dask_utils._core.pure.cost_model import (
    Calibration,
    CostParams,
    SelectionCost,
    as_cost_params,
    pattern_cost,
)
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.storage.locations import Location, StoreLike
from zarr_dask_utils._core.storage.storeio import storage_errors
from zarr_dask_utils.info import open_node
from zarr_dask_utils.optimize.array_jobs import dimension_names_of
from zarr_dask_utils.optimize.reports import PerformanceEstimate

__all__ = ["estimate_performance", "probe_task"]


def probe_task(location: Location, samples: int = 4) -> dict[str, float]:
    """Measure latency, bandwidth, decode rate and compression ratio of an array's store.

    Runs on a worker: times small metadata reads (latency), raw reads of a few stored
    objects (bandwidth) and the same regions read through zarr (decode).
    """
    store = location.open_store()
    with storage_errors(location.display):
        arr = zarr.open_array(store, path=location.path, mode="r")
        proto = default_buffer_prototype()
        doc = join_key(location.path, "zarr.json" if arr.metadata.zarr_format == 3 else ".zarray")
        lat = []
        for _ in range(samples + 1):
            t0 = time.perf_counter()
            sync(store.get(doc, proto))
            lat.append(time.perf_counter() - t0)
        latency = statistics.median(lat[1:])
        unit = arr.shards or arr.chunks
        grid = [max(-(-n // u), 1) for n, u in zip(arr.shape, unit, strict=True)]
        raw_bytes = decoded = 0
        raw_time = read_time = 0.0
        for i in range(min(samples, math.prod(grid))):
            coords = tuple((i * 7 + k) % g for k, g in enumerate(grid))
            key = join_key(location.path, arr.metadata.encode_chunk_key(coords))
            t0 = time.perf_counter()
            value = sync(store.get(key, proto))
            raw_time += time.perf_counter() - t0
            if value is None:
                continue
            raw_bytes += len(value)
            region = tuple(
                slice(c * u, min((c + 1) * u, n))
                for c, u, n in zip(coords, unit, arr.shape, strict=True)
            )
            t0 = time.perf_counter()
            data = arr[region]
            read_time += time.perf_counter() - t0
            decoded += math.prod(unit) * arr.dtype.itemsize
            del data
    transfer = max(raw_time - latency * samples, 1e-6)
    decode = max(read_time - raw_time, 1e-6)
    return {
        "latency": max(latency, 1e-6),
        "bandwidth": raw_bytes / transfer if raw_bytes else 1e9,
        "decode_rate": decoded / decode if decoded else 1e9,
        "compression_ratio": decoded / raw_bytes if raw_bytes else 1.0,
    }


def estimate_performance(
    array: StoreLike,
    chunks: Sequence[int] | None = None,
    access_pattern: Any = "sequential",
    *,
    shards: Sequence[int] | None = None,
    params: CostParams | Calibration | Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> PerformanceEstimate:
    """Predict requests, bytes and time of *access_pattern* on *array* with *chunks*.

    Parameters
    ----------
    array
        Path, URL or zarr Array whose shape, dtype and store are used.
    chunks, shards
        The chunking to predict for (default: the array's own).
    access_pattern
        As for :func:`~zarr_dask_utils.analyze_chunks`.
    params
        Cost-model parameters (``CostParams`` or a mapping of its fields), or a calibration
        such as the ``StoreBenchmark`` of :func:`~zarr_dask_utils.benchmark_store` (its
        measured parameters); ``None`` measures them with a probe task on the cluster
        (latency, bandwidth, decode rate and compression ratio of the real store).
    storage_options, client, progress
        Store options, Dask client and progress bar.

    Returns
    -------
    PerformanceEstimate

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils import estimate_performance
    >>> a = zarr.create_array(zarr.storage.MemoryStore(), shape=(100,), chunks=(10,), dtype="i1")
    >>> estimate_performance(a, (50,), params={"latency": 0.01}, progress=False).requests
    2
    """
    with operation("estimate", client=client, progress=progress) as op:
        location = op.open(array, storage_options=storage_options, probe=False)
        node = open_node(location)  # opening the array is the check
        if not isinstance(node, zarr.Array):
            from zarr_dask_utils._core.errors import InvalidOptionError

            raise InvalidOptionError(
                f"{location.display} is a group; estimate_performance needs one array. Pass "
                "the array's path (e.g. store.zarr/t2m)."
            )
        engine = "none (parameters given)"
        if params is None:
            task = delayed(probe_task, pure=False)(
                location, dask_key_name=task_name("probe", location)
            )
            measured = op.run([task])[0]
            engine = op.engine or engine
            cost_params = CostParams(
                concurrency=int(zarr.config.get("async.concurrency")),
                source="probe on a worker",
                **measured,
            )
        else:  # CostParams, a mapping of its fields, or a calibration (StoreBenchmark)
            cost_params = as_cost_params(params)
    dims = dimension_names_of(node)
    chunks = tuple(chunks) if chunks is not None else tuple(node.chunks)
    if shards is None and chunks == tuple(node.chunks):
        shards = node.shards
    patterns = resolve_patterns(access_pattern, node.shape, dims)
    total = SelectionCost(0, 0, 0, 0, 0)
    seconds = 0.0
    for p in patterns:
        cost = pattern_cost(p, chunks, node.dtype.itemsize, cost_params, shards=shards)
        total = total + cost.cost
        seconds += cost.seconds
    return PerformanceEstimate(
        location=location.display,
        engine=engine,
        chunks=chunks,
        shards=tuple(shards) if shards else None,
        pattern=", ".join(p.name for p in patterns),
        requests=total.requests,
        chunks_touched=total.chunks_touched,
        bytes_read=total.bytes_read,
        bytes_needed=total.bytes_needed,
        seconds=seconds,
        params=cost_params.to_dict(),
    )
