"""synchronized_write: write a region of a zarr array without losing concurrent updates.

Validate first (bounds, shape, dtype); list the storage keys the region touches (shards when
sharded, chunks otherwise); write the fully covered ones directly (no read-modify-write, so no
race to lose); lock the partly covered ones in sorted order (deadlock-free) across the whole
cluster, and fence their writes on the generation token read with them.  Works in the client,
in ``map_blocks`` / ``delayed`` tasks on workers, and in threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from distributed import Client
from zarr.core.array import AsyncArray
from zarr.storage import StorePath

from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.errors import (
    ConcurrentModificationError,
    InvalidOptionError,
    ReadOnlyStoreError,
)
from zarr_dask_utils.concurrent.regions import (
    Index,
    Region,
    RegionPlan,
    normalize_region,
    plan_region,
    region_shape,
)
from zarr_dask_utils.concurrent.store import SafeZarrStore

__all__ = ["WriteResult", "plan_array_region", "storage_grid", "synchronized_write"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    """What one :func:`synchronized_write` did.

    Attributes
    ----------
    keys
        Storage keys written.
    locked
        Keys locked (partly covered: read-modify-write); empty for an aligned region.
    attempts
        Number of tries (> 1 when a fence caught a concurrent modification and it retried).
    """

    keys: tuple[str, ...]
    locked: tuple[str, ...]
    attempts: int = 1


def storage_grid(array: zarr.Array[Any]) -> tuple[tuple[int, ...], str]:
    """The shape of the array's storage keys and their kind (``"shard"`` or ``"chunk"``)."""
    shards = getattr(array, "shards", None)
    if shards is not None:
        return tuple(shards), "shard"
    return tuple(array.chunks), "chunk"


def _encoder(array: zarr.Array[Any]) -> Callable[[Index], str]:
    prefix = f"{array.path}/" if array.path else ""
    encode = array.metadata.encode_chunk_key

    def key(index: Index) -> str:
        return prefix + encode(index)

    return key


def _where(array: zarr.Array[Any]) -> str:
    store = array.store_path.store
    url = store.url if isinstance(store, SafeZarrStore) else str(store)
    return f"array {array.path or '/'!r} in {url}"


def plan_array_region(array: zarr.Array[Any], region: Any) -> RegionPlan:
    """Normalize *region* for *array* and list the storage keys it touches.

    Raises
    ------
    InvalidOptionError
        For a region out of bounds, empty, strided or of the wrong rank.
    """
    norm = normalize_region(region, array.shape, where=_where(array))
    grid, _ = storage_grid(array)
    return plan_region(norm, array.shape, grid, _encoder(array))


def _check_data(array: zarr.Array[Any], region: Region, data: Any) -> Any:
    target = np.dtype(array.dtype)
    value = data if hasattr(data, "dtype") and hasattr(data, "shape") else np.asarray(data)
    expected = region_shape(region)
    if value.shape not in (expected, ()):
        raise InvalidOptionError(
            f"The data for {_where(array)} has shape {tuple(value.shape)}, but the region "
            f"{_show(region)} has shape {expected}. Pass data of the region's shape (or a scalar)."
        )
    if not np.can_cast(value.dtype, target, casting="same_kind"):
        raise InvalidOptionError(
            f"The data for {_where(array)} has dtype {value.dtype}, which cannot be cast safely "
            f"to the array's dtype {target}. Convert it first, e.g. data.astype({str(target)!r})."
        )
    return value


def _show(region: Region) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in region) + "]"


def _on_store(array: zarr.Array[Any], store: SafeZarrStore) -> zarr.Array[Any]:
    inner = array._async_array
    return zarr.Array(
        AsyncArray(
            metadata=inner.metadata, store_path=StorePath(store, array.path), config=inner.config
        )
    )


def synchronized_write(
    array: zarr.Array[Any],
    region: Any,
    data: Any,
    *,
    client: Client | None = None,
    timeout: str | float | None = None,
    max_retries: int | None = None,
    cluster: bool | None = None,
) -> WriteResult:
    """Write *data* into *region* of *array* so concurrent writers never lose updates.

    Parameters
    ----------
    array
        A writable zarr array (any store; local disk and S3 are fenced, see Notes).
    region
        Tuple of slices (step 1), one per dimension (missing trailing ones mean "all").
    data
        Array-like of the region's shape (or a scalar), castable to the array's dtype.
    client
        Client whose scheduler serves the locks; default: the worker running this task, else
        the current client.
    timeout
        Lock wait limit (``None``: ``zarr-dask-utils.concurrent.lock-timeout``).
    max_retries
        Retries after a fence caught a concurrent modification (``None``:
        ``zarr-dask-utils.concurrent.max-retries``).
    cluster
        ``None``: cluster-wide locks when a client or worker is reachable (else this process's
        threads only); ``True``: require them; ``False``: threads only.

    Returns
    -------
    WriteResult

    Raises
    ------
    InvalidOptionError
        Bad region, shape or dtype (checked before anything is locked or written).
    ReadOnlyStoreError
        The array's store is read-only.
    LockTimeoutError
        A storage key's lock was not acquired within *timeout*.
    ConcurrentModificationError
        The fence kept failing after *max_retries* retries.

    Notes
    -----
    Only partly covered storage keys are locked: a fully covered key is written whole (no
    read-modify-write), so concurrent writers can only disagree on which complete value wins.
    Locks are leases; if this process stalls past the lease, the fence refuses the write
    (``If-Match`` on S3; a generation check right before the rename locally) and the write is
    retried under fresh locks.

    Examples
    --------
    >>> import numpy as np, zarr
    >>> a = zarr.create_array(zarr.storage.MemoryStore(), shape=(6,), chunks=(4,), dtype="i4")
    >>> synchronized_write(a, (slice(1, 5),), np.arange(4), cluster=False).locked
    ('c/0', 'c/1')
    """
    if array.store_path.store.read_only:
        raise ReadOnlyStoreError(
            f"{_where(array)} was opened read-only; synchronized_write writes to it. Open it "
            "with mode='r+' (or read_only=False)."
        )
    plan = plan_array_region(array, region)
    value = _check_data(array, plan.region, data)
    if plan.aligned:
        array[plan.region] = value
        return WriteResult(plan.keys, ())
    store = array.store_path.store
    if isinstance(store, SafeZarrStore):
        safe, target = store, array
    else:
        safe = SafeZarrStore(store, client=client, timeout=timeout, cluster=cluster)
        target = _on_store(array, safe)
    retries = int(get_option("concurrent.max-retries", max_retries))
    for attempt in range(1, retries + 2):
        try:
            with safe.writing(plan.partial_keys):
                target[plan.region] = value
            return WriteResult(plan.keys, plan.partial_keys, attempt)
        except ConcurrentModificationError:
            if attempt > retries:
                raise
            logger.warning(
                "Fence caught a concurrent modification in %s (attempt %d); retrying",
                _where(array),
                attempt,
            )
    raise AssertionError("unreachable")  # pragma: no cover
