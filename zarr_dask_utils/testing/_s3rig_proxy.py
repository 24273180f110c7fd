"""The rig's HTTP proxy: latency, a per-connection rate limit, request counters, sharding.

It runs in its own process (see :mod:`zarr_dask_utils.testing._s3rig_server`) in front of one or
more moto S3 server processes.  Every request waits a first-byte delay (``latency`` ±
``jitter``, seeded) before it reaches a server; request and response bodies move at most
``bandwidth`` bytes/s per client connection.  Waits are asyncio sleeps, so thousands of requests
can be in flight at once, as on a real object store.  Routing across several moto processes is
in :mod:`zarr_dask_utils.testing._s3rig_s3ops`.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

if __package__:  # imported as zarr_dask_utils.testing._s3rig_proxy
    from zarr_dask_utils.testing import _s3rig_s3ops as ops
else:  # in the rig's process, run as a script: the package (dask, zarr) is never imported
    import _s3rig_s3ops as ops  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

__all__ = ["RigConfig", "RigProxy"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
_CHUNK = 64 * 1024
_BACKEND_BUFFER = 32 * 2**20  # large bodies are read without pausing the transport
_NO_BODY_STATUS = (204, 304)

Headers = list[tuple[str, str]]


@dataclass
class RigConfig:
    """What the proxy adds: seconds of first-byte delay, its jitter, bytes/s per connection."""

    latency: float = 0.020
    jitter: float = 0.002
    bandwidth: float | None = None
    seed: int = 0


@dataclass
class Response:
    """An HTTP response held in memory."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first header called *name* (case-insensitive)."""
        return _header(self.headers, name)


@dataclass
class _Stats:
    requests: Counter[str] = field(default_factory=Counter)
    per_server: Counter[int] = field(default_factory=Counter)
    bytes_served: int = 0
    bytes_received: int = 0


def _header(headers: Headers, name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


def _parse_head(head: bytes) -> tuple[str, Headers]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


async def _read_body(reader: asyncio.StreamReader, headers: Headers, *, to_eof: bool) -> bytes:
    """A message body framed by chunked encoding, Content-Length, or (responses) the close."""
    if (_header(headers, "transfer-encoding") or "").lower().endswith("chunked"):
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = _header(headers, "content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    return await reader.read() if to_eof else b""


class _Backend:
    """One moto server process: a pool of idle keep-alive connections to it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def exchange(self, method: str, target: str, headers: Headers, body: bytes) -> Response:
        """Send one request, return the whole response (one retry on a stale connection)."""
        for attempt in (0, 1):
            reused = bool(self._idle) and attempt == 0
            if reused:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, limit=_BACKEND_BUFFER
                )
            try:
                response, keep = await self._once(reader, writer, method, target, headers, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                if reused:
                    continue
                raise
            if keep:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return response
        raise ConnectionError(f"moto server on port {self.port} closed the connection")

    @staticmethod
    async def _once(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
    ) -> tuple[Response, bool]:
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]
        lines = [ln for ln in lines if not ln.lower().startswith("content-length:")]
        if body or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line, rheaders = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        _, code, reason = [*status_line.split(" ", 2), ""][:3]
        status = int(code)
        no_body = method == "HEAD" or status in _NO_BODY_STATUS or status < 200
        framed = _header(rheaders, "content-length") is not None or bool(
            _header(rheaders, "transfer-encoding")
        )
        rbody = b"" if no_body else await _read_body(reader, rheaders, to_eof=True)
        keep = (no_body or framed) and (_header(rheaders, "connection") or "").lower() != "close"
        return Response(status, reason, rheaders, rbody), keep


class RigProxy:
    """The asyncio server clients talk to (see the module docstring)."""

    def __init__(self, ports: list[int], config: RigConfig) -> None:
        self.backends = [_Backend(p) for p in ports]
        self.config = config
        self._rng = random.Random(config.seed)
        self._stats = _Stats()

    # --- the client side ---------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection: HTTP/1.1 requests, one at a time, kept alive."""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                request_line, headers = _parse_head(head)
                method, target, version = [*request_line.split(" ", 2), "", ""][:3]
                if (_header(headers, "expect") or "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                started = asyncio.get_running_loop().time()
                body = await _read_body(reader, headers, to_eof=False)
                if target.startswith("/_rig/"):
                    response = self._admin(method, target, body)
                else:
                    await self._pace(len(body), started)
                    response = await self._serve(method, target, headers, body)
                close = (_header(headers, "connection") or "").lower() == "close"
                await self._send(writer, method, response, keep=not close and version != "HTTP/1.0")
                if close:
                    break
        except Exception:  # one broken client connection must not stop the rig
            logger.exception("the S3 rig proxy dropped a connection")
        finally:
            writer.close()

    async def _serve(self, method: str, target: str, headers: Headers, body: bytes) -> Response:
        parsed = ops.parse_target(target)
        stats = self._stats
        stats.requests[ops.classify(method, parsed)] += 1
        stats.bytes_received += len(body)
        cfg = self.config
        delay = cfg.latency + (self._rng.uniform(-cfg.jitter, cfg.jitter) if cfg.jitter else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            response = await self._route(method, target, parsed, headers, body)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as err:
            logger.warning("moto server unreachable: %s", err)
            response = Response(503, "Service Unavailable", [], ops.error_xml("SlowDown", str(err)))
        if method != "HEAD":
            stats.bytes_served += len(response.body)
        return response

    async def _send(
        self, writer: asyncio.StreamWriter, method: str, r: Response, *, keep: bool
    ) -> None:
        head = [f"HTTP/1.1 {r.status} {r.reason}"]
        head += [
            f"{k}: {v}"
            for k, v in r.headers
            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
        ]
        if method == "HEAD" or r.status in _NO_BODY_STATUS:
            length = r.header("content-length")
            if length is not None:
                head.append(f"Content-Length: {length}")
            body = b""
        else:
            head.append(f"Content-Length: {len(r.body)}")
            body = r.body
        head.append("Connection: keep-alive" if keep else "Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        rate = self.config.bandwidth
        if not rate:
            writer.write(body)
            await writer.drain()
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        for offset in range(0, len(body), _CHUNK):
            chunk = body[offset : offset + _CHUNK]
            # a chunk leaves once its last byte could have crossed the link
            wait = start + (offset + len(chunk)) / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        await writer.drain()

    async def _pace(self, nbytes: int, started: float) -> None:
        """Hold an upload until *nbytes* could have crossed the link since *started*."""
        rate = self.config.bandwidth
        if rate and nbytes:
            wait = started + nbytes / rate - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)

    # --- the server side ---------------------------------------------------------------------

    async def _to(
        self, shard: int, method: str, target: str, headers: Headers, body: bytes
    ) -> Response:
        self._stats.per_server[shard] += 1
        return await self.backends[shard].exchange(method, target, headers, body)

    async def _broadcast(self, method: str, target: str, headers: Headers, body: bytes) -> Response:
        results = await asyncio.gather(
            *(self._to(i, method, target, headers, body) for i in range(len(self.backends)))
        )
        return next((r for r in results if r.status >= 300), results[0])

    async def _route(
        self, method: str, target: str, parsed: ops.S3Target, headers: Headers, body: bytes
    ) -> Response:
        n = len(self.backends)
        if n == 1:
            return await self._to(0, method, target, headers, body)
        if parsed.is_admin:
            return await self._broadcast(method, target, headers, body)
        if parsed.key:
            shard = ops.shard_of(parsed.bucket, parsed.key, n)
            source = _header(headers, "x-amz-copy-source")
            if source and ops.shard_of(*ops.copy_source(source), n) != shard:
                return await self._copy_across(shard, source, target, headers)
            return await self._to(shard, method, target, headers, body)
        version = ops.listing_version(method, parsed) if parsed.bucket else None
        if version:
            return await self._list(version, parsed, headers)
        if method == "POST" and "delete" in parsed.params:
            return await self._delete_objects(target, parsed, headers, body)
        if parsed.bucket and method in ("PUT", "DELETE"):
            return await self._broadcast(method, target, headers, body)
        return await self._to(0, method, target, headers, body)

    async def _copy_across(
        self, shard: int, source: str, target: str, headers: Headers
    ) -> Response:
        """CopyObject between keys on different processes: GET there, PUT here."""
        if _header(headers, "x-amz-copy-source-range"):
            msg = "the S3 rig cannot copy part ranges between keys on different server processes"
            return Response(501, "Not Implemented", [], ops.error_xml("NotImplemented", msg))
        bucket, key = ops.copy_source(source)
        version = source.partition("?")[2]
        src_target = f"/{quote(bucket)}/{quote(key)}" + (f"?{version}" if version else "")
        keep = ("host", "authorization", "x-amz-date", "x-amz-security-token")
        get_headers = [(k, v) for k, v in headers if k.lower() in keep]
        n = len(self.backends)
        got = await self._to(ops.shard_of(bucket, key, n), "GET", src_target, get_headers, b"")
        if got.status != 200:
            return got
        replace = (_header(headers, "x-amz-metadata-directive") or "").upper() == "REPLACE"
        put_headers = [*get_headers, ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]
        meta_from = headers if replace else got.headers
        put_headers += [
            (k, v)
            for k, v in meta_from
            if k.lower() == "content-type" or k.lower().startswith("x-amz-meta-")
        ]
        put = await self._to(shard, "PUT", target, put_headers, got.body)
        if put.status != 200:
            return put
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        etag = html.escape(put.header("etag") or "", quote=False)
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult xmlns="{ops.S3_NS}">'
            f"<LastModified>{stamp}</LastModified><ETag>{etag}</ETag></CopyObjectResult>"
        ).encode()
        return Response(200, "OK", [("Content-Type", "application/xml")], body)

    async def _list(self, version: int, parsed: ops.S3Target, headers: Headers) -> Response:
        params = parsed.params
        start = ops.list_start(version, params)
        target = ops.shard_list_target(version, parsed.bucket, params, start, ops.max_keys(params))
        results = await asyncio.gather(
            *(self._to(i, "GET", target, headers, b"") for i in range(len(self.backends)))
        )
        failed = next((r for r in results if r.status != 200), None)
        if failed is not None:
            return failed
        url = params.get("encoding-type") == "url"
        pages = [ops.parse_list_page(r.body, url_encoded=url) for r in results]
        body = ops.merge_list_pages(version, parsed.bucket, params, pages)
        return Response(200, "OK", [("Content-Type", "application/xml")], body)

    async def _delete_objects(
        self, target: str, parsed: ops.S3Target, headers: Headers, body: bytes
    ) -> Response:
        parts = ops.split_delete(body, parsed.bucket, len(self.backends))
        kept = [
            (k, v)
            for k, v in headers
            if not k.lower().startswith(("content-md5", "x-amz-checksum", "x-amz-sdk-checksum"))
        ]
        results = await asyncio.gather(
            *(
                self._to(shard, "POST", target, [*kept, ("Content-MD5", ops.content_md5(b))], b)
                for shard, b in parts.items()
            )
        )
        failed = next((r for r in results if r.status != 200), None)
        if failed is not None:
            return failed
        merged = ops.merge_delete_results([r.body for r in results])
        return Response(200, "OK", [("Content-Type", "application/xml")], merged)

    # --- the rig's own endpoints (not counted, no latency) ----------------------------------

    def _admin(self, method: str, target: str, body: bytes) -> Response:
        if target.startswith("/_rig/reset") and method == "POST":
            self._stats = _Stats()
        elif target.startswith("/_rig/config") and method == "POST":
            for name, value in json.loads(body or b"{}").items():
                if name in ("latency", "jitter", "bandwidth"):
                    setattr(self.config, name, None if value is None else float(value))
        payload: dict[str, Any] = {
            "requests": dict(self._stats.requests),
            "per_server": [self._stats.per_server[i] for i in range(len(self.backends))],
            "bytes_served": self._stats.bytes_served,
            "bytes_received": self._stats.bytes_received,
            "config": {
                "latency": self.config.latency,
                "jitter": self.config.jitter,
                "bandwidth": self.config.bandwidth,
            },
        }
        body_out = json.dumps(payload).encode()
        return Response(200, "OK", [("Content-Type", "application/json")], body_out)


async def serve(ports: list[int], config: RigConfig, host: str, port: int) -> asyncio.Server:
    """Start the proxy on *host*:*port* (0: a free port) in the running loop."""
    proxy = RigProxy(ports, config)
    return await asyncio.start_server(proxy.handle, host, port, limit=2**20, backlog=1024)
