"""Small steps the deploy recipes (``deploy/``) run inside their containers and jobs.

``python -m zarr_dask_utils.testing.deploy seed URL [-o KEY=VALUE ...] [--demo]``
    writes the sample hierarchy (``--demo``: the demo store with its two problems) at ``URL``,
    creating the S3 bucket first when it does not exist yet; with ``--wait-workers ADDRESS N``
    it then waits until the scheduler at ``ADDRESS`` has ``N`` workers.
``python -m zarr_dask_utils.testing.deploy wait-workers ADDRESS N [--timeout 120s]``
    only waits for the workers (exit 2 if they do not come).

``deploy/docker-compose.yml``'s one-shot ``seed`` service runs the first before its ``zdu``
service runs ``zdu validate``, so that the recipe needs nothing but an empty S3 server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from dask.utils import parse_timedelta

from zarr_dask_utils.testing.builders import build_demo_store, build_sample_hierarchy

__all__ = ["main", "seed_store", "wait_for_workers"]


def _ensure_bucket(url: str, storage_options: Mapping[str, Any]) -> None:
    """Create the bucket of an ``s3://`` URL if it does not exist (S3-compatible servers)."""
    import s3fs

    bucket = url.removeprefix("s3://").split("/", 1)[0]
    fs = s3fs.S3FileSystem(**storage_options)
    if not fs.exists(bucket):
        fs.mkdir(bucket)


def seed_store(
    url: str, *, storage_options: Mapping[str, Any] | None = None, demo: bool = False
) -> str:
    """Write the sample hierarchy (or, with ``demo``, the demo store) at ``url``.

    Parameters
    ----------
    url
        Local path or ``s3://bucket/prefix``; an S3 bucket is created when missing.
    storage_options
        For S3: ``endpoint_url``, ``key``, ``secret`` … (credentials may also come from the
        environment).
    demo
        Write the demo store (stale consolidated metadata, a missing group document), which
        ``zdu validate`` reports with exit code 1; only for local paths.

    Returns
    -------
    str
        What was written, for the log.
    """
    if demo:
        if "://" in url:
            raise ValueError(f"--demo writes a local folder, not {url!r}")
        return f"demo store (2 problems) at {build_demo_store(url)}"
    options = dict(storage_options or {})
    if url.startswith("s3://"):
        _ensure_bucket(url, options)
    build_sample_hierarchy(url, storage_options=options or None)
    return f"sample hierarchy at {url}"


def wait_for_workers(address: str, n_workers: int, *, timeout: str | float = "120s") -> int:
    """Wait until the scheduler at ``address`` has ``n_workers`` workers; return how many."""
    from distributed import Client

    seconds = parse_timedelta(timeout)
    with Client(address, timeout=seconds) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(n_workers, timeout=seconds)
        return len(client.scheduler_info(n_workers=-1)["workers"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zarr_dask_utils.testing.deploy")
    steps = parser.add_subparsers(dest="step", required=True)
    seed = steps.add_parser("seed", help="write a small store to try the recipes on")
    seed.add_argument("url")
    seed.add_argument("-o", dest="options", action="append", default=[], metavar="KEY=VALUE")
    seed.add_argument("--demo", action="store_true", help="the demo store with 2 problems")
    seed.add_argument("--wait-workers", nargs=2, metavar=("ADDRESS", "N"), help="then wait")
    seed.add_argument("--timeout", default="120s", help="for --wait-workers")
    wait = steps.add_parser("wait-workers", help="wait for N workers at a scheduler")
    wait.add_argument("address")
    wait.add_argument("n_workers", type=int)
    wait.add_argument("--timeout", default="120s")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code (2 when a step fails)."""
    args = _parser().parse_args(argv)
    try:
        if args.step == "seed":
            options = dict(item.split("=", 1) for item in args.options)
            print(f"seeded {seed_store(args.url, storage_options=options, demo=args.demo)}")
            if args.wait_workers is None:
                return 0
            args.address, args.n_workers = args.wait_workers[0], int(args.wait_workers[1])
        found = wait_for_workers(args.address, args.n_workers, timeout=args.timeout)
        print(f"{found} worker(s) at {args.address}")
    except (OSError, ValueError) as err:
        print(f"error: {args.step}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
