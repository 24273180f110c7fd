"""The S3 server the benchmarks run against: :class:`~zarr_dask_utils.testing.s3rig.S3Rig`.

moto's S3 server in its own process(es) behind the rig's proxy, which counts the requests it
serves by kind and can add latency and a per-connection rate limit, like a remote object store.
Shared by every ``bench_*.py`` (they run with ``benchmarks/`` first on ``sys.path``);
:class:`S3Server` keeps the interface the older benchmarks use.
"""

from __future__ import annotations

import socket
import sys

from zarr_dask_utils.testing.s3rig import RigStats, S3Rig

__all__ = ["RigStats", "S3Rig", "S3Server", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server(S3Rig):
    """An :class:`S3Rig` with a fixed ``latency_s`` (no jitter, no rate limit) by default.

    ``in_process`` is accepted for the older benchmarks; the server always runs in its own
    processes now (in this process it would compete with the client for the GIL).
    """

    def __init__(
        self,
        *,
        in_process: bool = False,
        latency_s: float = 0.0,
        servers: int = 1,
        bandwidth: float | str | None = None,
    ) -> None:
        if in_process:
            print("note: the S3 server runs in its own processes (S3Rig)", file=sys.stderr)
        super().__init__(latency=latency_s, jitter=0.0, bandwidth=bandwidth, servers=servers)

    @property
    def endpoint(self) -> str:
        """The endpoint URL (``http://127.0.0.1:PORT``)."""
        return self.endpoint_url

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def requests(self) -> dict[str, int]:
        """Requests served since the previous call, by kind (GET, LIST, PUT, HEAD, ...)."""
        counts = dict(self.stats().requests)
        self.reset_stats()
        return counts
