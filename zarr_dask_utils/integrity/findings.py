"""Findings of the integrity checks (pure: documents, sizes and hashes in, findings out).

Array documents zarr refuses, bad decoded objects, and objects that differ from a checksum
manifest.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from zarr_dask_utils._core.checks.codecs import (
    codec_unavailable_finding,
    unavailable_codecs,
)
from zarr_dask_utils._core.decoding.pipeline_decoder import DecodeResult
from zarr_dask_utils._core.pure.keys import ARRAY_V2, ZARR_JSON, split_key
from zarr_dask_utils._core.pure.reports import Finding

__all__ = [
    "VERIFY_CODES",
    "compare_sizes",
    "decode_findings",
    "hash_findings",
    "metadata_findings",
]


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
        missing = unavailable_codecs(doc)
        if missing:  # not checkable here: neither healthy nor corrupt
            found.append(codec_unavailable_finding(key, split_key(key)[0], missing))
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
            "rewrite this chunk from a good copy (`zdu compare` finds one that matches)",
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


VERIFY_CODES = (
    "object-missing",
    "object-truncated",
    "object-size-changed",
    "object-changed",
    "object-extra",
)


def compare_sizes(
    expected: Mapping[str, Mapping[str, Any]], sizes: Mapping[str, int]
) -> tuple[dict[str, list[Finding]], dict[str, int]]:
    """Findings by code from the listing alone, and the objects whose hash must be checked.

    Missing, truncated, resized and extra objects are told by their sizes; an object of the
    recorded size goes to *to_hash* (its bytes may still have changed).
    """
    found: dict[str, list[Finding]] = {code: [] for code in VERIFY_CODES}
    to_hash: dict[str, int] = {}
    for key, entry in expected.items():
        if key not in sizes:
            found["object-missing"].append(
                Finding(
                    "error",
                    "object-missing",
                    key,
                    f"recorded in the manifest ({entry.get('size')} bytes) but no longer stored",
                    "restore it from a backup or the source",
                )
            )
        elif sizes[key] < int(entry.get("size", -1)):
            found["object-truncated"].append(
                Finding(
                    "error",
                    "object-truncated",
                    key,
                    f"{sizes[key]} bytes stored, {entry.get('size')} recorded: truncated",
                    "restore it from a backup or the source",
                )
            )
        elif sizes[key] != int(entry.get("size", -1)):
            found["object-size-changed"].append(
                Finding(
                    "error",
                    "object-size-changed",
                    key,
                    f"{sizes[key]} bytes stored, {entry.get('size')} recorded",
                    "restore it, or recreate the manifest if the change was intended",
                )
            )
        else:
            to_hash[key] = sizes[key]
    for key in sizes:
        if key not in expected:
            found["object-extra"].append(
                Finding(
                    "warning",
                    "object-extra",
                    key,
                    "stored but not in the manifest (written after it was created?)",
                    "recreate the manifest if the object belongs to the data",
                )
            )
    return found, to_hash


def hash_findings(
    hashed: Mapping[str, Mapping[str, Any] | None],
    expected: Mapping[str, Mapping[str, Any]],
    algorithm: str,
    found: dict[str, list[Finding]],
) -> None:
    """Add to *found* the objects whose hash differs from the manifest (or that vanished)."""
    for key, got in sorted(hashed.items()):
        if got is None:
            found["object-missing"].append(
                Finding("error", "object-missing", key, "deleted while being verified")
            )
        elif got["hash"] != expected[key].get("hash"):
            found["object-changed"].append(
                Finding(
                    "error",
                    "object-changed",
                    key,
                    f"same size, different {algorithm} hash: the bytes changed (bit rot, or a "
                    "rewrite)",
                    "restore it from a backup or the source",
                )
            )
