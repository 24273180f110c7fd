"""``visualize_performance``: figures of a profile or of a store benchmark."""

from __future__ import annotations

from typing import Any

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["visualize_performance"]


def visualize_performance(report: Any) -> Any:
    """Bokeh figures of a :class:`ProfileReport` or a ``StoreBenchmark``.

    For a profile: the task timeline by prefix, MB and requests per array, the latency
    histogram and memory over time per worker.  For a store benchmark: its own figures
    (``zarr_dask_utils.profiling.bench_figures.store_benchmark_figures``).  Show the layout
    with ``bokeh.io.show`` (``bokeh.io.output_notebook()`` in a notebook) or save it with
    ``bokeh.io.save(layout, resources=bokeh.resources.INLINE)`` to work offline;
    :meth:`ProfileReport.save_html` writes the figures with the report.

    Parameters
    ----------
    report
        A :class:`~zarr_dask_utils.ProfileReport` or a ``StoreBenchmark``.

    Returns
    -------
    bokeh.models.LayoutDOM

    Raises
    ------
    InvalidOptionError
        *report* is neither.

    See Also
    --------
    profile_zarr_operation
    """
    from zarr_dask_utils.profiling.report import ProfileReport

    if isinstance(report, ProfileReport):
        from zarr_dask_utils.profiling.figures import profile_layout

        return profile_layout(report)
    if type(report).__name__ == "StoreBenchmark":
        from zarr_dask_utils.profiling.bench_figures import (  # type: ignore[import-not-found,unused-ignore]
            store_benchmark_figures,
        )

        return store_benchmark_figures(report)
    raise InvalidOptionError(
        f"visualize_performance takes a ProfileReport or a StoreBenchmark, not "
        f"{type(report).__name__}. Make one with profile_zarr_operation(...) or "
        "benchmark_store(...)."
    )
