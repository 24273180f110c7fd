"""Debugging: explain real errors, debug logging, and tracing of store operations."""

from zarr_dask_utils._core.pure.trace_report import OpStats, TraceReport
from zarr_dask_utils.debug.diagnose import DiagnosisReport, diagnose_zarr_store
from zarr_dask_utils.debug.diagnose_rules import ArrayDiagnosis
from zarr_dask_utils.debug.explain import ErrorExplanation, explain_zarr_error
from zarr_dask_utils.debug.trace import ZarrDebugger, disable_debug_mode, enable_debug_mode

__all__ = [
    "ArrayDiagnosis",
    "DiagnosisReport",
    "diagnose_zarr_store",
    "ErrorExplanation",
    "OpStats",
    "TraceReport",
    "ZarrDebugger",
    "disable_debug_mode",
    "enable_debug_mode",
    "explain_zarr_error",
]
