"""Optimize: chunk analysis, performance estimates and bounded-memory rechunking."""

from __future__ import annotations

from zarr_dask_utils.optimize.analyze import analyze_chunks
from zarr_dask_utils.optimize.estimate import estimate_performance
from zarr_dask_utils.optimize.rechunk import rechunk_array
from zarr_dask_utils.optimize.reports import (
    ChunkAnalysisReport,
    PerformanceEstimate,
    RechunkReport,
)

__all__ = [
    "ChunkAnalysisReport",
    "PerformanceEstimate",
    "RechunkReport",
    "analyze_chunks",
    "estimate_performance",
    "rechunk_array",
]
