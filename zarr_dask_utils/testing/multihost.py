"""A Dask cluster whose scheduler, workers and S3 server sit on separate (namespace) hosts.

:class:`MultiHostCluster` builds hosts from Linux network namespaces joined by a bridge: a
``scheduler`` host running ``dask scheduler --scheduler-file``, ``worker1``, ``worker2``, ...
hosts running ``dask worker --scheduler-file`` (the way HPC jobs start them) and an ``s3``
host running moto (or the S3 latency rig of :mod:`~zarr_dask_utils.testing.s3rig` when
``latency`` is given).  The client stays in the root namespace.  A host can be cut off the
network (:meth:`~MultiHostCluster.cut`) or have its processes killed
(:meth:`~MultiHostCluster.kill_host`).  Needs root; :func:`namespaces_unavailable` says why
not otherwise.  Everything is torn down by :meth:`~MultiHostCluster.close` (also on errors
and at interpreter exit).

Examples
--------
>>> from zarr_dask_utils.testing.multihost import MultiHostCluster
>>> with MultiHostCluster(tmp_path) as mh:  # doctest: +SKIP
...     bucket = mh.make_bucket()
...     with mh.client() as client:
...         print(client.submit(socket.gethostname).result())

Command line: ``python -m zarr_dask_utils.testing.multihost serve --workdir DIR`` starts the
hosts, writes ``DIR/multihost.env`` (scheduler file, S3 endpoint, a bucket) and runs until
SIGTERM/SIGINT; ``... check`` exits 1 with the reason when namespaces are not available.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any
from uuid import uuid4

from zarr_dask_utils.testing._multihost_net import (
    Host,
    Network,
    namespaces_skip_reason,
    namespaces_unavailable,
)

__all__ = [
    "AWS_TEST_ENV",
    "Host",
    "MultiHostCluster",
    "namespaces_skip_reason",
    "namespaces_unavailable",
]

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Dummy AWS settings every process of the cluster gets (the machine's own never leak in)."""

_S3_SCRIPT = Path(__file__).with_name("_s3rig_server.py")
_HAS_SETPRIV = shutil.which("setpriv") is not None


def _dask_command() -> list[str]:
    """The ``dask`` entry point of this interpreter's environment."""
    beside = Path(sys.executable).with_name("dask")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dask")
    return [found] if found else [sys.executable, "-m", "dask"]


def _process_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DASK_", "AWS_")) and not k.lower().endswith("_proxy")
    }
    return {**env, **AWS_TEST_ENV, **(extra or {})}


class MultiHostCluster:
    """Scheduler, worker and S3 hosts in network namespaces; a context manager.

    Parameters
    ----------
    workdir
        A folder every host sees (the scheduler file, worker spaces and logs go there).
    worker_hosts
        Number of worker hosts (``worker1`` ... ``workerN``).
    workers_per_host
        ``dask worker --nworkers`` started on each worker host.
    threads_per_worker
        ``--nthreads`` of each worker.
    s3
        Start an S3 server on an ``s3`` host.
    latency
        ``None``: plain moto; else a first-byte delay (``"20ms"`` or seconds) through the
        S3 latency rig (jitter a tenth of it).
    s3_servers
        moto processes behind the latency rig (with ``latency``; one serves ~230 requests/s).
    env
        Extra environment variables for every process the cluster starts (e.g. Dask config
        ``DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT``).  The caller's ``DASK_*`` and
        ``AWS_*`` variables are never passed on.
    start_timeout
        Seconds to wait for the scheduler file, the S3 server and the workers.

    Notes
    -----
    Start it from a thread that outlives it (the main thread): every process it starts gets
    SIGTERM when that thread ends (``setpriv --pdeathsig``), so a test run killed with
    SIGKILL leaves no process behind; its namespaces and links are then deleted by the next
    instance (:func:`~zarr_dask_utils.testing._multihost_net.sweep_stale`).  Addresses are
    only on links it creates (a private /24 on its own bridge; nothing is routed outside).
    Start-up takes ~3 s on a quiet 2-core machine.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        worker_hosts: int = 2,
        workers_per_host: int = 1,
        threads_per_worker: int = 1,
        s3: bool = True,
        latency: str | float | None = None,
        s3_servers: int = 1,
        env: dict[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.threads_per_worker = threads_per_worker
        self.start_timeout = start_timeout
        self.env = _process_env(env)
        self.scheduler_file = self.workdir / "scheduler.json"
        self.scheduler_address = ""
        self.s3_endpoint: str | None = None
        self.latency = latency
        self._s3_servers = s3_servers
        self._net = Network()
        self._procs: dict[str, list[subprocess.Popen[bytes]]] = {}
        self._logs: list[IO[bytes]] = []
        self._admin: Any = None
        self._closed = False
        atexit.register(self.close)
        names = ["scheduler", *(f"worker{i + 1}" for i in range(worker_hosts))]
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._net.create([*names, *(["s3"] if s3 else [])])
            if s3:
                self._start_s3(latency)
            self._start_scheduler()
            for name in names[1:]:
                if workers_per_host > 0:
                    self.start_workers(name, workers_per_host)
        except BaseException:
            self.close()
            raise

    @property
    def hosts(self) -> dict[str, Host]:
        """The hosts by name: ``scheduler``, ``worker1`` ..., ``s3``."""
        return self._net.hosts

    # --- processes ---------------------------------------------------------------------------

    def run(self, host: str, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        """Start *argv* in *host*'s namespace; the process is tracked (killed at close).

        Output goes to ``workdir/logs/<host>-<n>.log`` unless ``stdout``/``stderr`` are
        given; the environment is the cluster's unless ``env`` is given.
        """
        netns = self.hosts[host].netns
        procs = self._procs.setdefault(host, [])
        if "stdout" not in popen_kwargs or "stderr" not in popen_kwargs:
            (self.workdir / "logs").mkdir(exist_ok=True)
            log = (self.workdir / "logs" / f"{host}-{len(procs)}.log").open("wb")
            self._logs.append(log)
            popen_kwargs.setdefault("stdout", log)
            popen_kwargs.setdefault("stderr", subprocess.STDOUT)
        popen_kwargs.setdefault("env", self.env)
        popen_kwargs.setdefault("start_new_session", True)  # its own group: kill_host kills all
        # setpriv: SIGTERM to the process when this one dies (kill -9 of a test run)
        guard = ["setpriv", "--pdeathsig", "TERM", "--"] if _HAS_SETPRIV else []
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *guard, *argv], **popen_kwargs)
        procs.append(proc)
        return proc

    def _log_tail(self, host: str) -> str:
        logs = sorted((self.workdir / "logs").glob(f"{host}-*.log"))
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in logs)

    def _wait(self, what: str, host: str, ready: Any, proc: subprocess.Popen[bytes]) -> Any:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while time.monotonic() < deadline:
            value = ready()
            if value:
                return value
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{what} on host {host!r} exited with {proc.returncode}:\n"
                    + self._log_tail(host)
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        raise TimeoutError(f"{what} on host {host!r} not ready in {self.start_timeout} s")

    def _start_s3(self, latency: str | float | None) -> None:
        host = self.hosts["s3"]
        ready = self.workdir / f"s3-{uuid4().hex[:6]}.json"
        argv = [sys.executable, str(_S3_SCRIPT), "--host", host.address]
        if latency is None:
            argv += ["--moto"]
        else:
            from dask.utils import parse_timedelta

            seconds = float(parse_timedelta(latency, default="s") or 0.0)
            argv += [
                "--servers",
                str(self._s3_servers),
                "--latency",
                str(seconds),
                "--jitter",
                str(seconds / 10),
            ]
        env = {k: v for k, v in self.env.items() if not k.startswith(("COVERAGE_", "COV_CORE_"))}
        with ready.open("wb") as out:
            proc = self.run("s3", argv, stdout=out, stderr=subprocess.DEVNULL, env=env)

        def port() -> int | None:
            text = ready.read_text().strip().splitlines()
            if not text:
                return None
            return int(text[0]) if latency is None else int(json.loads(text[0])["port"])

        self.s3_endpoint = f"http://{host.address}:{self._wait('the S3 server', 's3', port, proc)}"

    def _start_scheduler(self) -> None:
        address = self.hosts["scheduler"].address
        argv = [*_dask_command(), "scheduler", "--host", address, "--port", "0"]
        argv += [
            "--dashboard-address",
            f"{address}:0",
            "--scheduler-file",
            str(self.scheduler_file),
        ]
        self.scheduler_file.unlink(missing_ok=True)
        proc = self.run("scheduler", argv)

        def address_in_file() -> str | None:
            with contextlib.suppress(OSError, ValueError, KeyError):
                return str(json.loads(self.scheduler_file.read_text())["address"])
            return None

        self.scheduler_address = self._wait("dask scheduler", "scheduler", address_in_file, proc)
        from distributed import Client

        self._admin = Client(self.scheduler_address, timeout=self.start_timeout)  # type: ignore[no-untyped-call]

    def start_workers(self, host: str, n: int = 1) -> None:
        """Start ``dask worker --nworkers n`` on *host*; return when the scheduler sees them."""
        address = self.hosts[host].address
        before = len(self.worker_addresses(host))
        argv = [*_dask_command(), "worker", "--scheduler-file", str(self.scheduler_file)]
        argv += ["--host", address, "--nworkers", str(n), "--nthreads"]
        argv += [
            str(self.threads_per_worker),
            "--no-dashboard",
            "--name",
            f"{host}-{uuid4().hex[:4]}",
        ]
        argv += ["--local-directory", str(self.workdir / "workers" / host)]
        proc = self.run(host, argv)
        self._wait(
            f"{n} dask worker(s)",
            host,
            lambda: len(self.worker_addresses(host)) >= before + n,
            proc,
        )

    def worker_addresses(self, host: str) -> list[str]:
        """Addresses of the workers the scheduler knows on *host* (sorted)."""
        prefix = f"tcp://{self.hosts[host].address}:"
        info = self._admin.scheduler_info(n_workers=-1)
        return sorted(a for a in info["workers"] if a.startswith(prefix))

    def kill_host(self, host: str) -> None:
        """SIGKILL every process started on *host* (each process group)."""
        for proc in self._procs.get(host, []):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # --- network -----------------------------------------------------------------------------

    def cut(self, host: str) -> None:
        """Take *host* off the network (its link down); its processes live on."""
        self._net.set_link(host, up=False)

    def restore(self, host: str) -> None:
        """Bring *host*'s link up again."""
        self._net.set_link(host, up=True)

    # --- what clients need -------------------------------------------------------------------

    def client(self, **kw: Any) -> Any:
        """A new ``distributed.Client`` on the scheduler, from the root namespace."""
        from distributed import Client

        return Client(self.scheduler_address, **kw)  # type: ignore[no-untyped-call]

    def storage_options(self) -> dict[str, Any]:
        """s3fs ``storage_options`` for :attr:`s3_endpoint` (dummy credentials)."""
        if self.s3_endpoint is None:
            raise RuntimeError("this MultiHostCluster has no S3 host (s3=False)")
        return {"key": "testing", "secret": "testing", "endpoint_url": self.s3_endpoint}

    def make_bucket(self) -> str:
        """Create a fresh bucket on :attr:`s3_endpoint`; return its name."""
        import boto3

        name = f"mh-{uuid4().hex[:12]}"
        so = self.storage_options()
        boto3.client(
            "s3",
            endpoint_url=so["endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=name)
        return name

    def configure_s3(self, **settings: float | None) -> dict[str, float | None]:
        """Change the latency rig's ``latency``/``jitter``/``bandwidth`` (seconds, bytes/s).

        Returns the previous settings (pass them back to restore).  Only with ``latency``.
        """
        return dict(self._rig_call("POST", "config", settings)["config"])

    def s3_stats(self) -> dict[str, Any]:
        """The latency rig's request counters (``{"requests": {"GET": n, ...}, ...}``)."""
        return dict(self._rig_call("GET", "stats"))

    def _rig_call(self, method: str, name: str, payload: Any = None) -> Any:
        import urllib.request

        if self.latency is None or self.s3_endpoint is None:
            raise RuntimeError("the S3 host runs plain moto: pass latency= for the latency rig")
        before = None
        if method == "POST" and name == "config":
            before = self._rig_call("GET", "config")
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"{self.s3_endpoint}/_rig/{name}", data=data, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        return before if before is not None else answer

    # --- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process, delete namespaces, links and the bridge (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close(timeout=5)
            procs = [p for ps in self._procs.values() for p in ps]
            for proc in procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.1, deadline - time.monotonic()))
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group
                proc.wait()
        finally:
            self._net.destroy()
            for log in self._logs:
                log.close()

    def __enter__(self) -> MultiHostCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    from zarr_dask_utils.testing._multihost_cli import main

    sys.exit(main())
