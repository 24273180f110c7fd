"""Codec settings other writers mean differently from numcodecs (pure: documents in, findings out).

netCDF-C's NCZarr (4.9-4.10, both ``#mode=nczarr`` and ``#mode=zarr``) writes the HDF5
shuffle filter as ``{"id": "shuffle", "elementsize": 0}``, where 0 means "the element size of
the variable's type".  numcodecs reads ``elementsize <= 1`` as "nothing to unshuffle", so
zarr-python 3, xarray and every numcodecs reader decode such chunks **without error into wrong
values** (the bytes are still shuffled).  Chunks decode, so only the document tells.  Setting
the element size to the dtype's item size is a metadata-only change that makes zarr-python
read what netCDF-C wrote; it is proven right only when the hierarchy says netCDF-C wrote it
(``_NCProperties`` on the root, or ``_nczarr_array`` on the array).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from zarr_dask_utils._core.pure.keys import ARRAY_V2, ATTRS_V2, ZARR_JSON, join_key, split_key
from zarr_dask_utils._core.pure.reports import Finding

__all__ = [
    "SHUFFLE_CODE",
    "fixed_shuffle_document",
    "shuffle_quirk_findings",
    "written_by_netcdf_c",
]

#: finding code of a shuffle filter with element size 0
SHUFFLE_CODE = "shuffle-elementsize-zero"

_SHUFFLE_V3 = ("numcodecs.shuffle", "shuffle")


def _itemsize(doc: Mapping[str, Any]) -> int | None:
    dtype = doc.get("dtype", doc.get("data_type"))
    try:
        return int(np.dtype(dtype).itemsize) if isinstance(dtype, str) else None
    except TypeError:
        return None


def _zero_shuffles(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The shuffle codec entries of an array document whose element size is 0 (in place refs)."""
    found: list[dict[str, Any]] = []
    if doc.get("zarr_format") == 2:
        for entry in [*(doc.get("filters") or []), doc.get("compressor")]:
            if (
                isinstance(entry, dict)
                and entry.get("id") == "shuffle"
                and entry.get("elementsize") in (0, "0")
            ):
                found.append(entry)
        return found
    for codec in doc.get("codecs") or []:
        if isinstance(codec, dict) and codec.get("name") in _SHUFFLE_V3:
            config = codec.get("configuration")
            if isinstance(config, dict) and config.get("elementsize") in (0, "0"):
                found.append(config)
    return found


def _array_documents(docs: Mapping[str, Any]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Array path → (document key, document) of every array document."""
    out: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for key, doc in docs.items():
        path, name = split_key(key)
        if not isinstance(doc, Mapping):
            continue
        if name == ARRAY_V2 or (name == ZARR_JSON and doc.get("node_type") == "array"):
            out[path] = (key, doc)
    return out


def written_by_netcdf_c(docs: Mapping[str, Any], path: str) -> bool:
    """``True`` when the hierarchy's documents say netCDF-C wrote the array at *path*."""
    root_attrs = docs.get(ATTRS_V2) or (docs.get(ZARR_JSON) or {}).get("attributes") or {}
    array_attrs = docs.get(join_key(path, ATTRS_V2)) or {}
    v3 = docs.get(join_key(path, ZARR_JSON))
    if isinstance(v3, Mapping):
        array_attrs = v3.get("attributes") or array_attrs
    return (
        isinstance(root_attrs, Mapping)
        and "netcdf" in str(root_attrs.get("_NCProperties", "")).lower()
    ) or (isinstance(array_attrs, Mapping) and "_nczarr_array" in array_attrs)


def fixed_shuffle_document(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """A copy of *doc* with each element-size-0 shuffle set to the dtype's item size.

    ``None`` when there is nothing to fix or the dtype's size is unknown.
    """
    size = _itemsize(doc)
    if size is None or not _zero_shuffles(doc):
        return None
    fixed = copy.deepcopy(dict(doc))
    for entry in _zero_shuffles(fixed):
        entry["elementsize"] = size
    return fixed


def shuffle_quirk_findings(docs: Mapping[str, Any]) -> list[Finding]:
    """One finding per array whose shuffle filter has element size 0.

    An error when netCDF-C wrote the hierarchy (zarr-python reads wrong values; ``zdu repair``
    fixes the document), a warning otherwise (who wrote it decides what 0 means).
    """
    findings: list[Finding] = []
    for path, (key, doc) in sorted(_array_documents(docs).items()):
        if not _zero_shuffles(doc):
            continue
        size = _itemsize(doc)
        shown = f"{size}" if size is not None else "the dtype's item size"
        if written_by_netcdf_c(docs, path):
            findings.append(
                Finding(
                    "error",
                    SHUFFLE_CODE,
                    path,
                    f"{key} has a shuffle filter with elementsize 0, as netCDF-C (NCZarr) "
                    f"writes it, meaning the element size of the type ({shown} bytes). "
                    "numcodecs reads 0 as 'no shuffle', so zarr-python, xarray and other "
                    "numcodecs readers decode every chunk of this array into wrong values, "
                    "without an error.  The chunks themselves are fine.",
                    f"Run `zdu repair --apply` to set elementsize to {shown} in {key} (the "
                    "document is backed up first; chunks are not touched), or read the "
                    "data with netCDF4 (`#mode=nczarr`).",
                )
            )
        else:
            findings.append(
                Finding(
                    "warning",
                    SHUFFLE_CODE,
                    path,
                    f"{key} has a shuffle filter with elementsize 0: numcodecs (zarr-python, "
                    "xarray) decodes it as 'no shuffle', while netCDF-C, which writes 0, "
                    f"means the element size of the type ({shown} bytes).  If netCDF-C or "
                    "another NCZarr writer wrote this array, zarr-python reads wrong values.",
                    f"If netCDF-C wrote it, set elementsize to {shown} in {key} and compare "
                    "a few values with netCDF4; otherwise nothing to do.",
                )
            )
    return findings
