"""Codec objects for a compressor name (:mod:`~zarr_dask_utils._core.pure.compressors`).

The same name makes numcodecs objects for a format-2 array and ``zarr.codecs`` objects for a
format-3 one, so ``rechunk`` and the converters share one spelling.
"""

from __future__ import annotations

from typing import Any, cast

from zarr_dask_utils._core.pure.compressors import COMPRESSOR_NAMES, parse_compressor

__all__ = ["COMPRESSOR_NAMES", "compressors_for", "parse_compressor"]


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
