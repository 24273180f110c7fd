"""Which arrays the zarrs (Rust) codec pipeline cannot serve (pure: a metadata document in).

zarrs-python falls back to zarr's own pipeline by itself for codecs and data types it does
not know, but fails (or, for some, would fail) on these, found by reading every committed
foreign store (``tests/data/foreign/``) through it:

* format 2 ``"order": "F"``: "input array must be a C contiguous array" (reading into, and
  writing from, the Fortran-ordered buffers zarr hands it);
* format 2 big-endian dtypes (``">f4"``): "Non-native byte order not supported", raised
  before zarrs-python's own fallback is tried;
* a shuffle filter with ``elementsize`` 0 (netCDF-C's NCZarr writes it): "the shuffle codec
  expects the input byte length to be an integer multiple of the elementsize".

Examples
--------
>>> zarrs_unsupported_reason({"zarr_format": 2, "order": "F", "dtype": "<f4"})
'format 2 order F'
>>> zarrs_unsupported_reason({"zarr_format": 3, "codecs": [{"name": "bytes"}]}) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["zarrs_unsupported_reason"]

_SHUFFLE = ("shuffle", "numcodecs.shuffle")


def _zero_shuffle(entry: Any) -> bool:
    if not isinstance(entry, Mapping):
        return False
    name = entry.get("id", entry.get("name"))
    config = entry.get("configuration", entry)
    return (
        name in _SHUFFLE
        and isinstance(config, Mapping)
        and config.get("elementsize", 1) in (0, "0")
    )


def _big_endian(dtype: Any) -> bool:
    if isinstance(dtype, str):
        return dtype.startswith(">") and dtype[1:2] not in ("", "S", "U", "V")
    if isinstance(dtype, list):  # a structured dtype: [[name, dtype], ...]
        return any(isinstance(f, list) and len(f) > 1 and _big_endian(f[1]) for f in dtype)
    return False


def _v3_codecs(codecs: Any) -> list[Any]:
    """Every codec entry, those inside sharding codecs too."""
    out: list[Any] = []
    for codec in codecs if isinstance(codecs, list) else []:
        out.append(codec)
        config = codec.get("configuration") if isinstance(codec, Mapping) else None
        if isinstance(config, Mapping):
            out += _v3_codecs(config.get("codecs")) + _v3_codecs(config.get("index_codecs"))
    return out


def zarrs_unsupported_reason(doc: Mapping[str, Any]) -> str | None:
    """Why the zarrs codec pipeline cannot serve the array of *doc*, or ``None``.

    Parameters
    ----------
    doc
        The array's metadata as a dict (``ArrayMetadata.to_dict()`` or the parsed document).

    Returns
    -------
    str or None
        A short reason (for logs), ``None`` when zarrs may serve the array.
    """
    if doc.get("zarr_format") == 2:
        if doc.get("order") == "F":
            return "format 2 order F"
        if _big_endian(doc.get("dtype")):
            return "format 2 big-endian dtype"
        entries = [*(doc.get("filters") or []), doc.get("compressor")]
    else:
        entries = list(_v3_codecs(doc.get("codecs")))
    if any(_zero_shuffle(e) for e in entries):
        return "shuffle with elementsize 0"
    return None
