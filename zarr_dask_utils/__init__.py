"""zarr-dask-utils: diagnose, repair, optimise and protect Zarr stores with Dask graphs.

Every operation runs as a Dask graph on a ``dask.distributed`` cluster: the Client you have,
a scheduler you name, or an embedded ``LocalCluster``.
"""

from __future__ import annotations

from zarr_dask_utils._core.cluster import get_client
from zarr_dask_utils._core.errors import (
    ClusterConnectionError,
    EndpointUnreachableError,
    InvalidOptionError,
    NotAZarrStoreError,
    ReadOnlyStoreError,
    StoreAccessDeniedError,
    StoreNotFoundError,
    ZarrDaskUtilsError,
    ZarrDaskUtilsWarning,
)
from zarr_dask_utils._core.hierarchy import NodeInfo
from zarr_dask_utils._core.locations import Location, open_store, resolve_location
from zarr_dask_utils._core.reports import Finding, Report
from zarr_dask_utils._core.walk import HierarchyReport, open_node, walk_hierarchy
from zarr_dask_utils.metadata import (
    ConsolidationReport,
    RepairReport,
    ValidationReport,
    consolidate_metadata,
    repair_metadata,
    validate_metadata,
)

__version__ = "0.1.0"

__all__ = [
    "ClusterConnectionError",
    "ConsolidationReport",
    "RepairReport",
    "ValidationReport",
    "consolidate_metadata",
    "repair_metadata",
    "validate_metadata",
    "EndpointUnreachableError",
    "Finding",
    "HierarchyReport",
    "InvalidOptionError",
    "Location",
    "NodeInfo",
    "NotAZarrStoreError",
    "ReadOnlyStoreError",
    "Report",
    "StoreAccessDeniedError",
    "StoreNotFoundError",
    "ZarrDaskUtilsError",
    "ZarrDaskUtilsWarning",
    "get_client",
    "open_node",
    "open_store",
    "resolve_location",
    "walk_hierarchy",
]
