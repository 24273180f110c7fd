"""``zdu``: the command line of zarr-dask-utils.

Every command takes a STORE (path or URL), ``--json``, ``--html FILE``, ``--scheduler``,
``--scheduler-file`` and repeatable ``-o/--storage-option KEY=VALUE``.  Exit codes: 0 healthy,
1 problems found, 2 bad usage or unusable input.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from zarr_dask_utils._core.pure.naming import cli_messages
from zarr_dask_utils._core.pure.reports import Report
from zarr_dask_utils.cli.bench_command import bench
from zarr_dask_utils.cli.chunkspec import parse_chunks, parse_patterns
from zarr_dask_utils.cli.convert_command import convert
from zarr_dask_utils.cli.download_command import download
from zarr_dask_utils.cli.options import (
    cluster_mode_option,
    multi_command,
    parse_storage_options,
    set_cluster_mode,
    store_command,
)
from zarr_dask_utils.cli.profile_command import profile
from zarr_dask_utils.cli.redact import FILTER, start_redaction
from zarr_dask_utils.cli.render import EXIT_USAGE
from zarr_dask_utils.cli.tune_command import tune
from zarr_dask_utils.debug.diagnose import diagnose_zarr_store
from zarr_dask_utils.info import walk_hierarchy
from zarr_dask_utils.integrity import (
    check_data_integrity,
    compare_stores,
    create_manifest,
    verify_chunks,
    verify_manifest,
)
from zarr_dask_utils.integrity.plan import MissingPolicy
from zarr_dask_utils.metadata import consolidate_metadata, repair_metadata, validate_metadata
from zarr_dask_utils.optimize import analyze_chunks, rechunk_array

__all__ = ["cli", "main", "parse_storage_options"]


def _setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("zarr_dask_utils")
    handler.addFilter(FILTER)  # redacts URL credentials and this command's secrets
    package.addHandler(handler)
    package.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    if verbose:
        for name in ("zarr", "fsspec", "s3fs", "distributed"):
            logging.getLogger(name).addHandler(handler)
            logging.getLogger(name).setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-vv: debug, also zarr/fsspec).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@cluster_mode_option
@click.version_option(package_name="zarr-dask-utils")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool, processes: bool | None) -> None:
    """zdu: diagnose, repair and optimise Zarr stores with Dask.

    STORE is a local path, file://, s3://bucket/prefix, memory:// or a .zip file.  Work runs
    on the Dask cluster given by --scheduler / --scheduler-file / DASK_SCHEDULER_ADDRESS, or on
    an embedded LocalCluster (threads in one process, or --processes).  Exit codes: 0 healthy,
    1 problems found, 2 bad input.
    """
    ctx.ensure_object(dict)
    set_cluster_mode(ctx, processes)
    ctx.obj["debug"] = debug
    _setup_logging(verbose)
    # after the handlers exist: every one of them redacts this command's secrets
    start_redaction()
    # messages name flags (--overwrite), not keyword arguments, until the command ends
    ctx.with_resource(cli_messages())


@cli.command("info")
@store_command
def info(store: str, **kwargs: Any) -> Report:
    """List every group and array of STORE (shape, dtype, chunks, shards, codecs)."""
    return walk_hierarchy(store, **kwargs)


@cli.command("validate")
@store_command
def validate(store: str, **kwargs: Any) -> Report:
    """Check every metadata document of STORE; exit 1 if any problem is found."""
    return validate_metadata(store, **kwargs)


@cli.command("consolidate")
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
@click.option(
    "--backup-dir",
    default=None,
    metavar="DIR",
    help="Keep backups of replaced documents here, outside the store "
    "(default: STORE.zdu-backups beside it).",
)
@store_command
def consolidate(store: str, dry_run: bool, backup_dir: str | None, **kwargs: Any) -> Report:
    """(Re)write the consolidated metadata of STORE, sorted, after a backup beside it."""
    return consolidate_metadata(store, dry_run=dry_run, backup_dir=backup_dir, **kwargs)


@cli.command("repair")
@click.option("--apply", is_flag=True, help="Write the repairs (default: dry run).")
@click.option(
    "--consolidate/--no-consolidate",
    default=None,
    help="Also create missing consolidated metadata / never touch it (default: fix if present).",
)
@click.option(
    "--backup-dir",
    default=None,
    metavar="DIR",
    help="Keep backups of replaced documents here, outside the store "
    "(default: STORE.zdu-backups beside it).",
)
@store_command
def repair(
    store: str, apply: bool, consolidate: bool | None, backup_dir: str | None, **kwargs: Any
) -> Report:
    """Repair STORE's metadata (dry run unless --apply); backups are kept beside the store."""
    return repair_metadata(
        store, dry_run=not apply, consolidate=consolidate, backup_dir=backup_dir, **kwargs
    )


@cli.command("doctor")
@store_command
def doctor(store: str, **kwargs: Any) -> Report:
    """Diagnose STORE: sizes, chunking, compression, layout and metadata; exit 1 on findings."""
    return diagnose_zarr_store(store, **kwargs)


@cli.command("check")
@click.option("--deep", is_flag=True, help="Decode every chunk (default: inventory only).")
@click.option("--nan-check", is_flag=True, help="With --deep: count NaN/Inf, value range.")
@click.option(
    "--missing-chunks",
    type=click.Choice(["info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Severity of chunks that are not stored (read as fill value).",
)
@store_command
def check(
    store: str, deep: bool, nan_check: bool, missing_chunks: MissingPolicy, **kwargs: Any
) -> Report:
    """Check STORE's chunk data: inventory, and with --deep decode every chunk; exit 1 if bad."""
    return check_data_integrity(
        store, deep=deep, nan_check=nan_check, missing_chunks=missing_chunks, **kwargs
    )


@cli.command("verify-chunks")
@click.option(
    "--array",
    "array_path",
    default=None,
    metavar="PATH",
    help="Path of the array inside STORE (default: STORE is the array).",
)
@click.option(
    "--sample-rate", type=float, default=0.1, show_default=True, help="Fraction of chunks."
)
@click.option("--seed", type=int, default=None, help="Seed of the sample (default: drawn).")
@store_command
def verify_chunks_command(
    store: str, array_path: str | None, sample_rate: float, seed: int | None, **kwargs: Any
) -> Report:
    """Decode a random sample of an array's chunks; say what it rules out; exit 1 if bad."""
    target = f"{store.rstrip('/')}/{array_path.strip('/')}" if array_path else store
    return verify_chunks(target, sample_rate=sample_rate, seed=seed, **kwargs)


@cli.command("compare")
@click.option("--rtol", type=float, default=0.0, show_default=True, help="Relative tolerance.")
@click.option("--atol", type=float, default=0.0, show_default=True, help="Absolute tolerance.")
@multi_command(["a", "b"], extra_storage=["b"])
def compare(a: str, b: str, b_storage_options: Any, **kwargs: Any) -> Report:
    """Compare stores A and B: metadata, attributes and every chunk; exit 1 if they differ."""
    return compare_stores(a, b, b_storage_options=b_storage_options, **kwargs)


@cli.group("manifest")
def manifest() -> None:
    """Checksum manifests: record every object's size and hash, verify them later."""


@manifest.command("create")
@click.option("--algorithm", default=None, help="hashlib algorithm (default blake2b).")
@multi_command(["store", "output"], extra_storage=["output"])
def manifest_create(store: str, output: str, **kwargs: Any) -> Report:
    """Hash every object of STORE and write the manifest JSON to OUTPUT (path or URL)."""
    return create_manifest(store, output, **kwargs)


@manifest.command("verify")
@multi_command(["store", "manifest"], extra_storage=["manifest"])
def manifest_verify(store: str, manifest: str, **kwargs: Any) -> Report:
    """Check STORE against MANIFEST: changed, truncated, missing, extra objects; exit 1 if any."""
    return verify_manifest(store, manifest, **kwargs)


@cli.command("analyze")
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="NAME[=WEIGHT]",
    help="sequential, time-series, spatial or random, optionally weighted (repeatable).",
)
@click.option("--min-chunk", default=None, help="Smallest recommended chunk, e.g. 1MiB.")
@click.option("--max-chunk", default=None, help="Largest recommended chunk, e.g. 64MiB.")
@store_command
def analyze(
    store: str,
    patterns: tuple[str, ...],
    min_chunk: str | None,
    max_chunk: str | None,
    **kwargs: Any,
) -> Report:
    """Costs of access patterns on STORE's chunks, and recommended chunks; exit 1 if mismatched."""
    return analyze_chunks(
        store,
        parse_patterns(patterns),
        min_chunk_bytes=min_chunk,
        max_chunk_bytes=max_chunk,
        **kwargs,
    )


@cli.command("rechunk")
@click.option(
    "--chunks",
    required=True,
    help="Target chunks: 365,10,10 or time=365,lat=10. In a group they apply to the arrays "
    "with as many axes or with those dimensions (the report says which); one that fits no "
    "array is an error.",
)
@click.option("--max-mem", required=True, help="Bytes one task may hold, e.g. 256MiB.")
@click.option("--shards", default=None, help="Target shards (format 3), same forms as --chunks.")
@click.option("--zarr-format", type=click.Choice(["2", "3"]), default=None, help="Target format.")
@click.option("--temp", default=None, help="Temporary store for a two-stage plan.")
@click.option(
    "--compressor",
    default=None,
    metavar="NAME[:LEVEL]",
    help="Target compressor: zstd, gzip, blosc-zstd, blosc-lz4, blosc-lz4hc, blosc-zlib or "
    "none, optionally with a level (zstd:3). Default: the source's.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "rechunker", "tasks", "p2p"]),
    default="auto",
    show_default=True,
    help="rechunker: block copies of the rechunker plan; tasks/p2p: Dask rechunk methods.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a Zarr array or group at DST (refused if DST holds files that are not Zarr's).",
)
@multi_command(["src", "dst"], extra_storage=["dst", "temp"])
def rechunk(
    src: str,
    dst: str,
    chunks: str,
    max_mem: str,
    shards: str | None,
    zarr_format: str | None,
    temp: str | None,
    compressor: str | None,
    engine: str,
    overwrite: bool,
    dst_storage_options: Any,
    temp_storage_options: Any,
    **kwargs: Any,
) -> Report:
    """Copy SRC to DST with new chunks (and shards) in bounded memory; resumable."""
    return rechunk_array(
        src,
        parse_chunks(chunks),  # type: ignore[arg-type]
        dst,
        max_mem=max_mem,
        target_shards=parse_chunks(shards),
        zarr_format=int(zarr_format) if zarr_format else None,
        temp_store=temp,
        compressors=compressor,
        engine=engine,
        overwrite=overwrite,
        target_storage_options=dst_storage_options,
        temp_storage_options=temp_storage_options,
        **kwargs,
    )


cli.add_command(profile)
cli.add_command(bench)
cli.add_command(convert)
cli.add_command(tune)
cli.add_command(download)


def main() -> None:
    """Entry point of the ``zdu`` console script."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("interrupted", err=True)
        sys.exit(EXIT_USAGE)
