"""Arrays whose chunks decode without error into wrong values: only the documents tell.

netCDF-C's NCZarr writes the shuffle filter with ``elementsize`` 0 (see
:mod:`~zarr_dask_utils._core.pure.codec_quirks`): every chunk decodes, so ``check --deep`` and
``verify-chunks`` would call the array healthy; these findings say it is read wrongly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from zarr_dask_utils._core.pure.codec_quirks import shuffle_quirk_findings
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.pure.reports import Finding
from zarr_dask_utils._core.storage.enclosing import enclosing_hierarchy
from zarr_dask_utils._core.storage.locations import Location

__all__ = ["misread_findings"]


def misread_findings(location: Location, docs: Mapping[str, Any]) -> list[Finding]:
    """Arrays whose chunks decode into wrong values: only the documents tell.

    netCDF-C's shuffle ``elementsize`` 0 (:func:`shuffle_quirk_findings`).  Who wrote the
    hierarchy decides the severity, so an array checked on its own (``STORE/temp``) is
    judged with its enclosing root's attributes; locations stay relative to *location*.
    """
    where = enclosing_hierarchy(location)
    if not where.below:
        return shuffle_quirk_findings(docs)
    shifted = {join_key(where.below, k): v for k, v in docs.items()}
    shifted[".zattrs"] = where.attributes
    strip = len(where.below) + 1
    return [
        dataclasses.replace(f, location=f.location[strip:] if f.location != where.below else "")
        for f in shuffle_quirk_findings(shifted)
    ]
