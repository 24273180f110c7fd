"""Pure core: vocabulary, chunk-grid arithmetic, cost model, chunk choice, partitions, reports.

ints, tuples, dicts and bytes in; frozen dataclasses out.  May import only other ``pure``
modules, :mod:`zarr_dask_utils._core.errors`, the standard library and numpy: no zarr I/O, no
Dask or distributed, no clock.
"""
