"""Which codecs of an array document cannot run here, and the finding that says so.

A codec whose package is not installed (``zfpy``, ``pcodec``, ``imagecodecs``, …) makes every
chunk undecodable although the stored bytes may be perfect.  Such an array is *not checkable
here*: neither healthy nor corrupt.  Every command reports it with one ``codec-unavailable``
finding naming the codec and the package to install, and decodes none of its chunks (so no
chunk-level error, and never advice to delete data that may be good).

zarr-python 3 accepts ``numcodecs.<id>`` in a format 3 document even when numcodecs cannot
load ``<id>`` (decoding fails later), so format 3 names are checked against numcodecs too.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from zarr_dask_utils._core.pure.reports import Finding

__all__ = [
    "CODEC_PACKAGES",
    "codec_unavailable_finding",
    "install_hint",
    "unavailable_codecs",
]

#: codec id (numcodecs id, or the name after ``numcodecs.``) → pip package that provides it
CODEC_PACKAGES: Mapping[str, str] = {
    "zfpy": "zfpy",
    "pcodec": "pcodec",
    "jpeg2k": "imagecodecs",
    "blosc2": "imagecodecs",
    "zarrs": "zarrs",
    "msgpack2": "msgpack",
    "vlen-bytes": "numcodecs",
}


def install_hint(codec_id: str) -> str:
    """The next step for a codec that is not installed: the package to install."""
    package = CODEC_PACKAGES.get(codec_id)
    if package is None and codec_id.startswith("imagecodecs_"):
        package = "imagecodecs"
    if package is None:
        return f"install the package that registers numcodecs codec {codec_id!r}"
    return f"pip install {package}"


def _numcodecs_missing(config: Mapping[str, Any]) -> bool:
    import numcodecs

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            numcodecs.get_codec(dict(config))
    except (ImportError, KeyError, ValueError) as err:  # UnknownCodecError is a ValueError
        return type(err).__name__ == "UnknownCodecError" or isinstance(err, ImportError)
    except Exception:  # bad options: a document problem, reported by validate, not here
        return False
    return False


def _v3_missing(codecs: Any) -> list[str]:
    from zarr.registry import get_codec_class

    out: list[str] = []
    for codec in codecs if isinstance(codecs, list) else []:
        name = codec if isinstance(codec, str) else (codec or {}).get("name")
        if not isinstance(name, str):
            continue
        config = codec.get("configuration", {}) if isinstance(codec, Mapping) else {}
        config = config if isinstance(config, Mapping) else {}
        if name == "sharding_indexed":
            out += _v3_missing(config.get("codecs")) + _v3_missing(config.get("index_codecs"))
        elif name.startswith("numcodecs."):
            codec_id = name.removeprefix("numcodecs.")
            if _numcodecs_missing({**config, "id": codec_id}):
                out.append(codec_id)
        else:
            try:
                get_codec_class(name)
            except KeyError:
                out.append(name)
    return out


def unavailable_codecs(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """Ids of the codecs of an array document (``.zarray`` or ``zarr.json``) not installed here.

    Malformed codec entries are not reported (``zdu validate`` reports those).
    """
    if doc.get("zarr_format") == 3:
        return tuple(dict.fromkeys(_v3_missing(doc.get("codecs"))))
    configs = [doc.get("compressor"), *(doc.get("filters") or [])]
    return tuple(
        dict.fromkeys(
            str(c["id"])
            for c in configs
            if isinstance(c, Mapping) and "id" in c and _numcodecs_missing(c)
        )
    )


def codec_unavailable_finding(key: str, path: str, codecs: tuple[str, ...]) -> Finding:
    """One ``codec-unavailable`` finding for the array at *path* (document *key*)."""
    names = ", ".join(repr(c) for c in codecs)
    hints = "; ".join(dict.fromkeys(install_hint(c) for c in codecs))
    return Finding(
        "warning",
        "codec-unavailable",
        key,
        f"array {path or '/'!r} uses codec {names}, which is not installed here: its chunks "
        "cannot be decoded in this environment, so the array was not checked (neither healthy "
        "nor corrupt; the stored data may be fine)",
        f"{hints} (here and on every Dask worker), then run this again",
    )
