"""Pure vocabulary of a Zarr hierarchy: metadata key names, key paths, document parsing.

No I/O: planners, checks and graph builders all name keys and parse documents with these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ARRAY_V2",
    "ATTRS_V2",
    "CONSOLIDATED_V2",
    "GROUP_V2",
    "METADATA_NAMES",
    "ZARR_JSON",
    "is_metadata_key",
    "join_key",
    "node_path",
    "parse_document",
    "shadowed_v2_documents",
    "split_key",
]

ZARR_JSON = "zarr.json"
GROUP_V2 = ".zgroup"
ARRAY_V2 = ".zarray"
ATTRS_V2 = ".zattrs"
CONSOLIDATED_V2 = ".zmetadata"
METADATA_NAMES = frozenset({ZARR_JSON, GROUP_V2, ARRAY_V2, ATTRS_V2, CONSOLIDATED_V2})


def split_key(key: str) -> tuple[str, str]:
    """Split ``"a/b/.zarray"`` into the node path ``"a/b"`` and the name ``".zarray"``."""
    parent, _, name = key.rpartition("/")
    return parent, name


def node_path(key: str) -> str:
    """The node path a metadata key belongs to (``""`` for the root)."""
    return split_key(key)[0]


def is_metadata_key(key: str) -> bool:
    """``True`` for ``zarr.json``, ``.zgroup``, ``.zarray``, ``.zattrs`` and ``.zmetadata``."""
    return split_key(key)[1] in METADATA_NAMES


def parse_document(raw: bytes | None) -> tuple[Any, str | None]:
    """Parse a JSON document: ``(value, None)`` or ``(None, error message)``.

    Never raises for bad bytes: invalid UTF-8, invalid JSON, an empty document and JSON nested
    deeper than Python's recursion limit (``[[[[…``, which ``json.loads`` refuses with a
    ``RecursionError`` after at most that many levels, whatever the document's size) are all
    reported as "not valid JSON".
    """
    if raw is None:
        return None, "missing"
    if not raw.strip():
        return None, "not valid JSON (it is empty: 0 bytes of JSON)"
    try:
        return json.loads(raw), None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not valid JSON ({err})"
    except RecursionError:
        return None, f"not valid JSON (nested too deeply to parse; {len(raw):,} bytes)"


def join_key(prefix: str, key: str) -> str:
    """Join a node path and a key with ``/``, treating ``""`` as the root."""
    return f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key


def shadowed_v2_documents(
    keys: Iterable[str], zarr_format: int | None = None
) -> dict[str, list[str]]:
    """Node path -> format 2 documents that zarr-python 3 ignores there, sorted.

    A folder holding both ``zarr.json`` and ``.zarray``/``.zgroup`` (the Rust ``zarrs`` writes
    both) is read as format 3 by zarr-python 3 when opened directly or through a format 3
    parent: the ``.zarray``/``.zgroup`` and its ``.zattrs`` are shadowed.  Through a format 2
    parent it is read as format 2, so nothing is shadowed when *zarr_format* is 2 (the node is
    ambiguous then; ``mixed-formats`` reports it).  ``None``: the format of the root documents
    in *keys* (format 3 when the root has ``zarr.json`` or no document at all).

    Examples
    --------
    >>> shadowed_v2_documents(["zarr.json", "a/zarr.json", "a/.zarray", "a/.zattrs", "b/.zattrs"])
    {'a': ['a/.zarray', 'a/.zattrs']}
    """
    present = set(keys)
    if zarr_format is None:
        v2_root = GROUP_V2 in present or ARRAY_V2 in present
        zarr_format = 2 if v2_root and ZARR_JSON not in present else 3
    if zarr_format != 3:
        return {}
    found: dict[str, list[str]] = {}
    for key in sorted(present):
        path, name = split_key(key)
        if name != ZARR_JSON:
            continue
        v2 = [join_key(path, n) for n in (ARRAY_V2, GROUP_V2)]
        if any(k in present for k in v2):
            found[path] = sorted(k for k in [*v2, join_key(path, ATTRS_V2)] if k in present)
    return found
