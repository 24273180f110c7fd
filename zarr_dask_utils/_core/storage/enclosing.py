"""The hierarchy a local node lies in: its root folder and the root's attributes.

A command given one array of a hierarchy (``zdu verify-chunks STORE/temp``, ``zdu rechunk
STORE/temp``) sees only that array's documents, yet some verdicts need the root's: who wrote
the hierarchy (netCDF-C's ``_NCProperties``, see
:mod:`~zarr_dask_utils._core.pure.codec_quirks`), and the store the advice must name
(``zdu repair ROOT --apply``).  For local stores the parent folders tell; other stores are
taken as they were given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zarr_dask_utils._core.storage.locations import Location

__all__ = ["EnclosingHierarchy", "enclosing_hierarchy", "hierarchy_documents"]


@dataclass(frozen=True)
class EnclosingHierarchy:
    """Where a node lies: the root to name, its path below it, the root's attributes.

    Attributes
    ----------
    root
        The hierarchy root to name in advice (a local folder, else the location's display).
    below
        The node's path below *root* (``""``: the node is the root).
    attributes
        The root group's attributes when the node is below it (``{}`` otherwise: the
        node's own documents already hold them).
    """

    root: str
    below: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


def _group_attributes(folder: Path) -> dict[str, Any] | None:
    """The attributes of the group in *folder*, ``None`` when it holds no group."""
    try:
        if (folder / ".zgroup").is_file():
            zattrs = folder / ".zattrs"
            doc = json.loads(zattrs.read_text()) if zattrs.is_file() else {}
            return doc if isinstance(doc, dict) else {}
        doc = json.loads((folder / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict) and doc.get("node_type") == "group":
        attrs = doc.get("attributes")
        return attrs if isinstance(attrs, dict) else {}
    return None


def enclosing_hierarchy(location: Location) -> EnclosingHierarchy:
    """The outermost zarr group folder above a local node (walking up while parents are groups).

    Parameters
    ----------
    location
        The node's location.

    Returns
    -------
    EnclosingHierarchy
        For a non-local store, or a node with no group above it: the location itself.
    """
    if location.kind != "local":
        return EnclosingHierarchy(location.display)
    node = Path(location.url) / location.path if location.path else Path(location.url)
    root, below, attributes = node, list[str](), dict[str, Any]()
    while root.parent != root and (attrs := _group_attributes(root.parent)) is not None:
        below.insert(0, root.name)
        root, attributes = root.parent, attrs
    if not below:
        return EnclosingHierarchy(location.display)
    return EnclosingHierarchy(str(root), "/".join(below), attributes)


def _key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def hierarchy_documents(
    where: EnclosingHierarchy,
    groups: Sequence[tuple[str, Any]],
    arrays: Sequence[tuple[str, Any]],
) -> dict[str, Any]:
    """The parsed documents of opened zarr nodes, keyed from the enclosing root.

    Parameters
    ----------
    where
        From :func:`enclosing_hierarchy`.
    groups, arrays
        ``(path below the location, zarr Group or Array)``.

    Returns
    -------
    dict
        ``{"temp/.zarray": {...}, "temp/.zattrs": {...}, ".zattrs": root attributes}`` as
        the document checks of :mod:`~zarr_dask_utils._core.pure.codec_quirks` take them.
    """
    docs: dict[str, Any] = {}
    if where.below:
        docs[".zattrs"] = where.attributes  # who wrote the hierarchy (``_NCProperties``)
    for path, group in groups:
        docs[_key(where.below, path, ".zattrs")] = dict(group.attrs)
    for path, arr in arrays:
        meta = arr.metadata.to_dict()
        name = ".zarray" if meta.get("zarr_format") == 2 else "zarr.json"
        docs[_key(where.below, path, name)] = meta
        docs[_key(where.below, path, ".zattrs")] = dict(arr.attrs)
    return docs
