"""The moto S3 server the benchmarks run against: on 127.0.0.1, in its own process by default.

It counts the requests it serves by kind (``GET /_bench/requests``) and can add latency to each,
like a remote object store.  Shared by every ``bench_*.py`` (they run with ``benchmarks/`` first
on ``sys.path``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import socket
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

__all__ = ["S3Server", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _counting_app(app: Any, latency_s: float) -> Any:
    """Wrap moto's WSGI app: count requests by kind, optionally add latency to each.

    ``GET /_bench/requests`` returns the counts since the previous call (and resets them).
    The latency is a ``time.sleep`` in the server's request thread, so concurrent requests
    overlap, as they do on a real object store.
    """
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/_bench/requests":
            with lock:
                body = json.dumps(dict(counts)).encode()
                counts.clear()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        kind = environ.get("REQUEST_METHOD", "?")
        query = environ.get("QUERY_STRING", "")
        if kind == "GET" and ("list-type" in query or "delimiter" in query or "prefix" in query):
            kind = "LIST"
        with lock:
            counts[kind] += 1
        if latency_s:
            time.sleep(latency_s)
        return app(environ, start_response)

    return wrapped


def _make_server(port: int, latency_s: float) -> Any:
    from moto.server import ThreadedMotoServer

    class CountingMotoServer(ThreadedMotoServer):
        """ThreadedMotoServer whose app counts requests (and sleeps ``latency_s`` in each)."""

        def _server_entry(self) -> None:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server

            app = _counting_app(DomainDispatcherApplication(create_backend_app), latency_s)
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # else one log line per request
    return CountingMotoServer(ip_address="127.0.0.1", port=port, verbose=False)


def _serve_s3(port: int, latency_s: float, ready: Any, stop: Any) -> None:
    """Child process: run the S3 server until *stop* is set."""
    server = _make_server(port, latency_s)
    server.start()
    ready.set()
    stop.wait()
    server.stop()


class S3Server:
    """moto's ThreadedMotoServer on 127.0.0.1, in its own process or in this one."""

    def __init__(self, *, in_process: bool, latency_s: float = 0.0) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.in_process = in_process
        self.latency_s = latency_s
        self._server: Any = None
        self._proc: Any = None

    def __enter__(self) -> S3Server:
        if self.in_process:
            self._server = _make_server(self.port, self.latency_s)
            self._server.start()
        else:
            ctx = multiprocessing.get_context("spawn")
            ready, self._stop = ctx.Event(), ctx.Event()
            self._proc = ctx.Process(
                target=_serve_s3,
                args=(self.port, self.latency_s, ready, self._stop),
                daemon=True,
            )
            self._proc.start()
            if not ready.wait(60):
                raise RuntimeError("the moto S3 server did not start within 60 s")
        return self

    def requests(self) -> dict[str, int]:
        """Requests served since the previous call, by kind (GET, LIST, PUT, HEAD, ...)."""
        with urllib.request.urlopen(f"{self.endpoint}/_bench/requests", timeout=30) as resp:
            return dict(json.load(resp))

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()
        if self._proc is not None:
            self._stop.set()
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.terminate()
