"""``zdu tune STORE [--pattern NAME] [--json]``: the fastest S3 settings for an access pattern."""

from __future__ import annotations

from typing import Any

import click

from zarr_dask_utils._core.pure.access_patterns import PATTERNS
from zarr_dask_utils._core.pure.reports import Report
from zarr_dask_utils.cli.chunkspec import parse_patterns
from zarr_dask_utils.cli.options import store_command
from zarr_dask_utils.cloud.tune import optimize_s3_access

__all__ = ["tune"]


@click.command("tune")
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="NAME",
    help=f"Access pattern to tune for: {', '.join(PATTERNS)} (repeatable; default sequential).",
)
@click.option(
    "--budget",
    default="64MiB",
    show_default=True,
    metavar="SIZE",
    help="Largest decoded size one selection of the pattern reads per trial.",
)
@store_command
def tune(store: str, patterns: tuple[str, ...], budget: str, **kwargs: Any) -> Report:
    """Measure S3 STORE from the workers, try settings on a pattern, print the winner.

    The winning storage_options are printed as JSON ready to paste (credentials left out):
    pass them back with -o KEY=VALUE or storage_options=. Nothing is written to STORE.
    """
    return optimize_s3_access(
        store, access_pattern=parse_patterns(patterns), budget=budget, **kwargs
    )
