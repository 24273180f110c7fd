"""Data integrity: chunk inventories, deep decode scans, samples, comparisons, manifests."""

from __future__ import annotations

from zarr_dask_utils.integrity.compare import compare_stores
from zarr_dask_utils.integrity.manifest import create_manifest, verify_manifest
from zarr_dask_utils.integrity.reports import (
    ChunkSampleReport,
    ComparisonReport,
    IntegrityReport,
    ManifestReport,
    ManifestVerificationReport,
)
from zarr_dask_utils.integrity.sample import verify_chunks
from zarr_dask_utils.integrity.scan import check_data_integrity

__all__ = [
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
]
