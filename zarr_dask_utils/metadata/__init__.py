"""Metadata: validate, consolidate and repair the metadata documents of a hierarchy."""

from zarr_dask_utils._core.checks.hierarchy import (
    check_documents,
    chunk_check_task,
    consolidated_status,
)
from zarr_dask_utils.metadata.consolidate import consolidate_metadata
from zarr_dask_utils.metadata.repair import repair_metadata
from zarr_dask_utils.metadata.reports import ConsolidationReport, RepairReport, ValidationReport
from zarr_dask_utils.metadata.validate import validate_metadata

__all__ = [
    "ConsolidationReport",
    "RepairReport",
    "ValidationReport",
    "check_documents",
    "chunk_check_task",
    "consolidated_status",
    "consolidate_metadata",
    "repair_metadata",
    "validate_metadata",
]
