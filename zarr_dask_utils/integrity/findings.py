"""Findings of the integrity scans: array documents zarr refuses, and bad decoded objects."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from zarr_dask_utils._core.hierarchy import ARRAY_V2, ZARR_JSON, split_key
from zarr_dask_utils._core.reports import Finding
from zarr_dask_utils.integrity.decode import DecodeResult

__all__ = ["decode_findings", "metadata_findings"]


def metadata_findings(docs: Mapping[str, Any], broken: Mapping[str, str]) -> list[Finding]:
    """Unparsable documents, and array documents zarr itself refuses to open."""
    from zarr.core.metadata import ArrayV2Metadata, ArrayV3Metadata

    found = [
        Finding(
            "error",
            "json-invalid",
            key,
            f"the document is {error}; zarr cannot open this node",
            "run `zdu repair` (restores it from consolidated metadata when possible)",
        )
        for key, error in broken.items()
    ]
    for key, doc in docs.items():
        name = split_key(key)[1]
        is_array = name == ARRAY_V2 or (name == ZARR_JSON and doc.get("node_type") == "array")
        if not is_array:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if name == ARRAY_V2:
                    ArrayV2Metadata.from_dict(dict(doc))
                else:
                    ArrayV3Metadata.from_dict(dict(doc))
        except Exception as err:
            found.append(
                Finding(
                    "error",
                    "array-metadata-invalid",
                    key,
                    f"zarr cannot parse this array document ({type(err).__name__}: {err})",
                    "run `zdu validate` for details and fix the document",
                )
            )
    return found


def decode_findings(result: DecodeResult) -> list[Finding]:
    """Findings for every bad key and every array the workers could not open."""
    found = [
        Finding(
            "error",
            code,
            key,
            message,
            "rewrite this chunk from a good copy (`zdu compare` finds one that matches), or "
            "delete it to read it as fill value",
        )
        for key, code, message in result.bad
    ]
    if result.bad_count > len(result.bad):
        found.append(
            Finding(
                "error",
                "chunk-decode-error",
                "",
                f"... and {result.bad_count - len(result.bad)} more bad chunks not listed",
            )
        )
    for path, error in sorted(result.unreadable.items()):
        found.append(
            Finding(
                "error",
                "array-unreadable",
                path,
                f"zarr cannot open this array on the workers ({error}); its chunks were not "
                "decoded",
                "run `zdu validate` and fix its metadata",
            )
        )
    return found
