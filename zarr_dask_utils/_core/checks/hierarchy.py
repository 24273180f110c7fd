"""Every metadata check of a hierarchy, on documents a graph already read (pure).

:func:`check_documents` is everything ``validate_metadata`` checks except chunk keys;
:func:`chunk_check_task` checks chunk keys against the listing (run it as a task next to the
listing, so a large listing never travels to the client); :func:`consolidated_status` names the
state of the consolidated metadata.  ``metadata`` (validate, repair) and ``debug`` (``zdu
doctor``) share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from zarr_dask_utils._core.checks.consolidated_state import consolidated_findings, current_entries
from zarr_dask_utils._core.checks.structure import (
    ParsedHierarchy,
    chunk_key_findings,
    document_findings,
    parse_hierarchy,
    structure_findings,
)
from zarr_dask_utils._core.pure.codec_quirks import shuffle_quirk_findings
from zarr_dask_utils._core.pure.reports import Finding
from zarr_dask_utils._core.storage.draft_v3 import check_no_nested_draft_v3

__all__ = ["check_documents", "chunk_check_task", "consolidated_status"]


def chunk_check_task(
    listing: list[str], raw: Mapping[str, bytes | None], zarr_format: int
) -> tuple[list[Finding], int]:
    """Worker task: chunk-key findings from the full listing, and the number of objects."""
    parsed, _ = parse_hierarchy(raw, zarr_format)
    return chunk_key_findings(parsed, listing), len(listing)


def check_documents(
    raw: Mapping[str, bytes | None], zarr_format: int, *, where: str = "this hierarchy"
) -> tuple[ParsedHierarchy, list[Finding]]:
    """Pure: parse the documents and return every document-level metadata finding.

    Everything :func:`~zarr_dask_utils.validate_metadata` checks except chunk keys (which need
    the listing: see :func:`chunk_check_task`).  Other features that already read the
    documents in their own graph (``zdu doctor``) call this instead of a second graph.

    Raises
    ------
    DraftV3StoreError
        A draft-v3 store is nested below the root (*where* names the hierarchy): one verdict,
        before any command that would write goes on.
    """
    check_no_nested_draft_v3(raw, where)
    parsed, findings = parse_hierarchy(raw, zarr_format)
    findings += document_findings(parsed)
    findings += structure_findings(parsed)
    findings += consolidated_findings(parsed)
    # chunks that decode into wrong values: only the documents tell (netCDF-C's shuffle 0)
    findings += shuffle_quirk_findings(parsed.docs)
    return parsed, findings


def consolidated_status(parsed: ParsedHierarchy, findings: Iterable[Finding]) -> str:
    """``ok``, ``missing``, ``invalid``, ``unreadable``, ``stale`` or ``unsorted``.

    ``not applicable (array root)`` when the root is an array (it has none to have).
    """
    if parsed.node_kind("") == "array":
        return "not applicable (array root)"
    status, _ = current_entries(parsed)
    codes = {f.code for f in findings}
    if status == "ok" and codes & {"consolidated-stale", "consolidated-unsorted"}:
        status = "stale" if "consolidated-stale" in codes else "unsorted"
    return status
