"""A realistic S3 test rig: moto's S3 server behind a latency and bandwidth limit.

The loopback moto server answers in microseconds, so concurrency, batching and caching show no
effect on it.  :class:`S3Rig` makes it behave like remote object storage: each request waits a
first-byte delay (default 20 ms ± 2 ms, seeded jitter) and bodies move at most ``bandwidth``
bytes/s per connection.  Waits are asyncio sleeps in a proxy process, so many requests can be
in flight at once.  One moto process serves about 230 small requests/s, so ``servers=N`` runs
N moto processes behind the proxy and still shows ONE bucket namespace: objects live on the
process their key hashes to, bucket operations go to all, listings are merged in key order
with correct pagination, ``DeleteObjects`` batches are split, ``CopyObject`` between processes
is a GET there and a PUT here.  (Not supported across processes: ``UploadPartCopy``, answered
501, and ``ListObjectVersions`` / ``ListMultipartUploads``, which see process 0 only.)

Everything runs in child processes of the caller: ``python .../testing/_s3rig_server.py`` (the
proxy, started by path so it never imports this package) and its moto servers.
:meth:`S3Rig.stop` (also at exit, and when the caller dies: ``PR_SET_PDEATHSIG``) ends them all.

Examples
--------
>>> import s3fs
>>> from zarr_dask_utils.testing.s3rig import S3Rig
>>> with S3Rig(latency=0.02, jitter=0.002, bandwidth="100MB") as rig:  # doctest: +SKIP
...     bucket = rig.make_bucket()
...     fs = s3fs.S3FileSystem(**rig.storage_options)
...     fs.pipe(f"{bucket}/a", b"x" * 1000)
...     rig.stats()["PUT"]
1
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

__all__ = ["REQUEST_KINDS", "RigStats", "S3Rig"]

REQUEST_KINDS = ("GET", "HEAD", "PUT", "LIST", "DELETE", "POST", "OTHER")
"""The counters of :meth:`S3Rig.stats`: LIST is a bucket listing (also ListBuckets), DELETE
counts DeleteObject and DeleteObjects (one per batch), POST the multipart-upload calls, OTHER
bucket operations (create, delete, configuration)."""


@dataclass(frozen=True)
class RigStats:
    """Requests the rig served since the last :meth:`S3Rig.reset_stats`.

    Attributes
    ----------
    requests
        Client requests by kind (see :data:`REQUEST_KINDS`); ``stats["GET"]`` reads one.
    bytes_served
        Response body bytes sent to clients (HEAD responses have none).
    bytes_received
        Request body bytes received from clients (uploads).
    per_server
        Requests each moto process got (a listing or bucket operation reaches every one).
    """

    requests: Mapping[str, int]
    bytes_served: int
    bytes_received: int
    per_server: tuple[int, ...] = field(default=())

    def __getitem__(self, kind: str) -> int:
        return int(self.requests.get(kind, 0))

    @property
    def total(self) -> int:
        """All client requests."""
        return sum(self.requests.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "requests": {k: self[k] for k in REQUEST_KINDS},
            "bytes_served": self.bytes_served,
            "bytes_received": self.bytes_received,
            "per_server": list(self.per_server),
        }


def _parse_rate(bandwidth: float | str | None) -> float | None:
    if bandwidth is None or bandwidth == 0:
        return None
    if isinstance(bandwidth, str):
        from dask.utils import parse_bytes

        return float(parse_bytes(bandwidth))
    if bandwidth < 0:
        raise ValueError(f"bandwidth must be positive bytes/s or None, got {bandwidth!r}")
    return float(bandwidth)


class S3Rig:
    """moto's S3 API in its own processes, with latency and a rate limit in front.

    Parameters
    ----------
    latency
        Seconds every request waits before it reaches the server (first-byte delay).
    jitter
        Each delay is ``latency`` plus a uniform draw in ``[-jitter, +jitter]`` (seeded).
    bandwidth
        Bytes/s per connection for request and response bodies (``"100MB"`` works); ``None``
        for no limit.  Parallel connections each get this rate.
    servers
        moto processes behind the proxy (one caps at ~230 small requests/s on this machine).
    seed
        Seed of the jitter.
    start_timeout
        Seconds to wait for every process to answer.

    Notes
    -----
    Start it from a thread that outlives it (the main thread): the kernel ends the rig when
    the thread that started it exits (``PR_SET_PDEATHSIG``).  Parallel connections each get
    ``bandwidth``; there is no total cap.  The proxy holds each body in memory while it
    passes (fine for test objects up to a few hundred MB).

    Examples
    --------
    >>> with S3Rig(servers=2) as rig:  # doctest: +SKIP
    ...     bucket = rig.make_bucket()
    ...     store = zarr.storage.FsspecStore.from_url(
    ...         f"s3://{bucket}/a.zarr", storage_options=rig.storage_options
    ...     )
    """

    def __init__(
        self,
        *,
        latency: float = 0.020,
        jitter: float = 0.002,
        bandwidth: float | str | None = None,
        servers: int = 1,
        seed: int = 0,
        start_timeout: float = 60.0,
    ) -> None:
        if latency < 0 or jitter < 0 or jitter > latency:
            raise ValueError(f"need 0 <= jitter <= latency, got {latency=} and {jitter=}")
        if servers < 1:
            raise ValueError(f"servers must be at least 1, got {servers}")
        self.latency = float(latency)
        self.jitter = float(jitter)
        self.bandwidth = _parse_rate(bandwidth)
        self.servers = servers
        self.seed = seed
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.pids: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> S3Rig:
        """Start the moto processes and the proxy; return once they answer."""
        if self._proc is not None:
            return self
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, str(Path(__file__).with_name("_s3rig_server.py"))]
        cmd += ["--servers", str(self.servers), "--latency", str(self.latency)]
        cmd += ["--jitter", str(self.jitter), "--bandwidth", str(self.bandwidth or 0)]
        cmd += ["--seed", str(self.seed), "--parent-pid", str(os.getpid())]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log)
        atexit.register(self.stop)
        try:
            ready = self._read_ready_line()
            self.port, self.pids = int(ready["port"]), [int(p) for p in ready["pids"]]
            self._call("GET", "stats")
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready_line(self) -> dict[str, Any]:
        if self._proc is None or self._proc.stdout is None:
            raise RuntimeError("the S3 rig process is not running")
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            if not sel.select(self.start_timeout):
                raise TimeoutError(f"the S3 rig did not start within {self.start_timeout} s")
        line = self._proc.stdout.readline()
        self._proc.stdout.close()
        if not line.strip():
            self._log.seek(0)
            log = self._log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the S3 rig exited with {self._proc.wait()}:\n{log}")
        return dict(json.loads(line))

    def stop(self) -> None:
        """End every process of the rig (idempotent); kill what does not stop in 10 s."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in self.pids[1:]:  # moto servers: normally gone with the proxy
            _kill_if_ours(pid)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> S3Rig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what clients need -------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``: the S3 endpoint."""
        if self.port is None:
            raise RuntimeError("the S3 rig is not running: use `with S3Rig() as rig:`")
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs ``storage_options`` for this endpoint (dummy credentials)."""
        return {"key": "testing", "secret": "testing", "endpoint_url": self.endpoint_url}

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh ``rig-<random>`` name by default); return its name."""
        import boto3

        name = name or f"rig-{uuid4().hex[:12]}"
        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=name)
        return name

    # --- counters and settings ---------------------------------------------------------------

    def stats(self) -> RigStats:
        """Requests by kind and bytes moved since the last :meth:`reset_stats`."""
        data = self._call("GET", "stats")
        return RigStats(
            requests=dict(data["requests"]),
            bytes_served=int(data["bytes_served"]),
            bytes_received=int(data["bytes_received"]),
            per_server=tuple(data["per_server"]),
        )

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._call("POST", "reset")

    def configure(self, **settings: float | str | None) -> dict[str, float | None]:
        """Change ``latency``, ``jitter`` and/or ``bandwidth`` now; return the previous ones."""
        unknown = set(settings) - {"latency", "jitter", "bandwidth"}
        if unknown:
            raise TypeError(f"unknown rig settings: {sorted(unknown)}")
        if "bandwidth" in settings:
            settings["bandwidth"] = _parse_rate(settings["bandwidth"])
        before = dict(self._call("GET", "config")["config"])
        after = dict(self._call("POST", "config", settings)["config"])
        self.latency, self.jitter, self.bandwidth = (
            after["latency"],
            after["jitter"],
            after["bandwidth"],
        )
        return before

    @contextlib.contextmanager
    def unthrottled(self) -> Iterator[S3Rig]:
        """No latency and no rate limit inside the block (to fill a bucket fast)."""
        before = self.configure(latency=0.0, jitter=0.0, bandwidth=None)
        try:
            yield self
        finally:
            self.configure(**before)

    def _call(self, method: str, name: str, payload: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"{self.endpoint_url}/_rig/{name}", data=data, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


def _kill_if_ours(pid: int) -> None:
    """SIGKILL *pid* if it is still one of the rig's processes (not a reused pid)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"_s3rig_server" not in f.read():
                    return
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    return  # a zombie: gone, its parent reaps it
        except OSError:
            return
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
