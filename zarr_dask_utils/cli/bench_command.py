"""``zdu bench STORE [--write] [--json] [--html FILE]``: measure a store from the workers."""

from __future__ import annotations

from typing import Any

import click

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.access_patterns import PATTERNS
from zarr_dask_utils._core.pure.reports import Report
from zarr_dask_utils.cli.chunkspec import parse_patterns
from zarr_dask_utils.cli.options import store_command
from zarr_dask_utils.profiling.bench_plan import DEFAULT_LEVELS
from zarr_dask_utils.profiling.store_benchmark import benchmark_store

__all__ = ["bench"]


def _levels(text: str | None) -> tuple[int, ...] | None:
    """``"1,4,16"`` → ``(1, 4, 16)``."""
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise InvalidOptionError(
            f"--concurrency {text!r} is not a list of integers: write e.g. 1,4,16,64."
        ) from err


@click.command("bench")
@click.option(
    "--write",
    is_flag=True,
    help="Also measure writes, into a scratch prefix removed afterwards (never user keys).",
)
@click.option(
    "--chunk-size",
    "chunk_sizes",
    multiple=True,
    metavar="SIZE",
    help="Object size read (and written), e.g. 4MiB (repeatable; default 256KiB and 4MiB).",
)
@click.option(
    "--concurrency",
    default=None,
    metavar="N,N,...",
    help=f"Requests in flight per worker (default {','.join(map(str, DEFAULT_LEVELS))}).",
)
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="NAME",
    help="Access pattern read on the arrays (repeatable; default all four).",
)
@store_command
def bench(
    store: str,
    write: bool,
    chunk_sizes: tuple[str, ...],
    concurrency: str | None,
    patterns: tuple[str, ...],
    **kwargs: Any,
) -> Report:
    """Latency, throughput vs concurrency, listing and pattern reads of STORE, from the workers.

    Calibrates the cost model of `zdu analyze` on STORE and shows predicted vs measured.
    """
    return benchmark_store(
        store,
        patterns=parse_patterns(patterns) if patterns else PATTERNS,
        chunk_sizes=chunk_sizes or None,
        concurrency=_levels(concurrency),
        write=write,
        **kwargs,
    )
