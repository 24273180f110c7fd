"""``zdu``: the command line of zarr-dask-utils.

Every command takes a STORE (path or URL), ``--json``, ``--html FILE``, ``--scheduler``,
``--scheduler-file`` and repeatable ``-o/--storage-option KEY=VALUE``.  Exit codes: 0 healthy,
1 problems found, 2 bad usage or unusable input.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from distributed import Client

from zarr_dask_utils._core.cluster import get_client
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.reports import Report
from zarr_dask_utils._core.walk import walk_hierarchy
from zarr_dask_utils.cli.render import EXIT_USAGE, render_error, render_report
from zarr_dask_utils.metadata import consolidate_metadata, repair_metadata, validate_metadata

__all__ = ["cli", "main", "parse_storage_options"]


def parse_storage_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """Turn ``KEY=VALUE`` pairs into ``storage_options``.

    Values are read as JSON when they parse (``true``, ``3``, ``{"a": 1}``), else as strings;
    dotted keys nest (``client_kwargs.region_name=eu-west-1``).
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidOptionError(
                f"--storage-option {pair!r} is not KEY=VALUE, e.g. "
                "--storage-option endpoint_url=http://127.0.0.1:9000"
            )
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        target = options
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return options


def _setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("zarr_dask_utils")
    package.addHandler(handler)
    package.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    if verbose:
        for name in ("zarr", "fsspec", "s3fs", "distributed"):
            logging.getLogger(name).addHandler(handler)
            logging.getLogger(name).setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def store_command(func: Callable[..., Report]) -> Callable[..., None]:
    """Add the options every store command shares and run it with error handling."""
    options = [
        click.argument("store"),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
        click.option("--html", type=click.Path(dir_okay=False), help="Also write an HTML report."),
        click.option("--scheduler", metavar="ADDRESS", help="Address of a running Dask scheduler."),
        click.option(
            "--scheduler-file",
            type=click.Path(dir_okay=False),
            help="Scheduler file written by `dask scheduler --scheduler-file`.",
        ),
        click.option(
            "-o",
            "--storage-option",
            "storage_option",
            multiple=True,
            metavar="KEY=VALUE",
            help="fsspec storage option (repeatable), e.g. -o endpoint_url=http://host:9000.",
        ),
        click.option("--no-progress", is_flag=True, help="Do not show a progress bar."),
    ]

    @click.pass_context
    def wrapper(ctx: click.Context, /, **kwargs: Any) -> None:
        debug = ctx.obj.get("debug", False) if ctx.obj else False
        as_json = kwargs.pop("as_json")
        html = kwargs.pop("html")
        try:
            storage_options = parse_storage_options(kwargs.pop("storage_option")) or None
            no_progress = kwargs.pop("no_progress")
            progress = False if (as_json or no_progress) else None
            with _client(kwargs.pop("scheduler"), kwargs.pop("scheduler_file")) as client:
                report = func(
                    storage_options=storage_options, client=client, progress=progress, **kwargs
                )
            code = render_report(report, as_json=as_json, html=html)
        except Exception as exc:
            code = render_error(exc, as_json=as_json, debug=debug)
        ctx.exit(code)

    wrapper.__doc__ = func.__doc__
    wrapper.__name__ = func.__name__
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@contextmanager
def _client(scheduler: str | None, scheduler_file: str | None) -> Iterator[Client | None]:
    """A client only when the user named a scheduler; otherwise graphs pick one lazily."""
    if scheduler is None and scheduler_file is None:
        yield None
        return
    with get_client(scheduler=scheduler, scheduler_file=scheduler_file) as client:
        yield client


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-vv: debug, also zarr/fsspec).")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="zarr-dask-utils")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """zdu: diagnose, repair and optimise Zarr stores with Dask.

    STORE is a local path, file://, s3://bucket/prefix, memory:// or a .zip file.  Work runs
    on the Dask cluster given by --scheduler / --scheduler-file / DASK_SCHEDULER_ADDRESS, or on
    an embedded LocalCluster.  Exit codes: 0 healthy, 1 problems found, 2 bad input.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _setup_logging(verbose)


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
@store_command
def consolidate(store: str, dry_run: bool, **kwargs: Any) -> Report:
    """(Re)write the consolidated metadata of STORE, sorted, after a backup."""
    return consolidate_metadata(store, dry_run=dry_run, **kwargs)


@cli.command("repair")
@click.option("--apply", is_flag=True, help="Write the repairs (default: dry run).")
@click.option(
    "--consolidate/--no-consolidate",
    default=None,
    help="Also create missing consolidated metadata / never touch it (default: fix if present).",
)
@store_command
def repair(store: str, apply: bool, consolidate: bool | None, **kwargs: Any) -> Report:
    """Repair STORE's metadata (dry run unless --apply); backups are kept in the store."""
    return repair_metadata(store, dry_run=not apply, consolidate=consolidate, **kwargs)


def main() -> None:
    """Entry point of the ``zdu`` console script."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("interrupted", err=True)
        sys.exit(EXIT_USAGE)
