"""Name a target compressor in one word: ``zstd:3``, ``blosc-zstd``, ``gzip``, ``none``.

``zdu rechunk --compressor NAME[:LEVEL]``, ``rechunk_array(compressors="zstd:3")`` and the
converters (``netcdf_to_zarr(compressor=...)``, the netCDF compression they translate) use the
same names.  This pure module parses them; :func:`zarr_dask_utils._core.compressors.compressors_for`
makes the codec objects for the target's format.
"""

from __future__ import annotations

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["COMPRESSOR_NAMES", "parse_compressor"]

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
    if name == "none" or not (level.isascii() and level.lstrip("-").isdigit()):
        raise InvalidOptionError(
            f"Compressor {text!r}: the level after ':' must be an integer (e.g. zstd:3), and "
            "'none' takes no level."
        )
    return name, int(level)
