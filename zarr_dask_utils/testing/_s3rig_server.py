"""The processes of the S3 rig: ``python .../zarr_dask_utils/testing/_s3rig_server.py``.

Run as a script (by path), so the rig's processes never import the ``zarr_dask_utils`` package
(dask, zarr): they start fast and do not depend on the rest of the package.

Run without ``--moto`` it is the rig process: it starts ``--servers`` moto S3 server processes
(this module again, with ``--moto``), waits until each listens, starts the proxy of
:mod:`~zarr_dask_utils.testing._s3rig_proxy` in front of them and prints one JSON line
(``{"port": ..., "pids": [...]}``) on stdout.  It stops its servers when it gets SIGTERM or
SIGINT.  Every process asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), so a killed test run leaves no server behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent dies (Linux); exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit("the S3 rig's parent process is gone")


def _serve_moto(host: str) -> None:
    """One moto S3 server (threaded werkzeug) on a free port; prints the port."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # else one log line per request
    app = DomainDispatcherApplication(create_backend_app)
    server: Any = make_server(host, 0, app, True, request_handler=MotoRequestHandler)
    print(server.port, flush=True)
    server.serve_forever()


def _start_moto(n: int, host: str, procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Start *n* moto servers (appended to *procs* at once); their ports once all listen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERAGE_", "COV_CORE_"))}
    cmd = [sys.executable, os.path.abspath(__file__)]
    cmd += ["--moto", "--host", host, "--parent-pid", str(os.getpid())]
    for _ in range(n):
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        )
    ports = []
    for proc in procs:
        if proc.stdout is None:
            continue
        line = proc.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"a moto server process exited with {proc.wait()}")
        ports.append(int(line))
        proc.stdout.close()
    return ports


async def _run_proxy(ports: list[int], args: argparse.Namespace, pids: list[int]) -> None:
    from _s3rig_proxy import RigConfig, serve  # beside this script (sys.path[0])

    config = RigConfig(args.latency, args.jitter, args.bandwidth or None, args.seed)
    server = await serve(ports, config, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "pids": [os.getpid(), *pids]}), flush=True)
    with open(os.devnull, "w") as devnull:  # nobody reads stdout any more
        os.dup2(devnull.fileno(), sys.stdout.fileno())
    async with server:
        await stop.wait()


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> None:
    """Run a moto server (``--moto``) or the rig (servers + proxy) until told to stop."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moto", action="store_true")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=os.getppid())
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--jitter", type=float, default=0.002)
    parser.add_argument("--bandwidth", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent_pid)
    if args.moto:
        _serve_moto(args.host)
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # until the loop takes over
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # moto listens on loopback only: clients reach it through the proxy on --host
        ports = _start_moto(args.servers, "127.0.0.1", procs)
        asyncio.run(_run_proxy(ports, args, [p.pid for p in procs]))
    except KeyboardInterrupt:
        pass
    finally:
        _stop(procs)


if __name__ == "__main__":
    main()
