"""Sources :func:`~zarr_dask_utils.rechunk_array` refuses before anything is written.

A shuffle filter with ``elementsize`` 0 (netCDF-C's NCZarr writes it, meaning "the type's
size"): numcodecs, hence zarr-python, reads 0 as "no shuffle" and decodes the chunks into
wrong values without an error (the zarrs pipeline cannot decode them at all).  A copy would
hold those wrong values under a document that no longer shows it, so the source is refused
with the repair that fixes its document (``zdu repair ROOT --apply``, see
:mod:`zarr_dask_utils._core.pure.codec_quirks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zarr_dask_utils._core.errors import CodecQuirkError
from zarr_dask_utils._core.pure.codec_quirks import SHUFFLE_CODE, shuffle_quirk_findings
from zarr_dask_utils._core.storage.enclosing import enclosing_hierarchy, hierarchy_documents
from zarr_dask_utils._core.storage.locations import Location

__all__ = ["refuse_misread_codecs"]


def refuse_misread_codecs(
    location: Location, groups: Sequence[tuple[str, Any]], arrays: Sequence[tuple[str, Any]]
) -> None:
    """Raise :class:`CodecQuirkError` when an array's codecs would be decoded wrongly.

    Parameters
    ----------
    location
        The source location (its display names the store in the advice).
    groups, arrays
        ``(path, node)`` below *location* (from ``open_source``).

    Raises
    ------
    CodecQuirkError
        Some array has a shuffle filter with element size 0; the message names the arrays
        and the ``zdu repair`` command that fixes their documents.
    """
    where = enclosing_hierarchy(location)
    docs = hierarchy_documents(where, groups, arrays)
    found = [f for f in shuffle_quirk_findings(docs) if f.code == SHUFFLE_CODE]
    if not found:
        return
    root = where.root
    names = ", ".join(f"/{f.location}" for f in found)
    repairable = all(f.severity == "error" for f in found)
    if repairable:
        todo = (
            f"Run `zdu repair {root} --apply` (it sets the element size in the document, "
            "after a backup; chunks are not touched), then run this rechunk again."
        )
    else:
        todo = (
            "Nothing in the hierarchy says netCDF-C wrote it: if it did, set elementsize to "
            "the dtype's item size in the document and compare a few values with netCDF4; if "
            "its writer meant 'no shuffle', set elementsize to 1 (the same meaning for every "
            "reader). Then run this rechunk again."
        )
    raise CodecQuirkError(
        f"The source {location.display} cannot be copied: array {names} has a shuffle "
        "filter with elementsize 0, which netCDF-C writes to mean the element size of the "
        "type while numcodecs (zarr-python) reads it as 'no shuffle', so its chunks decode "
        f"into wrong values (zdu finding {SHUFFLE_CODE}). Nothing was written. {todo}"
    )
