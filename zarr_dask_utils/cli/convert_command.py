"""``zdu convert SRC... DST``: netCDF or GRIB files → Zarr (kind detected from the files)."""

from __future__ import annotations

from typing import Any

import click

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.reports import Report
from zarr_dask_utils.cli.chunkspec import parse_chunks, parse_patterns
from zarr_dask_utils.cli.options import multi_command, parse_storage_options

__all__ = ["convert"]


def _by_dimension(text: str | None, what: str) -> dict[str, int] | None:
    parsed = parse_chunks(text)
    if parsed is None or isinstance(parsed, dict):
        return parsed
    raise InvalidOptionError(
        f"--{what} {text!r}: name the dimensions, e.g. time=365,lat=10 (-1 for a whole "
        "dimension); files may hold variables of different ranks."
    )


@click.command("convert")
@click.argument("sources", nargs=-1, required=True)
@click.option("--chunks", default=None, help="Target chunks by dimension: time=365,lat=10.")
@click.option("--shards", default=None, help="Target shards by dimension (format 3).")
@click.option(
    "--variables", default=None, help="Comma-separated variables to convert (default all)."
)
@click.option(
    "--format",
    "zarr_format",
    type=click.Choice(["2", "3"]),
    default="3",
    show_default=True,
    help="Zarr format of DST.",
)
@click.option(
    "--compressor",
    default=None,
    metavar="NAME[:LEVEL]",
    help="zstd, gzip, blosc-zstd, blosc-lz4, blosc-lz4hc, blosc-zlib or none (e.g. zstd:3). "
    "Default: the netCDF compression translated (zlib+shuffle -> blosc-zstd).",
)
@click.option("--concat-dim", default=None, help="Concatenate netCDF files along this dim.")
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="NAME[=WEIGHT]",
    help="Access pattern the chunks are chosen for (repeatable; default sequential).",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="GRIB: cfgrib filter_by_keys, e.g. typeOfLevel=surface (repeatable).",
)
@click.option(
    "--skip-corrupt",
    is_flag=True,
    help="GRIB: convert the readable messages before a truncated one (reported).",
)
@click.option("--overwrite", is_flag=True, help="Replace a Zarr store at DST.")
@click.option("--no-resume", is_flag=True, help="Start a partial DST over instead of resuming.")
@click.option("--no-verify", is_flag=True, help="Do not read regions back to compare.")
@multi_command(["dst"])
def convert(
    sources: tuple[str, ...],
    dst: str,
    chunks: str | None,
    shards: str | None,
    variables: str | None,
    zarr_format: str,
    compressor: str | None,
    concat_dim: str | None,
    patterns: tuple[str, ...],
    filters: tuple[str, ...],
    skip_corrupt: bool,
    overwrite: bool,
    no_resume: bool,
    no_verify: bool,
    storage_options: Any,
    **kwargs: Any,
) -> Report:
    """Convert netCDF-3/4, HDF5 or GRIB files SOURCES... into the Zarr store DST; resumable.

    -o/--storage-option applies to every URL among SOURCES and DST (e.g. s3:// inputs
    with -o endpoint_url=...).  Rerunning the same command after an interruption finishes
    the rest.
    """
    from zarr_dask_utils.convert import grib_to_zarr, netcdf_to_zarr
    from zarr_dask_utils.convert.sources import expand_sources

    def is_url(text: str) -> bool:
        return "://" in text and not text.startswith("file://")

    source_options = storage_options if any(is_url(s) for s in sources) else None
    target_options = storage_options if is_url(dst) else None
    files = expand_sources(list(sources), source_options)
    common: dict[str, Any] = {
        "chunks": _by_dimension(chunks, "chunks"),
        "shards": _by_dimension(shards, "shards"),
        "variables": [v.strip() for v in variables.split(",")] if variables else None,
        "zarr_format": int(zarr_format),
        "compressor": compressor,
        "access_pattern": parse_patterns(patterns),
        "target_storage_options": target_options,
        "overwrite": overwrite,
        "resume": not no_resume,
        "verify": False if no_verify else None,
        **kwargs,
    }
    kinds = {f.kind for f in files}
    if kinds == {"grib"}:
        return grib_to_zarr(
            [f.path for f in files],
            dst,
            filter_by_keys=parse_storage_options(filters) or None,
            skip_corrupt=skip_corrupt,
            **common,
        )
    if "grib" in kinds:
        raise InvalidOptionError(
            "The inputs mix GRIB and netCDF files: convert each kind into its own store."
        )
    return netcdf_to_zarr(
        [f.path for f in files],
        dst,
        concat_dim=concat_dim,
        storage_options=source_options,
        **common,
    )
