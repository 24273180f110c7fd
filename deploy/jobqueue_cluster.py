"""Run a zarr-dask-utils operation on Slurm or PBS workers started by dask-jobqueue.

Run this on a login node (or in a small batch job) of the cluster: it starts a Dask scheduler
here, submits worker jobs with ``sbatch`` / ``qsub``, runs ``zdu.validate_metadata`` on them
with ``client=``, prints the report and exits with zdu's code (0 healthy, 1 problems, 2 bad
input). Needs ``pip install "zarr-dask-utils[s3,deploy]"`` (dask-jobqueue) in an environment
every node sees.

    python deploy/jobqueue_cluster.py slurm s3://bucket/era5.zarr --jobs 4 \
        --walltime 02:00:00 --account myproj --python /shared/envs/zdu/bin/python
    python deploy/jobqueue_cluster.py pbs /lustre/project/era5.zarr --queue normal
    python deploy/jobqueue_cluster.py slurm s3://bucket/era5.zarr --print-job-script

Long jobs: a worker job ends at its walltime, and a worker killed by the batch system loses
its tasks. As dask-jobqueue documents ("How to handle job queueing system walltime killing
workers"), each worker gets ``--lifetime`` a few minutes shorter than the walltime and
``--lifetime-stagger`` so that they do not all retire at once, and the cluster is made
adaptive, so that a retiring worker's job is replaced by a fresh one while the work goes on.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

#: batch system -> dask-jobqueue class name
KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}


def parse_walltime(walltime: str) -> int:
    """Seconds in a walltime ``[D-]HH:MM:SS``, ``MM:SS`` or ``MM`` (Slurm and PBS spelling)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", walltime.strip())
    if match is None:
        raise ValueError(f"walltime {walltime!r}: expected HH:MM:SS, e.g. 01:00:00")
    days = int(match.group(1) or 0)
    parts = [int(p) for p in match.groups()[1:] if p is not None]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def lifetime_args(walltime: str) -> list[str]:
    """``dask worker`` options retiring a worker before its job's walltime.

    dask-jobqueue's example for a 1 h walltime is ``--lifetime 55m --lifetime-stagger 4m``:
    the worker retires 5 min before the walltime, spread over +-4 min so that workers do not
    all leave at once. Shorter walltimes keep the same proportions (margin a quarter of the
    walltime at most) so that ``lifetime + stagger`` always stays below the walltime.
    """
    total = parse_walltime(walltime)
    if total < 120:
        raise ValueError(f"walltime {walltime!r} is under 2 minutes: too short for a worker job")
    margin = min(300, total // 4)
    stagger = margin * 4 // 5
    return ["--lifetime", f"{total - margin}s", "--lifetime-stagger", f"{stagger}s"]


def make_cluster(
    kind: str,
    *,
    cores: int = 8,
    processes: int = 2,
    memory: str = "16GiB",
    walltime: str = "01:00:00",
    queue: str | None = None,
    account: str | None = None,
    python: str | None = None,
    interface: str | None = None,
    scheduler_host: str | None = None,
    local_directory: str | None = None,
) -> Any:
    """A ``SLURMCluster`` or ``PBSCluster`` whose workers retire before their walltime.

    Constructing it starts the scheduler in this process but submits no job (``scale`` or
    ``adapt`` does), so ``cluster.job_script()`` works anywhere.
    """
    import dask_jobqueue

    if kind not in KINDS:
        raise ValueError(f"unknown batch system {kind!r}: use one of {sorted(KINDS)}")
    options: dict[str, Any] = {
        "cores": cores,
        "processes": processes,
        "memory": memory,
        "walltime": walltime,
        "queue": queue,
        "account": account,
        "interface": interface,
        "local_directory": local_directory,
        "worker_extra_args": lifetime_args(walltime),
    }
    if python is not None:
        options["python"] = python
    if scheduler_host is not None:
        options["scheduler_options"] = {"host": scheduler_host, "dashboard_address": ":0"}
    # PBS: dask-jobqueue writes "#PBS -l select=1:ncpus=<cores>:mem=<memory>" (PBS Pro); on
    # Torque set jobqueue.pbs.resource-spec to "nodes=1:ppn=<cores>" in the dask config.
    return getattr(dask_jobqueue, KINDS[kind])(**options)


def run(cluster: Any, store: str, *, jobs: int, storage_options: dict[str, str]) -> int:
    """Validate ``store`` on ``cluster``'s workers; print the report, return zdu's exit code."""
    from distributed import Client

    import zarr_dask_utils as zdu

    # adapt, not scale: a worker retiring at --lifetime is replaced by a new job.
    cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)
    with Client(cluster) as client:  # type: ignore[no-untyped-call]
        print(f"dashboard: {client.dashboard_link}", flush=True)
        report = zdu.validate_metadata(
            store, storage_options=storage_options or None, client=client, progress=False
        )
        print(report)
    return 0 if report.ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(KINDS), help="batch system")
    parser.add_argument("store", nargs="?", help="store to validate (path or URL)")
    parser.add_argument("--jobs", type=int, default=2, help="worker jobs (default 2)")
    parser.add_argument("--cores", type=int, default=8, help="cores per job (default 8)")
    parser.add_argument("--processes", type=int, default=2, help="workers per job (default 2)")
    parser.add_argument("--memory", default="16GiB", help="memory per job (default 16GiB)")
    parser.add_argument("--walltime", default="01:00:00", help="per job (default 01:00:00)")
    parser.add_argument("--queue", help="partition (Slurm) / queue (PBS)")
    parser.add_argument("--account", help="account / project to charge")
    parser.add_argument("--python", help="python of the shared environment on the nodes")
    parser.add_argument("--interface", help="network interface, e.g. ib0")
    parser.add_argument("--scheduler-host", help="address the scheduler binds to")
    parser.add_argument("--local-directory", help="node-local scratch for the workers")
    parser.add_argument(
        "-o", dest="options", action="append", default=[], metavar="KEY=VALUE",
        help="storage option, e.g. -o endpoint_url=https://s3.example.org",
    )  # fmt: skip
    parser.add_argument(
        "--print-job-script", action="store_true", help="print the job script, submit nothing"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.store is None and not args.print_job_script:
        _parser().error("give a STORE to validate, or --print-job-script")
    options = dict(item.split("=", 1) for item in args.options)
    with make_cluster(
        args.kind,
        cores=args.cores,
        processes=args.processes,
        memory=args.memory,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        python=args.python,
        interface=args.interface,
        scheduler_host=args.scheduler_host,
        local_directory=args.local_directory,
    ) as cluster:
        if args.print_job_script:
            print(cluster.job_script())
            return 0
        return run(cluster, args.store, jobs=args.jobs, storage_options=options)


if __name__ == "__main__":
    sys.exit(main())
