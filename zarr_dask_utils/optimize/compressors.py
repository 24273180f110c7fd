"""Name a target compressor in one word: ``zstd:3``, ``blosc-zstd``, ``gzip``, ``none``.

``zdu rechunk --compressor NAME[:LEVEL]`` and ``rechunk_array(compressors="zstd:3")`` use the
same names; the codec objects are made for the target's format (numcodecs for format 2,
``zarr.codecs`` for format 3), so one name works for both.
"""

from __future__ import annotations

from typing import Any, cast

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["COMPRESSOR_NAMES", "compressors_for", "parse_compressor"]

#: Accepted names → default level.  ``blosc-*`` use byte shuffle.
COMPRESSOR_NAMES: dict[str, int | None] = {
    "zstd": 3,
    "gzip": 5,
    "blosc-zstd": 5,
    "blosc-lz4": 5,
    "blosc-lz4hc": 5,
    "blosc-zlib": 5,
    "none": None,
}


def parse_compressor(text: str) -> tuple[str, int | None]:
    """``"zstd:3"`` → ``("zstd", 3)``; ``"blosc-zstd"`` → ``("blosc-zstd", 5)``.

    Raises
    ------
    InvalidOptionError
        An unknown name or a level that is not an integer.

    Examples
    --------
    >>> parse_compressor("ZSTD:7")
    ('zstd', 7)
    >>> parse_compressor("none")
    ('none', None)
    """
    name, _, level = text.strip().lower().partition(":")
    if name not in COMPRESSOR_NAMES:
        raise InvalidOptionError(
            f"Unknown compressor {text!r}: expected one of {', '.join(COMPRESSOR_NAMES)}, "
            "optionally with a level, e.g. zstd:3."
        )
    if not level:
        return name, COMPRESSOR_NAMES[name]
    if name == "none" or not level.lstrip("-").isdigit():
        raise InvalidOptionError(
            f"Compressor {text!r}: the level after ':' must be an integer (e.g. zstd:3), and "
            "'none' takes no level."
        )
    return name, int(level)


def compressors_for(text: str, zarr_format: int) -> tuple[Any, ...]:
    """The codec objects of *text* (see :func:`parse_compressor`) for a *zarr_format* array.

    ``()`` for ``none`` (zarr writes the chunks uncompressed).
    """
    name, level = parse_compressor(text)
    if name == "none":
        return ()
    level = int(level or 0)  # every name but "none" has a default level
    if zarr_format == 2:
        import numcodecs

        if name == "zstd":
            return (numcodecs.Zstd(level=level),)
        if name == "gzip":
            return (numcodecs.GZip(level=level),)
        cname = name.removeprefix("blosc-")
        return (numcodecs.Blosc(cname=cname, clevel=level, shuffle=numcodecs.Blosc.SHUFFLE),)
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    if name == "zstd":
        return (ZstdCodec(level=level),)
    if name == "gzip":
        return (GzipCodec(level=level),)
    cname = name.removeprefix("blosc-")
    return (BloscCodec(cname=cast("Any", cname), clevel=level, shuffle="shuffle"),)
