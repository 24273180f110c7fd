"""Zarr on object storage: tuned access, parallel transfer and caching (issue 15).

Each feature lives in its own module; this file only re-exports their public names.
"""

from __future__ import annotations

from zarr_dask_utils.cloud.caching import CacheStats, CachingStore, smart_caching
from zarr_dask_utils.cloud.download import parallel_download
from zarr_dask_utils.cloud.transfer_report import TransferReport
from zarr_dask_utils.cloud.tune import S3AccessReport, optimize_s3_access

__all__: list[str] = [
    "CacheStats",
    "CachingStore",
    "S3AccessReport",
    "TransferReport",
    "optimize_s3_access",
    "parallel_download",
    "smart_caching",
]
