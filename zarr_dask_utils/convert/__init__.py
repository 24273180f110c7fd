"""Conversion of netCDF and GRIB files to Zarr, on the cluster, resumable, with progress."""

from __future__ import annotations

from zarr_dask_utils.convert.errors import ConversionInputError, GribCorruptError
from zarr_dask_utils.convert.grib import grib_to_zarr
from zarr_dask_utils.convert.netcdf import netcdf_to_zarr
from zarr_dask_utils.convert.progress import ConversionProgress
from zarr_dask_utils.convert.report import ConversionReport

__all__ = [
    "ConversionInputError",
    "ConversionProgress",
    "ConversionReport",
    "GribCorruptError",
    "grib_to_zarr",
    "netcdf_to_zarr",
]
