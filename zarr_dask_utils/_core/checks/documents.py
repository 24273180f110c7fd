"""Checks of single metadata documents (pure: JSON values in, findings out, no I/O).

Each check returns :class:`~zarr_dask_utils.Finding` objects with a stable ``code``:

``json-invalid``, ``metadata-invalid``, ``metadata-missing-key``, ``zarr-format-invalid``,
``node-type-invalid``, ``shape-invalid``, ``chunks-invalid``, ``dtype-invalid``,
``fill-value-invalid``, ``codec-unknown``, ``chunk-key-encoding-invalid``,
``dimension-names-invalid``, ``attributes-invalid``.

zarr-python's own parsers (data types, codec registries, metadata classes) are the judge of
validity; the checks here turn their verdicts into precise, fixable findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numcodecs
from zarr.core.dtype import get_data_type_from_json
from zarr.core.group import GroupMetadata
from zarr.core.metadata.v2 import ArrayV2Metadata
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.registry import get_codec_class

from zarr_dask_utils._core.checks.codecs import codec_unavailable_finding, unavailable_codecs
from zarr_dask_utils._core.pure.keys import split_key
from zarr_dask_utils._core.pure.reports import Finding

__all__ = [
    "REQUIRED_V2_ARRAY",
    "REQUIRED_V3_ARRAY",
    "check_array_v2",
    "check_array_v3",
    "check_attributes_v2",
    "check_document",
    "check_group_v2",
    "check_group_v3",
]

REQUIRED_V3_ARRAY = (
    "zarr_format",
    "node_type",
    "shape",
    "data_type",
    "chunk_grid",
    "chunk_key_encoding",
    "fill_value",
    "codecs",
)
REQUIRED_V2_ARRAY = ("zarr_format", "shape", "chunks", "dtype", "compressor", "fill_value", "order")


def _err(code: str, where: str, message: str, fix: str | None = None) -> Finding:
    return Finding("error", code, where, message, fix)


def _is_shape(value: Any, *, positive: bool) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and (v > 0 if positive else v >= 0)
        for v in value
    )


def _missing(doc: Mapping[str, Any], required: Sequence[str], key: str) -> list[Finding]:
    return [
        _err(
            "metadata-missing-key",
            key,
            f"required key {name!r} is missing from the document",
            f"add {name!r} to {key}; without it zarr cannot open this node",
        )
        for name in required
        if name not in doc
    ]


def _dtype_finding(spec: Any, zarr_format: int, key: str) -> tuple[Any, Finding | None]:
    try:
        return get_data_type_from_json(spec, zarr_format=zarr_format), None  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError) as err:
        shown = spec["name"] if isinstance(spec, Mapping) else spec
        return None, _err(
            "dtype-invalid",
            key,
            f"data type {shown!r} is not a zarr format {zarr_format} data type ({err})",
            "set it to a valid data type (e.g. 'float32' in format 3, '<f4' in format 2) that "
            "matches how the chunks were encoded",
        )


def _fill_value_finding(dtype: Any, value: Any, zarr_format: int, key: str) -> Finding | None:
    if dtype is None or (zarr_format == 2 and value is None):
        return None
    try:
        dtype.from_json_scalar(value, zarr_format=zarr_format)
    except (ValueError, TypeError, OverflowError) as err:
        return _err(
            "fill-value-invalid",
            key,
            f"fill_value {value!r} does not fit data type {dtype} ({err})",
            "set fill_value to a value of the array's data type (e.g. 0, or 'NaN' for floats)",
        )
    return None


def _chunk_shape_findings(shape: Any, chunks: Any, key: str, what: str) -> list[Finding]:
    found: list[Finding] = []
    if shape is not None and not _is_shape(shape, positive=False):
        found.append(
            _err(
                "shape-invalid",
                key,
                f"shape {shape!r} is not a list of non-negative integers",
                "restore the array's real shape from a backup or the consolidated metadata",
            )
        )
    if not _is_shape(chunks, positive=True):
        found.append(
            _err(
                "chunks-invalid",
                key,
                f"{what} {chunks!r} is not a list of positive integers",
                "restore the chunk shape the data was written with",
            )
        )
    elif _is_shape(shape, positive=False) and len(chunks) != len(shape):
        found.append(
            _err(
                "chunks-invalid",
                key,
                f"{what} {chunks!r} has {len(chunks)} dimension(s) but shape {shape!r} has "
                f"{len(shape)}",
                "make the chunk shape and the shape have the same number of dimensions",
            )
        )
    return found


def _codec_findings_v3(codecs: Any, key: str) -> list[Finding]:
    if not isinstance(codecs, list) or not codecs:
        return [_err("metadata-invalid", key, f"codecs {codecs!r} is not a non-empty list")]
    found: list[Finding] = []
    for codec in codecs:
        name = codec if isinstance(codec, str) else (codec or {}).get("name")
        try:
            get_codec_class(str(name))
        except KeyError:
            # no installed package registers it (or a misspelt name): not checkable here
            found.append(codec_unavailable_finding(key, split_key(key)[0], (str(name),)))
            continue
        config = codec.get("configuration", {}) if isinstance(codec, Mapping) else {}
        if str(name).startswith("numcodecs.") and unavailable_codecs(
            {"zarr_format": 3, "codecs": [codec]}
        ):
            found.append(codec_unavailable_finding(key, split_key(key)[0], (str(name)[10:],)))
            continue
        if name == "sharding_indexed" and isinstance(config, Mapping):
            found += _codec_findings_v3(config.get("codecs"), key)
    return found


def _codec_findings_v2(configs: Sequence[Any], key: str) -> list[Finding]:
    found: list[Finding] = []
    for config in configs:
        if config is None:
            continue
        if not isinstance(config, Mapping) or "id" not in config:
            found.append(_err("metadata-invalid", key, f"codec {config!r} has no 'id'"))
            continue
        if unavailable_codecs({"compressor": config}):
            found.append(codec_unavailable_finding(key, split_key(key)[0], (str(config["id"]),)))
            continue
        try:
            numcodecs.get_codec(dict(config))
        except (ValueError, TypeError, KeyError) as err:
            found.append(
                _err(
                    "codec-unknown",
                    key,
                    f"codec {config['id']!r} cannot be loaded by numcodecs ({err})",
                    "install the package that registers this codec, or fix its name/options",
                )
            )
    return found


def _zarr_verdict(parse: Any, doc: Mapping[str, Any], key: str) -> list[Finding]:
    try:
        parse(dict(doc))
    except Exception as err:
        return [
            _err(
                "metadata-invalid",
                key,
                f"zarr-python rejects this document: {type(err).__name__}: {err}",
                "correct the field named in the message (see the Zarr specification)",
            )
        ]
    return []


def check_group_v3(doc: Mapping[str, Any], key: str) -> list[Finding]:
    """Check a format 3 group ``zarr.json``."""
    found = _attributes_findings(doc.get("attributes", {}), key)
    return found or _zarr_verdict(GroupMetadata.from_dict, doc, key)


def check_array_v3(doc: Mapping[str, Any], key: str) -> list[Finding]:
    """Check a format 3 array ``zarr.json``."""
    found = _missing(doc, REQUIRED_V3_ARRAY, key)
    grid = doc.get("chunk_grid")
    grid_config = grid.get("configuration", {}) if isinstance(grid, Mapping) else {}
    if "chunk_grid" in doc:
        if not isinstance(grid, Mapping) or grid.get("name") != "regular":
            found.append(
                _err(
                    "chunks-invalid",
                    key,
                    f"chunk_grid {grid!r} is not a regular grid, the only one zarr-python reads",
                )
            )
        else:
            found += _chunk_shape_findings(
                doc.get("shape"), grid_config.get("chunk_shape"), key, "chunk_shape"
            )
    elif "shape" in doc and not _is_shape(doc["shape"], positive=False):
        found += _chunk_shape_findings(doc["shape"], [1], key, "chunk_shape")
    dtype = None
    if "data_type" in doc:
        dtype, finding = _dtype_finding(doc["data_type"], 3, key)
        found += [finding] if finding else []
    if "fill_value" in doc:
        finding = _fill_value_finding(dtype, doc["fill_value"], 3, key)
        found += [finding] if finding else []
    if "codecs" in doc:
        found += _codec_findings_v3(doc["codecs"], key)
    encoding = doc.get("chunk_key_encoding")
    if "chunk_key_encoding" in doc and not _valid_encoding(encoding):
        found.append(
            _err(
                "chunk-key-encoding-invalid",
                key,
                f"chunk_key_encoding {encoding!r} is not 'default' or 'v2' with separator "
                "'/' or '.'",
                "restore the encoding the chunks were written with (look at the chunk keys)",
            )
        )
    names = doc.get("dimension_names")
    shape = doc.get("shape")
    if names is not None and (
        not isinstance(names, list) or (isinstance(shape, list) and len(names) != len(shape))
    ):
        found.append(
            _err(
                "dimension-names-invalid",
                key,
                f"dimension_names {names!r} does not have one entry per dimension of {shape!r}",
                "give one name (or null) per dimension",
            )
        )
    found += _attributes_findings(doc.get("attributes", {}), key)
    return found or _zarr_verdict(ArrayV3Metadata.from_dict, doc, key)


def _valid_encoding(encoding: Any) -> bool:
    if isinstance(encoding, str):
        return encoding in ("default", "v2")
    if not isinstance(encoding, Mapping) or encoding.get("name") not in ("default", "v2"):
        return False
    separator = (encoding.get("configuration") or {}).get("separator", "/")
    return separator in ("/", ".")


def _attributes_findings(attrs: Any, key: str) -> list[Finding]:
    if isinstance(attrs, Mapping):
        return []
    return [
        _err(
            "attributes-invalid",
            key,
            f"attributes must be a JSON object, found {type(attrs).__name__}",
            "replace the attributes with a JSON object ({} if nothing is known)",
        )
    ]


def check_group_v2(doc: Mapping[str, Any], key: str) -> list[Finding]:
    """Check a format 2 ``.zgroup``."""
    return _missing(doc, ("zarr_format",), key)


def check_attributes_v2(doc: Any, key: str) -> list[Finding]:
    """Check a format 2 ``.zattrs``."""
    return _attributes_findings(doc, key)


def check_array_v2(doc: Mapping[str, Any], key: str) -> list[Finding]:
    """Check a format 2 ``.zarray``."""
    found = _missing(doc, REQUIRED_V2_ARRAY, key)
    if "shape" in doc or "chunks" in doc:
        found += _chunk_shape_findings(doc.get("shape"), doc.get("chunks"), key, "chunks")
    dtype = None
    if "dtype" in doc:
        spec = {"name": doc["dtype"], "object_codec_id": _object_codec_id(doc)}
        dtype, finding = _dtype_finding(spec, 2, key)
        found += [finding] if finding else []
    if "fill_value" in doc:
        finding = _fill_value_finding(dtype, doc["fill_value"], 2, key)
        found += [finding] if finding else []
    filters = doc.get("filters") or []
    found += _codec_findings_v2([*filters, doc.get("compressor")], key)
    if doc.get("order", "C") not in ("C", "F"):
        found.append(_err("metadata-invalid", key, f"order {doc['order']!r} is not 'C' or 'F'"))
    if doc.get("dimension_separator", ".") not in (".", "/"):
        found.append(
            _err(
                "chunk-key-encoding-invalid",
                key,
                f"dimension_separator {doc['dimension_separator']!r} is not '.' or '/'",
                "restore the separator the chunk keys use",
            )
        )
    return found or _zarr_verdict(ArrayV2Metadata.from_dict, {**doc, "attributes": {}}, key)


def _object_codec_id(doc: Mapping[str, Any]) -> str | None:
    for codec in [*(doc.get("filters") or []), doc.get("compressor")]:
        if isinstance(codec, Mapping) and codec.get("id") in ("vlen-utf8", "vlen-bytes", "json2"):
            return str(codec["id"])
    return None


def check_document(name: str, doc: Any, key: str) -> list[Finding]:
    """Check one parsed document by its file name (``zarr.json``, ``.zarray``, …)."""
    if name == ".zattrs":
        return check_attributes_v2(doc, key)
    if not isinstance(doc, Mapping):
        return [
            _err("metadata-invalid", key, f"expected a JSON object, found {type(doc).__name__}")
        ]
    expected = 3 if name == "zarr.json" else 2
    if "zarr_format" in doc and doc["zarr_format"] != expected:
        return [
            _err(
                "zarr-format-invalid",
                key,
                f"zarr_format is {doc['zarr_format']!r} but a {name} document must say {expected}",
                f"set zarr_format to {expected}",
            )
        ]
    if name == ".zgroup":
        return check_group_v2(doc, key)
    if name == ".zarray":
        return check_array_v2(doc, key)
    node_type = doc.get("node_type")
    if node_type == "group":
        return _missing(doc, ("zarr_format",), key) + check_group_v3(doc, key)
    if node_type == "array":
        return check_array_v3(doc, key)
    if node_type is None:
        return _missing(doc, ("node_type",), key)
    return [
        _err(
            "node-type-invalid",
            key,
            f"node_type {node_type!r} is neither 'group' nor 'array'",
            "set node_type to 'group' or 'array'",
        )
    ]
