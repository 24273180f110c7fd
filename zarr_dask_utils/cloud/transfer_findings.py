"""Findings of a store copy: failed verification, vanished or changed sources, subsets."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.pure.reports import Finding, keys_finding
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.storeio import read_keys, storage_errors

__all__ = ["consolidated_subset", "transfer_findings"]


def consolidated_subset(
    source: Location, target: Location, selected: Mapping[str, Any], listing: Mapping[str, Any]
) -> list[Finding]:
    """A warning when a subset copies a root document that consolidates nodes left behind."""
    names = [k for k in selected if k.rpartition("/")[2] == "zarr.json" and k.count("/") == 0]
    consolidated = any(k.rpartition("/")[2] == ".zmetadata" for k in listing)
    if names and not consolidated:
        with storage_errors(source.display):
            raw = read_keys(source.open_store(), [join_key(source.path, n) for n in names])
        for value in raw.values():
            try:
                doc = json.loads(value or b"{}")
            except ValueError:
                continue
            consolidated = consolidated or doc.get("consolidated_metadata") is not None
    if not consolidated:
        return []
    return [
        Finding(
            "warning",
            "consolidated-subset",
            "",
            "the source's consolidated metadata lists nodes this subset did not copy; readers "
            "that trust it would see arrays that are not in the target",
            f"zdu consolidate {target.display}",
        )
    ]


#: Problems a copy task reports: result field, finding code, what happened.
_PROBLEMS = (
    (
        "mismatched",
        "copy-mismatch",
        "the target copy, read back, differs from the bytes read from the source",
    ),
    (
        "resized",
        "source-changed-during-copy",
        "read from the source with another size than listed: it changed while being copied",
    ),
    (
        "vanished",
        "source-vanished",
        "listed on the source but gone when read: the source is being written to",
    ),
)


def transfer_findings(result: Mapping[str, Any], changed: Sequence[str]) -> list[Finding]:
    """Findings of a copy: objects that failed verification or vanished; sources changed."""
    out: list[Finding] = []
    rerun = "Run the same download again: it resumes and copies only what is missing."
    for name, code, message in _PROBLEMS:
        keys = sorted(result.get(name) or ())
        if keys:
            out.append(keys_finding("error", code, "", keys, len(keys), message, rerun))
    if changed:
        out.append(
            keys_finding(
                "info",
                "source-changed",
                "",
                list(changed),
                len(changed),
                "changed on the source since the interrupted run copied them; copied again",
            )
        )
    return out
