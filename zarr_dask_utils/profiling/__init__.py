"""Profiling: why is my zarr job slow?  ``profile_zarr_operation`` and its figures.

:func:`profile_zarr_operation` runs any call on the cluster with Dask's performance report, a
span, a memory sampler and the store-operation tracer, and returns a :class:`ProfileReport`
with a verdict (latency-, bandwidth-, decode-, task-overhead- or memory-bound) and the next
step; :func:`visualize_performance` draws it (or a store benchmark) with bokeh.
"""

from __future__ import annotations

from zarr_dask_utils.profiling.bench_report import StoreBenchmark
from zarr_dask_utils.profiling.profile import profile_zarr_operation
from zarr_dask_utils.profiling.report import ProfileReport
from zarr_dask_utils.profiling.store_benchmark import benchmark_store
from zarr_dask_utils.profiling.verdict import ProfileFacts, Verdict
from zarr_dask_utils.profiling.visualize import visualize_performance

__all__ = [
    "ProfileFacts",
    "ProfileReport",
    "StoreBenchmark",
    "Verdict",
    "benchmark_store",
    "profile_zarr_operation",
    "visualize_performance",
]
