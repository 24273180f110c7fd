"""``zdu download SRC DST``: copy a Zarr store between locations, resumable and verified."""

from __future__ import annotations

from typing import Any

import click

from zarr_dask_utils._core.pure.reports import Report
from zarr_dask_utils.cli.options import multi_command

__all__ = ["download"]


@click.command("download")
@click.option(
    "--arrays",
    default=None,
    metavar="A,B",
    help="Copy only these arrays or groups (comma-separated node paths) and their parents.",
)
@click.option("--no-verify", is_flag=True, help="Do not read copies back to check size and hash.")
@click.option("--dry-run", is_flag=True, help="Report what would be copied; write nothing.")
@click.option("--no-resume", is_flag=True, help="Start over instead of resuming a partial DST.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a Zarr array or group at DST that differs from SRC (refused if DST holds "
    "files that are not Zarr's).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Requests in flight per task (default: config download.concurrency, 64).",
)
@multi_command(["src", "dst"], extra_storage=["dst"])
def download(
    src: str,
    dst: str,
    arrays: str | None,
    no_verify: bool,
    dry_run: bool,
    no_resume: bool,
    overwrite: bool,
    concurrency: int | None,
    **kwargs: Any,
) -> Report:
    """Copy SRC to DST (S3 <-> local, S3 -> S3, local -> local; a .zip only as SRC).

    Chunks move first, many requests in flight per task; metadata documents last. Every
    object is verified by size and hash; run the same command again after an interruption
    and it skips what was already copied, or after a finished copy to check it is up to
    date and copy only what is missing.
    """
    from zarr_dask_utils.cloud.download import parallel_download

    return parallel_download(
        src,
        dst,
        arrays=arrays,
        verify=not no_verify,
        resume=not no_resume,
        overwrite=overwrite,
        dry_run=dry_run,
        concurrency=concurrency,
        **kwargs,
    )
