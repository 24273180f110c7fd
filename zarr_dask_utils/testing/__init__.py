"""Test helpers for Zarr stores, importable by your own tests too.

:mod:`~zarr_dask_utils.testing.builders` writes small deterministic hierarchies (the sample
hierarchy, a wide one for benchmarks, a demo store with realistic problems);
:mod:`~zarr_dask_utils.testing.corrupt` damages real stores through zarr's Store API (broken
JSON, deleted documents, stale or misordered consolidated metadata, out-of-grid chunks, mixed
formats); :mod:`~zarr_dask_utils.testing.hostile` writes hostile inputs (deeply nested
documents, empty documents, symbolic link loops).  They work on local paths, S3 URLs (with
``storage_options``) and zarr Stores; the link loops need a local folder.

Examples
--------
>>> import zarr
>>> from zarr_dask_utils.testing import build_sample_hierarchy, corrupt
>>> store = zarr.storage.MemoryStore()
>>> build_sample_hierarchy(store)
>>> corrupt.remove_group_document(store, "climate/static")
['climate/static/zarr.json']
"""

from __future__ import annotations

from zarr_dask_utils.testing import builders, corrupt, hostile
from zarr_dask_utils.testing.builders import (
    build_demo_store,
    build_sample_hierarchy,
    build_wide_hierarchy,
)

__all__ = [
    "build_demo_store",
    "build_sample_hierarchy",
    "build_wide_hierarchy",
    "builders",
    "corrupt",
    "hostile",
]
