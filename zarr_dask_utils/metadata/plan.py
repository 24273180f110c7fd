"""Repair planning (pure): from findings to the exact documents to write, nothing guessed.

What can be repaired without guessing data:

* a missing group document: write an empty group (attributes from the consolidated copy
  when it has them);
* an unparsable node document, or an array document that is missing while its chunks are
  still there: restore it from the consolidated copy, when one exists;
* consolidated metadata that is stale, out of order or invalid: regenerate it from the
  (repaired) documents;
* a shuffle filter with element size 0 in an array netCDF-C wrote (it means the type's size
  there, "no shuffle" to numcodecs): set the dtype's item size (see
  :mod:`~zarr_dask_utils._core.pure.codec_quirks`).

Everything else (an invalid dtype, a shape that no longer matches the chunks, …) needs a
human, and is returned as such.  Chunk data is never touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from zarr_dask_utils._core.checks.consolidated_state import (
    current_entries,
    diff_entries,
    dropped_parents,
    expected_entries,
    render_consolidated,
)
from zarr_dask_utils._core.checks.structure import ParsedHierarchy
from zarr_dask_utils._core.pure.codec_quirks import SHUFFLE_CODE, fixed_shuffle_document
from zarr_dask_utils._core.pure.keys import (
    ARRAY_V2,
    ATTRS_V2,
    GROUP_V2,
    ZARR_JSON,
    join_key,
    split_key,
)
from zarr_dask_utils._core.pure.reports import Finding

__all__ = ["RepairAction", "RepairPlan", "plan_repairs"]

REPAIRABLE = frozenset(
    {
        "group-document-missing",
        "json-invalid",
        "array-document-missing",
        "consolidated-stale",
        "consolidated-unsorted",
        "consolidated-invalid",
        "consolidated-missing",
        SHUFFLE_CODE,  # only as an error: netCDF-C wrote it, so 0 means the type's size
    }
)


@dataclass(frozen=True, slots=True)
class RepairAction:
    """One document to write: which, why, and its new bytes."""

    action: str  # "write-group-document" | "restore-document" | "fix-codec-document" | …
    key: str
    reason: str
    content: bytes = field(repr=False)
    replaces_existing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (the content's size, not the content)."""
        return {
            "action": self.action,
            "key": self.key,
            "reason": self.reason,
            "bytes": len(self.content),
            "replaces_existing": self.replaces_existing,
        }

    def __str__(self) -> str:
        verb = "replace" if self.replaces_existing else "create"
        return f"{self.action}: {verb} {self.key} ({self.reason})"


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """What a repair would do.

    ``actions`` in the order to apply them (documents first, consolidated metadata last);
    ``unrepairable``: the findings no automatic repair can fix.
    """

    actions: tuple[RepairAction, ...]
    unrepairable: tuple[Finding, ...]


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, indent=2, allow_nan=True).encode()


def _copies(parsed: ParsedHierarchy) -> dict[str, Any]:
    """Consolidated copies of node documents, keyed by the document key they would restore."""
    status, current = current_entries(parsed)
    if status != "ok" or current is None:
        return {}
    if parsed.zarr_format == 2:
        return {
            k: v for k, v in current.items() if split_key(k)[1] in (GROUP_V2, ARRAY_V2, ATTRS_V2)
        }
    copies = {}
    for path, doc in current.items():
        if isinstance(doc, Mapping):
            copies[join_key(path, ZARR_JSON)] = {
                k: v for k, v in doc.items() if k != "consolidated_metadata"
            }
    return copies


def _group_documents(
    path: str, parsed: ParsedHierarchy, copies: Mapping[str, Any]
) -> dict[str, Any]:
    if parsed.zarr_format == 3:
        copy = copies.get(join_key(path, ZARR_JSON))
        if isinstance(copy, Mapping) and copy.get("node_type") == "group":
            return {join_key(path, ZARR_JSON): dict(copy)}
        return {
            join_key(path, ZARR_JSON): {"zarr_format": 3, "node_type": "group", "attributes": {}}
        }
    docs: dict[str, Any] = {join_key(path, GROUP_V2): {"zarr_format": 2}}
    attrs = copies.get(join_key(path, ATTRS_V2))
    if isinstance(attrs, Mapping) and attrs:
        docs[join_key(path, ATTRS_V2)] = dict(attrs)
    return docs


def plan_repairs(
    parsed: ParsedHierarchy,
    findings: Sequence[Finding],
    *,
    consolidate: bool | None = None,
    existing_keys: Iterable[str] = (),
) -> RepairPlan:
    """Plan the repairs for *findings* on the hierarchy *parsed*.

    Parameters
    ----------
    parsed
        The hierarchy's documents.
    findings
        What validation found.
    consolidate
        ``None``: regenerate consolidated metadata only if it exists and is wrong; ``True``:
        also write it where it is missing; ``False``: never touch it.
    existing_keys
        Keys that exist in the store (to tell "create" from "replace").
    """
    existing = set(existing_keys) | set(parsed.docs) | set(parsed.broken)
    copies = _copies(parsed)
    writes: dict[str, tuple[str, str, Any]] = {}
    handled: set[int] = set()
    for i, f in enumerate(findings):
        if f.code == "group-document-missing":
            for key, doc in _group_documents(f.location, parsed, copies).items():
                writes[key] = (
                    "write-group-document",
                    f"group {f.location or '/'!r} had no document",
                    doc,
                )
            handled.add(i)
        elif f.code == "json-invalid" and f.location in copies:
            writes[f.location] = (
                "restore-document",
                "unparsable; restored from consolidated copy",
                copies[f.location],
            )
            handled.add(i)
        elif f.code == "array-document-missing":
            names = (ZARR_JSON,) if parsed.zarr_format == 3 else (ARRAY_V2, ATTRS_V2)
            restored = {
                join_key(f.location, n): copies[join_key(f.location, n)]
                for n in names
                if join_key(f.location, n) in copies
            }
            main = join_key(f.location, names[0])
            if main in restored:
                for key, doc in restored.items():
                    writes[key] = (
                        "restore-document",
                        "array document missing; restored from consolidated copy",
                        doc,
                    )
                handled.add(i)
        elif f.code == SHUFFLE_CODE and f.severity == "error":
            doc_key = next(
                (
                    join_key(f.location, n)
                    for n in (ARRAY_V2, ZARR_JSON)
                    if join_key(f.location, n) in parsed.docs
                ),
                None,
            )
            fixed = fixed_shuffle_document(parsed.docs[doc_key]) if doc_key else None
            if doc_key and fixed is not None:
                writes[doc_key] = (
                    "fix-codec-document",
                    "shuffle elementsize 0 (netCDF-C: the type's size) set to the item size",
                    fixed,
                )
                handled.add(i)
    new_docs = dict(parsed.docs)
    new_broken = dict(parsed.broken)
    for key, (_, _, doc) in writes.items():
        new_docs[key] = doc
        new_broken.pop(key, None)
    repaired = replace(parsed, docs=new_docs, broken=new_broken)
    actions = [
        RepairAction(action, key, reason, _dump(doc), key in existing)
        for key, (action, reason, doc) in sorted(writes.items())
    ]
    consolidated_codes = {"consolidated-stale", "consolidated-unsorted", "consolidated-invalid"}
    status, current = current_entries(repaired)
    expected = expected_entries(repaired)
    needed = False
    reason = ""
    if consolidate is not False:
        if status == "ok" and current is not None:
            diff = diff_entries(current, expected)
            order_wrong = bool(dropped_parents(list(current), repaired.zarr_format))
            needed, reason = diff.stale or order_wrong, "stale or out of order"
        elif status in ("invalid", "unreadable") and not (
            repaired.zarr_format == 3 and status == "unreadable"
        ):
            needed, reason = True, "invalid"
        elif status == "missing" and consolidate and repaired.node_kind("") != "array":
            needed, reason = True, "missing (consolidate=True)"
    if needed:
        key, content = render_consolidated(repaired, expected)
        actions.append(
            RepairAction(
                "write-consolidated",
                key,
                f"consolidated metadata {reason}",
                content,
                key in existing,
            )
        )
    if needed:
        handled |= {
            i
            for i, f in enumerate(findings)
            if f.code in consolidated_codes or (f.code == "json-invalid" and f.location == key)
        }
    unrepairable = tuple(
        f for i, f in enumerate(findings) if i not in handled and f.severity != "info"
    )
    return RepairPlan(tuple(actions), unrepairable)
