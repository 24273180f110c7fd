"""Recognise a pre-1.0 draft-v3 store, which zarr-python 3 cannot read, and say so.

zarr-python 2.11 to 2.18 could write "experimental v3" stores following a draft of the v3 spec
(``ZARR_V3_EXPERIMENTAL_API=1``, ``zarr_version=3``): a root ``zarr.json`` *entry point*
(``zarr_format`` and ``metadata_encoding`` set to ``https://purl.org/zarr/spec/protocol/core/3.0``)
with node documents under ``meta/root/…`` (``meta/root.group.json``,
``meta/root/<name>.array.json``) and chunks under ``data/root/…``.  The final v3 spec keeps one
``zarr.json`` per node instead, so such a store looks to zarr-python 3 like a group document
without a ``node_type``.  The probe recognises it here and refuses it with one verdict for
every command: :class:`~zarr_dask_utils._core.errors.DraftV3StoreError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zarr.abc.store import Store

from zarr_dask_utils._core.errors import DraftV3StoreError
from zarr_dask_utils._core.pure.keys import ZARR_JSON, join_key, parse_document, split_key
from zarr_dask_utils._core.storage.storeio import read_keys

__all__ = [
    "DRAFT_V3_PROTOCOL",
    "check_no_nested_draft_v3",
    "check_not_draft_v3",
    "draft_v3_error",
    "is_draft_v3_entry_point",
]

#: ``zarr_format`` / ``metadata_encoding`` of a draft-v3 entry point document.
DRAFT_V3_PROTOCOL = "https://purl.org/zarr/spec/protocol/core/3.0"
_PROTOCOL_STEM = "purl.org/zarr/spec/protocol/core/3"
#: Bytes every draft-v3 entry point holds (a cheap test before parsing a document).
_MARKERS = (b"metadata_encoding", _PROTOCOL_STEM.encode())
#: Root node documents of a draft-v3 hierarchy (group or array at the root).
_ROOT_DOCUMENTS = ("meta/root.group.json", "meta/root.array.json")


def is_draft_v3_entry_point(doc: Any) -> bool:
    """Whether a root ``zarr.json`` is the entry point of a draft-v3 store (not a v3 node).

    Examples
    --------
    >>> is_draft_v3_entry_point({"zarr_format": DRAFT_V3_PROTOCOL, "metadata_encoding": "x"})
    True
    >>> is_draft_v3_entry_point({"zarr_format": 3, "node_type": "group"})
    False
    """
    if not isinstance(doc, dict) or doc.get("node_type") is not None:
        return False
    fmt = doc.get("zarr_format")
    return "metadata_encoding" in doc or (isinstance(fmt, str) and _PROTOCOL_STEM in fmt)


def draft_v3_error(where: str, found: str) -> DraftV3StoreError:
    """The one verdict on a draft-v3 store at *where*; *found* says what gave it away."""
    return DraftV3StoreError(
        f"{where} is a draft v3 store (zarr-python 2.x experimental v3 / pre-1.0 spec: "
        f"{found}; metadata under meta/root/…, chunks under data/root/…). zarr-python 3 "
        "cannot read this layout, so zdu neither reads nor writes it (nothing was changed). "
        "Convert it with zarr-python 2.x (2.11-2.18), with ZARR_V3_EXPERIMENTAL_API=1 set, "
        "into a new v2 store (copy_all copies the members, then the root's attributes): "
        "`src = zarr.open_group(path, mode='r', zarr_version=3); "
        "dst = zarr.open_group(new_path, mode='w', zarr_version=2); "
        "zarr.copy_all(src, dst); dst.attrs.update(src.attrs)`; or rewrite "
        "each array with zarr-python 3 from the values read with 2.x. Then run zdu on the copy "
        "(`zdu rechunk COPY NEW --zarr-format 3` writes a final-spec v3 store)."
    )


def check_not_draft_v3(
    store: Store, path: str, where: str, *, root_doc: Any = None, children: Sequence[str] = ()
) -> None:
    """Raise :class:`DraftV3StoreError` if the location *path* of *store* is a draft-v3 store.

    Parameters
    ----------
    store, path, where
        The store, the location's path inside it, and its display name for messages.
    root_doc
        The parsed root ``zarr.json`` when there is one (no request is made for it).
    children
        Names one level down when the root holds no Zarr document; a ``meta`` child costs
        one read of the draft's root node documents, nothing else is read.
    """
    if is_draft_v3_entry_point(root_doc):
        fmt = root_doc.get("zarr_format")
        raise draft_v3_error(where, f"its zarr.json is an entry point with zarr_format {fmt!r}")
    if "meta" in children:
        keys = [join_key(path, k) for k in _ROOT_DOCUMENTS]
        docs = read_keys(store, keys)
        present = [k for k in _ROOT_DOCUMENTS if docs.get(join_key(path, k)) is not None]
        if present:
            raise draft_v3_error(where, f"no zarr.json, but {present[0]!r}")


def check_no_nested_draft_v3(documents: Mapping[str, Any], where: str) -> None:
    """Raise :class:`DraftV3StoreError` if a draft-v3 store sits somewhere below the root.

    The probe refuses a draft-v3 store at the location itself; one nested inside a normal
    hierarchy (a folder of a v2 or v3 group) is met by the walk instead, whose metadata
    documents (raw bytes or parsed, by key relative to the root) are *documents*.  Only the
    ``zarr.json`` documents that hold a draft marker are parsed.
    """
    for key in sorted(documents):
        node, name = split_key(key)
        value = documents[key]
        if name != ZARR_JSON or value is None:
            continue
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            if not any(m in raw for m in _MARKERS):
                continue
            value = parse_document(raw)[0]
        if is_draft_v3_entry_point(value):
            fmt = value.get("zarr_format")
            inside = f"{node!r} inside {where}" if node else where
            raise draft_v3_error(
                inside, f"its zarr.json is an entry point with zarr_format {fmt!r}"
            )
