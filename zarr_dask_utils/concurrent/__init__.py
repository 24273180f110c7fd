"""Safe concurrent writes: cluster locks, synchronized region writes, a safe store wrapper."""

from zarr_dask_utils.concurrent.dask_write import (
    SafeStoreReport,
    WriteCheckReport,
    check_dask_write,
    safe_store,
    to_zarr_region_safe,
)
from zarr_dask_utils.concurrent.lock import DistributedLock
from zarr_dask_utils.concurrent.store import SafeZarrStore
from zarr_dask_utils.concurrent.write import WriteResult, synchronized_write

__all__ = [
    "DistributedLock",
    "SafeStoreReport",
    "SafeZarrStore",
    "WriteCheckReport",
    "WriteResult",
    "check_dask_write",
    "safe_store",
    "synchronized_write",
    "to_zarr_region_safe",
]
