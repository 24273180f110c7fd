"""Errors of the converters: an input that cannot be converted (``zdu convert`` exit 2)."""

from __future__ import annotations

from zarr_dask_utils._core.errors import InvalidOptionError

__all__ = ["ConversionInputError", "GribCorruptError"]


class ConversionInputError(InvalidOptionError):
    """An input file is missing, unreadable, of an unknown kind, or cannot be combined."""

    kind = "conversion-input"


class GribCorruptError(ConversionInputError):
    """A GRIB file holds a truncated or corrupt message (the message names file and position)."""

    kind = "grib-corrupt"
