"""``python -m zarr_dask_utils.testing.multihost {check,serve}``: the hosts for shell scripts.

``check`` exits 0 when network namespaces can be made here, else prints why and exits 1.
``serve --workdir DIR`` starts a
:class:`~zarr_dask_utils.testing.multihost.MultiHostCluster`, creates a bucket (with
``--sample`` the sample hierarchy in it), writes ``DIR/multihost.env`` (``KEY=VALUE`` lines a
shell can ``source``) and runs until SIGTERM or SIGINT (or until its parent dies), then tears
everything down.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zarr_dask_utils.testing.multihost import MultiHostCluster

_PR_SET_PDEATHSIG = 1


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _env_lines(mh: MultiHostCluster, bucket: str | None) -> list[str]:
    workers = [
        a for name in mh.hosts if name.startswith("worker") for a in mh.worker_addresses(name)
    ]
    values = {
        "ZDU_MH_SCHEDULER_FILE": str(mh.scheduler_file),
        "ZDU_MH_SCHEDULER_ADDRESS": mh.scheduler_address,
        "ZDU_MH_S3_ENDPOINT": mh.s3_endpoint or "",
        "ZDU_MH_BUCKET": bucket or "",
        "ZDU_MH_WORKERS": " ".join(workers),
        "ZDU_MH_HOSTS": " ".join(f"{h.name}={h.address}" for h in mh.hosts.values()),
    }
    return [f"{key}={shlex.quote(value)}" for key, value in values.items()]


def serve(args: argparse.Namespace) -> int:
    """Start the hosts, write the env file, wait for a signal, tear down."""
    from zarr_dask_utils.testing.multihost import MultiHostCluster

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGTERM, _stop)
    workdir = Path(args.workdir).resolve()
    env_file = workdir / "multihost.env"
    env_file.unlink(missing_ok=True)
    try:
        with MultiHostCluster(
            workdir,
            worker_hosts=args.worker_hosts,
            workers_per_host=args.workers_per_host,
            threads_per_worker=args.threads_per_worker,
            s3=not args.no_s3,
            latency=args.latency,
        ) as mh:
            bucket = None if args.no_s3 else mh.make_bucket()
            sample = f"s3://{bucket}/sample.zarr" if bucket and args.sample else ""
            if sample:
                from zarr_dask_utils.testing.builders import build_sample_hierarchy

                build_sample_hierarchy(sample, storage_options=mh.storage_options())
            tmp = env_file.with_suffix(".tmp")
            for host in mh.hosts.values():
                print(f"{host.name:10s} {host.address:15s} netns {host.netns}", flush=True)
            lines = [*_env_lines(mh, bucket), f"ZDU_MH_SAMPLE={shlex.quote(sample)}"]
            tmp.write_text("\n".join(lines) + "\n")
            tmp.rename(env_file)  # appears complete or not at all
            print(f"ready: source {env_file}", flush=True)
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        env_file.unlink(missing_ok=True)
    print("multihost: torn down", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m zarr_dask_utils.testing.multihost``."""
    from zarr_dask_utils.testing.multihost import namespaces_unavailable

    parser = argparse.ArgumentParser(prog="python -m zarr_dask_utils.testing.multihost")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="exit 1 with the reason when namespaces are not available")
    run = sub.add_parser("serve", help="start the hosts and run until SIGTERM/SIGINT")
    run.add_argument("--workdir", required=True, help="folder for the scheduler file and logs")
    run.add_argument("--worker-hosts", type=int, default=2)
    run.add_argument("--workers-per-host", type=int, default=1)
    run.add_argument("--threads-per-worker", type=int, default=1)
    run.add_argument("--latency", default=None, help="S3 first-byte delay, e.g. 20ms")
    run.add_argument("--no-s3", action="store_true", help="no S3 host")
    run.add_argument("--sample", action="store_true", help="build the sample hierarchy on S3")
    args = parser.parse_args(argv)
    reason = namespaces_unavailable()
    if reason is not None:
        print(f"multihost: network namespaces are not available here: {reason}", file=sys.stderr)
        return 1
    if args.command == "check":
        print("multihost: network namespaces are available")
        return 0
    os.makedirs(args.workdir, exist_ok=True)
    return serve(args)
