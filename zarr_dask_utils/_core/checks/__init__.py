"""Metadata-document checks: raw documents (and a listing) in, findings out, no I/O.

What ``validate_metadata`` checks, shared by ``metadata`` (validate, repair) and ``debug``
(``zdu doctor``), which run them on documents their own graph read.  May import
:mod:`zarr_dask_utils._core.pure`, :mod:`~zarr_dask_utils._core.errors` and zarr-python's
metadata model (``zarr.core.metadata``, ``zarr.core.dtype``, ``zarr.registry``), never a store,
Dask or the clock.
"""
