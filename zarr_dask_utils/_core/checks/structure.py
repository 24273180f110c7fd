"""Checks of a whole hierarchy's shape (pure): documents, groups, formats and chunk keys.

Codes: ``json-invalid``, ``group-document-missing``, ``node-inside-array``, ``mixed-formats``,
``v2-document-shadowed``, ``chunk-key-outside-grid``, ``chunk-key-invalid``,
``array-document-missing``, ``unexpected-key``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zarr_dask_utils._core.checks.documents import check_document
from zarr_dask_utils._core.pure.chunkgrid import ArrayGrid, grid_from_document
from zarr_dask_utils._core.pure.keys import (
    ARRAY_V2,
    ATTRS_V2,
    CONSOLIDATED_V2,
    GROUP_V2,
    ZARR_JSON,
    is_metadata_key,
    join_key,
    parse_document,
    shadowed_v2_documents,
    split_key,
)
from zarr_dask_utils._core.pure.reports import Finding, Severity, keys_finding

__all__ = [
    "ArrayGrid",
    "ParsedHierarchy",
    "array_grids",
    "chunk_key_findings",
    "document_findings",
    "parse_hierarchy",
    "structure_findings",
]

MAX_KEYS_LISTED = 100  # per array and code; the rest are counted in one summary finding


@dataclass(frozen=True)
class ParsedHierarchy:
    """All metadata documents of a store, parsed.

    ``docs`` holds the valid JSON documents, ``broken`` the unparsable ones (key → error),
    ``zarr_format`` the format of the hierarchy (from the root, or the majority);
    ``shadowed`` the format 2 documents beside a ``zarr.json`` that zarr-python 3 ignores
    (node path → keys; kept out of ``docs`` and ``broken``).
    """

    zarr_format: int
    docs: Mapping[str, Any]
    broken: Mapping[str, str] = field(default_factory=dict)
    shadowed: Mapping[str, list[str]] = field(default_factory=dict)

    def node_kind(self, path: str) -> str | None:
        """``"group"``, ``"array"``, ``"unknown"`` (document unparsable) or ``None``."""
        v3 = join_key(path, ZARR_JSON)
        if v3 in self.docs:
            doc = self.docs[v3]
            kind = doc.get("node_type") if isinstance(doc, Mapping) else None
            return kind if kind in ("group", "array") else "unknown"
        if join_key(path, ARRAY_V2) in self.docs:
            return "array"
        if join_key(path, GROUP_V2) in self.docs:
            return "group"
        if any(join_key(path, n) in self.broken for n in (ZARR_JSON, ARRAY_V2, GROUP_V2)):
            return "unknown"
        return None

    def node_paths(self) -> set[str]:
        """Paths that have a node document (valid or not)."""
        names = (ZARR_JSON, ARRAY_V2, GROUP_V2)
        return {split_key(k)[0] for k in [*self.docs, *self.broken] if split_key(k)[1] in names}

    def node_format(self, path: str) -> set[int]:
        """Formats of the node documents at *path* (both for a mixed node)."""
        formats = set()
        if any(join_key(path, ZARR_JSON) in m for m in (self.docs, self.broken)):
            formats.add(3)
        if any(
            join_key(path, n) in m for n in (ARRAY_V2, GROUP_V2) for m in (self.docs, self.broken)
        ):
            formats.add(2)
        return formats


def parse_hierarchy(
    raw: Mapping[str, bytes | None], zarr_format: int
) -> tuple[ParsedHierarchy, list[Finding]]:
    """Parse raw documents; unparsable ones become ``json-invalid`` findings."""
    docs: dict[str, Any] = {}
    broken: dict[str, str] = {}
    findings: list[Finding] = []
    shadowed = shadowed_v2_documents([k for k, v in raw.items() if v is not None], zarr_format)
    hidden = {k for keys in shadowed.values() for k in keys}
    for key, value in raw.items():
        if value is None or key in hidden:
            continue
        doc, error = parse_document(value)
        if error is None:
            docs[key] = doc
            continue
        broken[key] = error
        findings.append(
            Finding(
                "error",
                "json-invalid",
                key,
                f"the document is {error}; zarr cannot open this node",
                "restore it from a backup or from the consolidated metadata (`zdu repair` does "
                "this when a consolidated copy exists)",
            )
        )
    return ParsedHierarchy(zarr_format, docs, broken, shadowed), findings


def document_findings(parsed: ParsedHierarchy) -> list[Finding]:
    """Check every valid node document (``zarr.json``, ``.zarray``, ``.zgroup``, ``.zattrs``)."""
    found: list[Finding] = []
    for key, doc in parsed.docs.items():
        name = split_key(key)[1]
        if name != CONSOLIDATED_V2:
            found += check_document(name, doc, key)
    return found


def structure_findings(parsed: ParsedHierarchy) -> list[Finding]:
    """Missing group documents, nodes inside arrays and mixed formats."""
    found: list[Finding] = []
    paths = parsed.node_paths() | {
        split_key(k)[0] for k in parsed.docs if split_key(k)[1] == ATTRS_V2
    }
    missing: dict[str, list[str]] = defaultdict(list)
    for path in sorted(paths):
        parts = path.split("/") if path else []
        for depth in range(len(parts)):
            ancestor = "/".join(parts[:depth])
            kind = parsed.node_kind(ancestor)
            if kind is None:
                missing[ancestor].append(path)
            elif kind == "array":
                found.append(
                    Finding(
                        "error",
                        "node-inside-array",
                        path,
                        f"a node is stored inside the array {ancestor or '/'!r}; arrays cannot "
                        "have children, so zarr never shows it",
                        "move the node out of the array (zarr cannot reach it there)",
                    )
                )
                break
        if parsed.node_kind(path) is None and path:
            missing[path].append(path)
    for ancestor, below in sorted(missing.items()):
        shown = ", ".join(repr(b) for b in below[:3]) + (" …" if len(below) > 3 else "")
        found.append(
            Finding(
                "error",
                "group-document-missing",
                ancestor,
                f"group {ancestor or '/'!r} has no group document, so zarr cannot open it or reach "
                f"{len(below)} node(s) below it ({shown})",
                "write a group document here (`zdu repair --apply` does, keeping attributes from "
                "the consolidated metadata when it has them)",
            )
        )
    for path, keys in sorted(parsed.shadowed.items()):
        names = ", ".join(split_key(k)[1] for k in keys)
        found.append(
            Finding(
                "warning",
                "v2-document-shadowed",
                path,
                f"this node has both zarr.json and format 2 documents ({names}); zarr-python 3 "
                "reads it as format 3 and ignores them, while format 2 readers (zarr-python 2) "
                "read only them, so two readers can see different metadata",
                "nothing to do for zarr-python 3 readers; if format 2 readers also use this "
                f"store, keep {names} in step with zarr.json when the metadata changes",
            )
        )
    for path in sorted(parsed.node_paths()):
        formats = parsed.node_format(path)
        if len(formats) > 1 or (formats and parsed.zarr_format not in formats):
            both = (
                "; zarr-python 3 reads it as format 2 through its parent group but as format 3 "
                "(zarr.json) when the node is opened directly"
                if len(formats) > 1
                else ""
            )
            found.append(
                Finding(
                    "error",
                    "mixed-formats",
                    path,
                    f"node uses zarr format {sorted(formats)} in a format {parsed.zarr_format} "
                    f"hierarchy; zarr opens one format per hierarchy and ignores the others{both}",
                    "convert the node to the hierarchy's format (keep a copy of the other "
                    "documents)",
                )
            )
    return found


def array_grids(parsed: ParsedHierarchy) -> dict[str, ArrayGrid]:
    """The chunk grid of every array whose document is valid enough to know it."""
    grids: dict[str, ArrayGrid] = {}
    for key, doc in parsed.docs.items():
        path, name = split_key(key)
        grid = grid_from_document(path, name, doc)
        if grid is not None:
            grids[path] = grid
    return grids


def _orphan_owner(key: str, zarr_format: int) -> str:
    parts = key.split("/")[:-1]
    if zarr_format == 3 and "c" in parts:
        return "/".join(parts[: len(parts) - 1 - parts[::-1].index("c")])
    while parts and parts[-1].isascii() and parts[-1].isdigit():
        parts.pop()
    return "/".join(parts)


def chunk_key_findings(
    parsed: ParsedHierarchy, listing: Iterable[str], *, ignore_prefix: str | None = None
) -> list[Finding]:
    """Chunk keys outside their array's grid, malformed keys, and data without an array.

    Parameters
    ----------
    parsed
        The parsed documents.
    listing
        Every key of the store (relative to the hierarchy root).
    ignore_prefix
        Keys under this prefix (zarr-dask-utils' backups) are skipped.
    """
    grids = array_grids(parsed)
    nodes = parsed.node_paths()
    outside: dict[str, list[str]] = defaultdict(list)
    malformed: dict[str, list[str]] = defaultdict(list)
    orphans: dict[str, list[str]] = defaultdict(list)
    strays: dict[str, list[str]] = defaultdict(list)
    skip = ignore_prefix.rstrip("/") + "/" if ignore_prefix else None
    for key in listing:
        if is_metadata_key(key) or (skip and key.startswith(skip)):
            continue
        parts = key.split("/")
        owner = next(
            (
                "/".join(parts[:i])
                for i in range(len(parts) - 1, -1, -1)
                if "/".join(parts[:i]) in nodes
            ),
            None,
        )
        if owner is not None and owner in grids:
            grid = grids[owner]
            rel = key[len(owner) + 1 :] if owner else key
            coords = grid.parse(rel)
            if coords is None:
                malformed[owner].append(key)
            elif any(c >= g for c, g in zip(coords, grid.grid, strict=True)):
                outside[owner].append(key)
        elif owner is None or parsed.node_kind(owner) == "group":
            guess = _orphan_owner(key, parsed.zarr_format)
            (strays if guess in nodes else orphans)[guess].append(key)
    found: list[Finding] = []
    for owner, keys in sorted(outside.items()):
        found += _listed(
            "error",
            "chunk-key-outside-grid",
            keys,
            (
                f"chunk key lies outside the grid {grids[owner].grid} of array {owner or '/'!r}: "
                "the shape was shrunk after writing, or the key belongs elsewhere"
            ),
            "if the array should be larger, restore its shape (the data reappears); "
            "otherwise move it out",
        )
    for owner, keys in sorted(malformed.items()):
        found += _listed(
            "warning",
            "chunk-key-invalid",
            keys,
            (
                f"object inside array {owner or '/'!r} is not a chunk key of its "
                f"encoding (prefix {grids[owner].prefix!r}, separator {grids[owner].separator!r})"
            ),
            "check the chunk key encoding first (it may be data in another encoding), "
            "else move it out",
        )
    for owner, keys in sorted(strays.items()):
        found.append(
            keys_finding(
                "info",
                "unexpected-key",
                owner,
                keys,
                len(keys),
                (
                    f"stored in group {owner or '/'!r}, neither metadata nor chunk data "
                    "of any array; zarr ignores them"
                ),
                "nothing to fix: zarr ignores them (move them elsewhere only if you know they "
                "are stray)",
            )
        )
    for owner, keys in sorted(orphans.items()):
        found.append(
            Finding(
                "error",
                "array-document-missing",
                owner,
                f"{len(keys)} object(s) (e.g. {keys[0]!r}) are stored under {owner or '/'!r}, "
                "which has no array document: their data is invisible to zarr",
                "restore the array document (`zdu repair --apply` does when the consolidated "
                "metadata still has it) or from a backup",
            )
        )
    return found


def _listed(
    severity: Severity, code: str, keys: list[str], message: str, fix: str
) -> list[Finding]:
    found = [Finding(severity, code, k, message, fix) for k in keys[:MAX_KEYS_LISTED]]
    if len(keys) > MAX_KEYS_LISTED:
        rest = len(keys) - MAX_KEYS_LISTED
        more = f"... and {rest} more like the above"
        found.append(Finding(severity, code, keys[MAX_KEYS_LISTED], more, fix))
    return found
