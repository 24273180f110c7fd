"""Store I/O: locations, probes, key I/O, listings, object streams, outputs, markers, tracing.

Everything that touches a zarr Store or fsspec lives here, run on the client or inside worker
tasks.  May import :mod:`zarr_dask_utils._core.pure`, :mod:`~zarr_dask_utils._core.config`,
:mod:`~zarr_dask_utils._core.errors`, zarr, fsspec and the ``distributed`` worker-side hooks
tracing needs; never :mod:`~zarr_dask_utils._core.compute` or a feature.
"""
