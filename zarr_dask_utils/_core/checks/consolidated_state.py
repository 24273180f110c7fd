"""Consolidated metadata (pure): what it should contain, how it differs, how to write it.

Format 2 keeps it in ``.zmetadata`` (``{"zarr_consolidated_format": 1, "metadata": {key: doc}}``
with every ``.zgroup``/``.zarray``/``.zattrs``); format 3 inside the root ``zarr.json`` under
``consolidated_metadata.metadata`` (node path → that node's ``zarr.json``; child groups carry an
empty inline ``consolidated_metadata`` marker, as zarr-python writes it).

Entries are written in canonical order: by depth, then by key.  zarr-python 3.1 rebuilds the
tree with ``itertools.groupby`` after a stable sort by depth, so a document whose children of
one parent are not contiguous loses children when read (zarr-python #4226).

Codes: ``consolidated-missing``, ``consolidated-invalid``, ``consolidated-stale``,
``consolidated-unsorted``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zarr_dask_utils._core.checks.structure import ParsedHierarchy
from zarr_dask_utils._core.pure.keys import (
    ARRAY_V2,
    ATTRS_V2,
    CONSOLIDATED_V2,
    GROUP_V2,
    ZARR_JSON,
    split_key,
)
from zarr_dask_utils._core.pure.reports import Finding

__all__ = [
    "ConsolidatedDiff",
    "canonical_order",
    "consolidated_findings",
    "current_entries",
    "diff_entries",
    "dropped_parents",
    "expected_entries",
    "render_consolidated",
]

_EMPTY_MARKER = {"kind": "inline", "must_understand": False, "metadata": {}}


def _entry_node(key: str, zarr_format: int) -> str:
    return split_key(key)[0] if zarr_format == 2 else key


def canonical_order(keys: Sequence[str], zarr_format: int) -> list[str]:
    """Sort consolidated keys by node depth, then by key (code points)."""

    def depth(key: str) -> int:
        node = _entry_node(key, zarr_format)
        return node.count("/") + 1 if node else 0

    return sorted(keys, key=lambda k: (depth(k), k))


def dropped_parents(keys: Sequence[str], zarr_format: int) -> list[str]:
    """Parents whose children zarr-python 3.1 would partly drop when reading *keys* in order."""
    nodes = list(dict.fromkeys(_entry_node(k, zarr_format) for k in keys))
    nodes = [n for n in nodes if n]
    by_depth = sorted(nodes, key=lambda n: n.count("/"))
    seen: set[str] = set()
    dropped: list[str] = []
    for parent, _ in itertools.groupby(by_depth, key=lambda n: n.rpartition("/")[0]):
        if parent in seen and parent not in dropped:
            dropped.append(parent)
        seen.add(parent)
    return dropped


def expected_entries(parsed: ParsedHierarchy) -> dict[str, Any]:
    """The entries consolidated metadata should hold for the documents as they are now."""
    entries: dict[str, Any] = {}
    for key, doc in parsed.docs.items():
        path, name = split_key(key)
        if parsed.zarr_format == 2 and name in (GROUP_V2, ARRAY_V2, ATTRS_V2):
            if isinstance(doc, Mapping) and name == GROUP_V2:
                doc = {k: v for k, v in doc.items() if k != "consolidated_metadata"}
            entries[key] = doc
        elif parsed.zarr_format == 3 and name == ZARR_JSON and path:
            if isinstance(doc, Mapping) and doc.get("node_type") == "group":
                doc = {**doc, "consolidated_metadata": dict(_EMPTY_MARKER)}
            entries[path] = doc
    reachable = {k: v for k, v in entries.items() if _reachable(k, entries, parsed.zarr_format)}
    return {k: reachable[k] for k in canonical_order(list(reachable), parsed.zarr_format)}


def _reachable(key: str, entries: Mapping[str, Any], zarr_format: int) -> bool:
    """Whether every ancestor of the entry's node is a group entry (zarr can walk to it)."""
    node = _entry_node(key, zarr_format)
    parts = node.split("/") if node else []
    for depth in range(1, len(parts)):
        ancestor = "/".join(parts[:depth])
        if zarr_format == 2:
            if f"{ancestor}/{GROUP_V2}" not in entries:
                return False
        else:
            doc = entries.get(ancestor)
            if not isinstance(doc, Mapping) or doc.get("node_type") != "group":
                return False
    return True


def current_entries(parsed: ParsedHierarchy) -> tuple[str, dict[str, Any] | None]:
    """Return ``(status, entries)``; status: ``ok``, ``missing``, ``invalid`` or ``unreadable``."""
    if parsed.zarr_format == 2:
        if CONSOLIDATED_V2 in parsed.broken:
            return "unreadable", None
        doc = parsed.docs.get(CONSOLIDATED_V2)
        if doc is None:
            return "missing", None
        meta = doc.get("metadata") if isinstance(doc, Mapping) else None
        return ("ok", dict(meta)) if isinstance(meta, Mapping) else ("invalid", None)
    if ZARR_JSON in parsed.broken:
        return "unreadable", None
    root = parsed.docs.get(ZARR_JSON)
    if not isinstance(root, Mapping) or root.get("consolidated_metadata") is None:
        return "missing", None
    meta = root["consolidated_metadata"]
    inner = meta.get("metadata") if isinstance(meta, Mapping) else None
    return ("ok", dict(inner)) if isinstance(inner, Mapping) else ("invalid", None)


def _canonical(doc: Any) -> str:
    if isinstance(doc, Mapping):
        doc = {k: v for k, v in doc.items() if k != "consolidated_metadata"}
    return json.dumps(doc, sort_keys=True, allow_nan=True)


@dataclass(frozen=True, slots=True)
class ConsolidatedDiff:
    """How consolidated entries differ from the real documents.

    ``added``: only in the documents; ``removed``: only in the consolidated copy; ``changed``:
    in both but different.  Keys as they appear in the consolidated metadata.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    changed_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def stale(self) -> bool:
        """Whether anything differs."""
        return bool(self.added or self.removed or self.changed)


def diff_entries(
    current: Mapping[str, Any], expected: Mapping[str, Any], *, skip: frozenset[str] = frozenset()
) -> ConsolidatedDiff:
    """Compare consolidated entries with the real documents (``skip``: keys not to judge)."""
    added = tuple(k for k in expected if k not in current and k not in skip)
    removed = tuple(k for k in current if k not in expected and k not in skip)
    changed = []
    fields: dict[str, tuple[str, ...]] = {}
    for key in expected:
        if (
            key in current
            and key not in skip
            and _canonical(current[key]) != _canonical(expected[key])
        ):
            changed.append(key)
            a, b = current[key], expected[key]
            if isinstance(a, Mapping) and isinstance(b, Mapping):
                names = (set(a) | set(b)) - {"consolidated_metadata"}
                fields[key] = tuple(
                    sorted(f for f in names if _canonical(a.get(f)) != _canonical(b.get(f)))
                )
    return ConsolidatedDiff(added, removed, tuple(changed), fields)


def _broken_entries(parsed: ParsedHierarchy) -> frozenset[str]:
    """Entries not to judge: their real document is unparsable (json-invalid covers it)."""
    if parsed.zarr_format == 2:
        return frozenset(parsed.broken)
    return frozenset(split_key(k)[0] for k in parsed.broken if split_key(k)[1] == ZARR_JSON)


def consolidated_findings(parsed: ParsedHierarchy) -> list[Finding]:
    """Missing, invalid, stale or badly ordered consolidated metadata.

    Nothing for a store whose root is an array: consolidated metadata belongs to a group
    (``zdu consolidate`` refuses an array), so its absence is no finding and no advice.
    """
    if parsed.node_kind("") == "array":
        return []
    key = CONSOLIDATED_V2 if parsed.zarr_format == 2 else ZARR_JSON
    status, current = current_entries(parsed)
    if status == "missing":
        return [
            Finding(
                "info",
                "consolidated-missing",
                key,
                "the hierarchy has no consolidated metadata: every open reads each document, "
                "one request per node on object stores",
                "run `zdu consolidate` for faster opens (then keep it current after changes)",
            )
        ]
    if status == "unreadable":
        return []  # json-invalid already reports the document
    if status == "invalid" or current is None:
        return [
            Finding(
                "error",
                "consolidated-invalid",
                key,
                "the consolidated metadata has no 'metadata' mapping; zarr fails to open the "
                "hierarchy with it",
                "regenerate it: `zdu consolidate` (or `zdu repair --apply`)",
            )
        ]
    found: list[Finding] = []
    diff = diff_entries(current, expected_entries(parsed), skip=_broken_entries(parsed))
    fix = "regenerate it: `zdu consolidate` (or `zdu repair --apply`)"
    fmt = parsed.zarr_format
    existing = {split_key(k)[0] for k in parsed.docs} | {split_key(k)[0] for k in parsed.broken}

    def by_node(entries: Sequence[str]) -> dict[str, list[str]]:
        nodes: dict[str, list[str]] = {}
        for entry in entries:
            nodes.setdefault(_entry_node(entry, fmt), []).append(entry)
        return nodes

    for node in by_node(diff.added):
        found.append(
            Finding(
                "error",
                "consolidated-stale",
                node,
                f"{node or '/'!r} exists but is missing from the consolidated metadata: "
                "zarr.open_group and xarray.open_zarr trust the consolidated copy and will not "
                "show it",
                fix,
            )
        )
    for node in by_node(diff.removed):
        if node in existing:
            continue  # the document exists but cannot be reached: group-document-missing says so
        found.append(
            Finding(
                "error",
                "consolidated-stale",
                node,
                f"the consolidated metadata lists {node or '/'!r}, whose document no longer "
                "exists: readers see a node that is gone and fail when they read its data",
                fix,
            )
        )
    for node, entries in by_node(diff.changed).items():
        what = sorted({f for e in entries for f in diff.changed_fields.get(e, ())}) or ["content"]
        found.append(
            Finding(
                "error",
                "consolidated-stale",
                node,
                f"the consolidated copy of {node or '/'!r} differs from its document "
                f"({', '.join(what)}): readers using consolidated metadata see the old values",
                fix,
            )
        )
    order = list(current)
    dropped = dropped_parents(order, fmt)
    if dropped:
        found.append(
            Finding(
                "error",
                "consolidated-unsorted",
                key,
                "the consolidated entries are out of order so that zarr-python 3.1 drops "
                f"children of {', '.join(repr(d) for d in dropped[:5])} when it reads them "
                "(zarr-python #4226)",
                "rewrite it in sorted order: `zdu consolidate`",
            )
        )
    return found


def render_consolidated(parsed: ParsedHierarchy, entries: Mapping[str, Any]) -> tuple[str, bytes]:
    """The key and bytes of the consolidated document holding *entries* (canonical order).

    For format 3 the root ``zarr.json`` is rewritten with every other field kept.
    """
    ordered = {k: entries[k] for k in canonical_order(list(entries), parsed.zarr_format)}
    if parsed.zarr_format == 2:
        doc: dict[str, Any] = {"metadata": ordered, "zarr_consolidated_format": 1}
        return CONSOLIDATED_V2, json.dumps(doc, indent=2, allow_nan=True).encode()
    root = dict(parsed.docs.get(ZARR_JSON) or {"zarr_format": 3, "node_type": "group"})
    root.setdefault("attributes", {})
    root["consolidated_metadata"] = {
        "kind": "inline",
        "must_understand": False,
        "metadata": ordered,
    }
    return ZARR_JSON, json.dumps(root, indent=2, allow_nan=True).encode()
