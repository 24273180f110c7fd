"""Which nodes zarr cannot read, and why (pure: raw documents in, findings out, no I/O).

``zdu info`` and ``zdu analyze`` describe nodes from their metadata documents; a node whose
document zarr-python refuses must not be described as healthy (nor silently dropped).  This is
the light check they share: parse the JSON, then let zarr-python's own metadata classes judge.
The full, field-by-field diagnosis is :func:`zarr_dask_utils.validate_metadata`'s; the codes
here are the same ones it uses, so scripts can branch on them alike.

Codes: ``json-invalid``, ``metadata-invalid``, ``node-type-invalid``, ``shape-invalid``,
``dtype-invalid``, ``node-unreadable``, ``object-unreadable``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zarr_dask_utils._core.checks.codecs import codec_unavailable_finding, unavailable_codecs
from zarr_dask_utils._core.pure.keys import (
    ARRAY_V2,
    ATTRS_V2,
    GROUP_V2,
    ZARR_JSON,
    parse_document,
    split_key,
)
from zarr_dask_utils._core.pure.reports import Finding

__all__ = ["document_problem", "unreadable_document_findings", "unreadable_path_findings"]

_FIX_RESTORE = (
    "restore the document from a backup or the consolidated metadata (`zdu repair` does this "
    "when a consolidated copy exists); `zdu validate` lists every problem in detail"
)


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )


def _zarr_judge(name: str, doc: Mapping[str, Any]) -> Callable[[dict[str, Any]], Any] | None:
    from zarr.core.group import GroupMetadata
    from zarr.core.metadata.v2 import ArrayV2Metadata
    from zarr.core.metadata.v3 import ArrayV3Metadata

    if name == ARRAY_V2:
        return lambda d: ArrayV2Metadata.from_dict({**d, "attributes": {}})
    if name == ZARR_JSON and doc.get("node_type") == "array":
        return ArrayV3Metadata.from_dict
    if name == ZARR_JSON:
        return GroupMetadata.from_dict
    return None


def _dtype_problem(name: str, doc: Mapping[str, Any]) -> str | None:
    from zarr.core.dtype import get_data_type_from_json

    field, fmt = ("dtype", 2) if name == ARRAY_V2 else ("data_type", 3)
    if field not in doc:
        return None
    spec = doc[field]
    if fmt == 2:
        codecs = [*(doc.get("filters") or []), doc.get("compressor")]
        ids = [c.get("id") for c in codecs if isinstance(c, Mapping)]
        vlen = [i for i in ids if i in ("vlen-utf8", "vlen-bytes", "json2")]
        spec = {"name": spec, "object_codec_id": vlen[0] if vlen else None}
    try:
        get_data_type_from_json(spec, zarr_format=fmt)  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError) as err:
        return f"data type {doc[field]!r} is not a zarr format {fmt} data type ({err})"
    return None


def document_problem(name: str, raw: bytes | None) -> tuple[str, str] | None:
    """Why zarr cannot read the node document *raw* named *name*: ``(code, reason)`` or ``None``.

    Parameters
    ----------
    name
        ``zarr.json``, ``.zarray``, ``.zgroup`` or ``.zattrs``.
    raw
        The stored bytes (``None``: the key is missing, which is not judged here).
    """
    if raw is None:
        return None
    doc, error = parse_document(raw)
    if error is not None:
        return "json-invalid", f"the document is {error}"
    if not isinstance(doc, Mapping):
        return "metadata-invalid", f"expected a JSON object, found {type(doc).__name__}"
    if name in (ATTRS_V2, GROUP_V2):
        return None
    if name == ZARR_JSON and doc.get("node_type") not in ("group", "array"):
        return "node-type-invalid", f"node_type {doc.get('node_type')!r} is not group or array"
    if name == ARRAY_V2 or doc.get("node_type") == "array":
        if "shape" in doc and not _is_shape(doc["shape"]):
            return "shape-invalid", f"shape {doc['shape']!r} is not a list of integers >= 0"
        dtype = _dtype_problem(name, doc)
        if dtype is not None:
            return "dtype-invalid", dtype
    judge = _zarr_judge(name, doc)
    if judge is None:
        return None
    try:
        judge(dict(doc))
    except Exception as err:  # zarr raises many types for bad metadata: each is a verdict
        return "metadata-invalid", f"zarr-python rejects it: {type(err).__name__}: {err}"
    return None


def unreadable_document_findings(docs: Mapping[str, bytes | None]) -> list[Finding]:
    """An error finding for every node document zarr cannot read, at the document's key.

    Parameters
    ----------
    docs
        ``{key: raw bytes}`` of a hierarchy's metadata documents (consolidated ones ignored).

    Examples
    --------
    >>> [f.code for f in unreadable_document_findings({"a/zarr.json": b"[[["})]
    ['json-invalid']
    """
    found = []
    for key, raw in sorted(docs.items()):
        path, name = split_key(key)
        if name not in (ZARR_JSON, ARRAY_V2, GROUP_V2, ATTRS_V2):
            continue
        doc = parse_document(raw)[0] if raw is not None else None
        missing = (
            unavailable_codecs(doc)
            if name in (ZARR_JSON, ARRAY_V2)
            and (isinstance(doc, Mapping) and (name == ARRAY_V2 or doc.get("node_type") == "array"))
            else ()
        )
        if missing:  # readable once the codec is installed: not a damaged document
            found.append(codec_unavailable_finding(key, path, missing))
            continue
        problem = document_problem(name, raw)
        if problem is None:
            continue
        code, reason = problem
        what = "node" if name != ATTRS_V2 else "node's attributes"
        found.append(
            Finding(
                "error",
                code,
                key,
                f"zarr cannot read the {what} at {path or '/'!r}: {reason}",
                _FIX_RESTORE,
            )
        )
    return found


def unreadable_path_findings(unreadable: Mapping[str, str]) -> list[Finding]:
    """An error finding for every folder or object a listing could not read.

    Parameters
    ----------
    unreadable
        ``{store-relative path: reason}`` as collected by
        :func:`~zarr_dask_utils._core.storage.listing.walk_local`; a path ending in ``/`` is a
        folder.
    """
    found = []
    for path, reason in sorted(unreadable.items()):
        folder = path.endswith("/")
        where = path.rstrip("/")
        found.append(
            Finding(
                "error",
                "node-unreadable" if folder else "object-unreadable",
                where,
                (
                    f"the folder {where!r} cannot be listed ({reason}): every node and chunk "
                    "below it is invisible"
                    if folder
                    else f"the object {where!r} cannot be read ({reason})"
                ),
                "fix the permissions or the symbolic link (a link that points to itself or to "
                "a missing target), then run again",
            )
        )
    return found
