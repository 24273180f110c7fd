"""zarr-dask-utils: diagnose, repair, optimise and protect Zarr stores with Dask graphs.

Every operation runs as a Dask graph on a ``dask.distributed`` cluster: the Client you have,
a scheduler you name, or an embedded ``LocalCluster``.
"""

from __future__ import annotations

from zarr_dask_utils._core.cluster import get_client
from zarr_dask_utils._core.errors import (
    ChunkUnreadableError,
    ClusterConnectionError,
    ConcurrentModificationError,
    EndpointUnreachableError,
    InvalidOptionError,
    LockTimeoutError,
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
from zarr_dask_utils.concurrent import (
    DistributedLock,
    SafeStoreReport,
    SafeZarrStore,
    WriteCheckReport,
    WriteResult,
    check_dask_write,
    safe_store,
    synchronized_write,
    to_zarr_region_safe,
)
from zarr_dask_utils.debug import (
    DiagnosisReport,
    ErrorExplanation,
    TraceReport,
    ZarrDebugger,
    diagnose_zarr_store,
    disable_debug_mode,
    enable_debug_mode,
    explain_zarr_error,
)
from zarr_dask_utils.integrity import (
    ChunkSampleReport,
    ComparisonReport,
    IntegrityReport,
    ManifestReport,
    ManifestVerificationReport,
    check_data_integrity,
    compare_stores,
    create_manifest,
    verify_chunks,
    verify_manifest,
)
from zarr_dask_utils.metadata import (
    ConsolidationReport,
    RepairReport,
    ValidationReport,
    consolidate_metadata,
    repair_metadata,
    validate_metadata,
)
from zarr_dask_utils.optimize import (
    ChunkAnalysisReport,
    PerformanceEstimate,
    RechunkReport,
    analyze_chunks,
    estimate_performance,
    rechunk_array,
)

__version__ = "0.1.0"

__all__ = [
    "ChunkAnalysisReport",
    "PerformanceEstimate",
    "RechunkReport",
    "analyze_chunks",
    "estimate_performance",
    "rechunk_array",
    "ConcurrentModificationError",
    "DistributedLock",
    "LockTimeoutError",
    "SafeStoreReport",
    "SafeZarrStore",
    "WriteCheckReport",
    "WriteResult",
    "check_dask_write",
    "safe_store",
    "synchronized_write",
    "to_zarr_region_safe",
    "ChunkSampleReport",
    "ComparisonReport",
    "IntegrityReport",
    "ManifestReport",
    "ManifestVerificationReport",
    "check_data_integrity",
    "compare_stores",
    "create_manifest",
    "verify_chunks",
    "verify_manifest",
    "ChunkUnreadableError",
    "ClusterConnectionError",
    "ConsolidationReport",
    "RepairReport",
    "ValidationReport",
    "consolidate_metadata",
    "repair_metadata",
    "validate_metadata",
    "EndpointUnreachableError",
    "ErrorExplanation",
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
    "TraceReport",
    "ZarrDebugger",
    "disable_debug_mode",
    "enable_debug_mode",
    "DiagnosisReport",
    "diagnose_zarr_store",
    "explain_zarr_error",
    "get_client",
    "open_node",
    "open_store",
    "resolve_location",
    "walk_hierarchy",
]
