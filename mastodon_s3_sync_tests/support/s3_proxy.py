"""An HTTP proxy in front of a real S3 server, for tests that watch or disturb the traffic.

It forwards every request unchanged (Host and the raw, still-encoded path
included, so SigV4 signatures made for the proxy's address still verify
upstream) and records method, key and status. ``on_response`` lets a test
react to traffic (e.g. kill a process after N completed PUTs) without
sleeping; ``throttle_share`` answers that share of requests with 503 SlowDown
or 429 instead of forwarding them, as rate-limited providers do.

Faults for the integrity tests, each on a deterministic share of the keys
(chosen by a hash of the key) and only on a key's first GET, so a retry
succeeds: ``cut_share`` sends the headers with the full Content-Length, half
the body, then closes the connection (``cut_range``: so is the first GET asking that Range, a part
of a large object); ``flip_share`` flips a byte in the
middle of the body; ``rewrite_etags`` replaces every ETag (headers and XML
bodies) with 32 hex digits that are not the MD5 of anything the server
holds, as KMS-encrypted buckets answer (or, given a predicate, only in the
answers to the exchanges it selects).

Faults for the fault matrix: ``outage(seconds)`` makes the server "die": the
listening socket closes (new connections are refused) and every open connection
is aborted mid-request, then it listens again on the same port ``seconds``
later, with the upstream's objects intact (a restarted rclone would have lost
their metadata, moto all of them). ``error_answer`` answers every request with
that S3 error instead of forwarding it (``RequestTimeTooSkewed``,
``ExpiredToken``...); ``intercept`` picks the requests to answer with an error, one by one (a
503 to the first GetBucketAcl, say). An upstream that cannot be reached is answered with 502.
``hold`` keeps chosen requests from reaching the upstream until a ``threading.Event`` is set
(a PUT in flight while the test changes the database), the other requests going on meanwhile.

Use it as ``async with`` inside a test's event loop, or as ``with`` to run it
on a thread of its own while the code under test runs in another process.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import random
import re
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from yarl import URL

from mastodon_s3_sync.core.providers import ETAG_PROBE_NAME

HOP_BY_HOP = {"transfer-encoding", "connection", "keep-alive", "content-length"}
SLOW_DOWN = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    query: str
    status: int
    content_md5: str | None = None
    """The request's Content-MD5 header, if it had one."""

    @property
    def key(self) -> str:
        """The object key of a path-style request (``/bucket/key``)."""
        return unquote(self.path.split("/", 2)[2]) if self.path.count("/") >= 2 else ""


class S3Proxy:
    def __init__(
        self,
        upstream_url: str,
        *,
        on_response: Callable[[Exchange], None] | None = None,
        throttle_share: float = 0.0,
        seed: int = 0,
        tls: ssl.SSLContext | None = None,
        cut_share: float = 0.0,
        cut_range: str | None = None,
        flip_share: float = 0.0,
        rewrite_etags: bool | Callable[[Exchange], bool] = False,
        error_answer: tuple[int, str, str] | None = None,
        intercept: Callable[[str, str, str], tuple[int, str, str] | None] | None = None,
        hold: Callable[[str, str, str], threading.Event | None] | None = None,
    ):
        self.upstream_url = upstream_url.rstrip("/")
        self.on_response = on_response
        self.throttle_share = throttle_share
        self.random = random.Random(seed)
        self.tls = tls
        self.endpoint_url = ""
        """Set once started."""
        self.exchanges: list[Exchange] = []
        self.throttled = 0
        self.cut_share = cut_share
        self.cut_range = cut_range
        self.flip_share = flip_share
        self.rewrite_etags = rewrite_etags
        self.cut: list[str] = []
        """Keys whose GET body was cut short."""
        self.flipped: list[str] = []
        """Keys whose GET body had a byte flipped."""
        self.error_answer = error_answer
        """(status, S3 error code, message) to answer every request with, or None to forward them."""
        self.intercept = intercept
        """Called with (method, path, query) before forwarding: an error (status, code, message) to
        answer that request with instead, or None to forward it."""
        self.hold = hold
        """Called with (method, path, query) before forwarding: an event to wait for first, or None."""
        self.outages: list[tuple[float, float]] = []
        """(went down, came back) monotonic times of each ``outage``."""
        self.down = threading.Event()
        """Set while the proxy is down."""
        self._port = 0
        self._faulted: set[str] = set()
        self._opaque: dict[str, str] = {}
        self._lock = threading.Lock()

    def completed_puts(self, since: int = 0) -> list[str]:
        """Keys of the objects PUT whole (not ?acl, not parts, not the engine's probe of the destination's
        ETags) that were answered 200, from exchange ``since``."""
        with self._lock:
            return [
                e.key
                for e in self.exchanges[since:]
                if e.method == "PUT" and e.status == 200 and not e.query and ETAG_PROBE_NAME not in e.key
            ]

    async def _throttle(self) -> web.Response:
        self.throttled += 1
        headers = {"Retry-After": "1"} if self.throttled <= 2 else {}
        if self.throttled % 3 == 0:
            return web.Response(status=429, text="Too Many Requests", headers=headers)
        return web.Response(status=503, text=SLOW_DOWN, content_type="application/xml", headers=headers)

    @staticmethod
    def selected(key: str, share: float, salt: str = "") -> bool:
        """Whether ``key`` is in the deterministic ``share`` of keys (by a hash of the key)."""
        return zlib.crc32(f"{salt}{key}".encode()) % 10_000 < share * 10_000

    def opaque_etag(self, etag: str) -> str:
        """32 hex digits, like an MD5, but not the content's (remembered, so that the part ETags a
        CompleteMultipartUpload sends back can be given to the server as it made them)."""
        original = etag.strip('"')
        opaque = hashlib.md5(b"opaque:" + original.encode()).hexdigest()
        self._opaque[opaque] = original
        return opaque

    def _restore(self, body: bytes) -> bytes:
        return re.sub(
            rb"[0-9a-f]{32}", lambda m: self._opaque.get(m.group(0).decode(), m.group(0).decode()).encode(), body
        )

    def _rewrite(self, headers: dict[str, str], payload: bytes) -> bytes:
        for name in list(headers):
            if name.lower() == "etag":
                headers[name] = f'"{self.opaque_etag(headers[name])}"'

        def opaque(match: re.Match) -> bytes:
            etag = self.opaque_etag(match.group(1).decode().replace("&quot;", ""))
            return f"<ETag>&quot;{etag}&quot;</ETag>".encode()

        return re.sub(rb"<ETag>([^<]*)</ETag>", opaque, payload)

    def _fault(self, key: str) -> str | None:
        """The fault for this GET of ``key``: 'cut', 'flip' or None (only a key's first GET is faulted)."""
        with self._lock:
            if key in self._faulted:
                return None
            if self.cut_share and self.selected(key, self.cut_share, "cut"):
                self._faulted.add(key)
                self.cut.append(key)
                return "cut"
            if self.flip_share and self.selected(key, self.flip_share, "flip"):
                self._faulted.add(key)
                self.flipped.append(key)
                return "flip"
        return None

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
        return web.Response(status=status, text=body, content_type="application/xml")

    def outage(self, seconds: float) -> None:
        """Go down now (refuse connections, abort open ones) and come back on the same port after
        ``seconds``. Callable from ``on_response`` or from any thread."""
        self._serving_loop.call_soon_threadsafe(lambda: self._serving_loop.create_task(self._outage(seconds)))

    async def _outage(self, seconds: float) -> None:
        went_down = time.monotonic()
        self.down.set()
        await self._site.stop()
        for handler in self._runner.server.connections:
            if handler.transport is not None:
                handler.transport.abort()
        await asyncio.sleep(seconds)
        self._site = web.TCPSite(self._runner, "127.0.0.1", self._port, ssl_context=self.tls, reuse_address=True)
        await self._site.start()
        self.down.clear()
        self.outages.append((went_down, time.monotonic()))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.random.random() < self.throttle_share:
            return await self._throttle()
        held = self.hold(request.method, request.path, request.query_string) if self.hold else None
        if held is not None:
            await asyncio.to_thread(held.wait)
        answer = self.error_answer
        if answer is None and self.intercept is not None:
            answer = self.intercept(request.method, request.path, request.query_string)
        if answer is not None:
            with self._lock:
                self.exchanges.append(Exchange(request.method, request.path, request.query_string, answer[0]))
            return self._error(*answer)
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
        url = URL(self.upstream_url + request.raw_path, encoded=True)
        body = await request.read()
        if self.rewrite_etags and body and request.method == "POST" and "uploadId" in request.query:
            body = self._restore(body)
        try:
            async with self._session.request(request.method, url, headers=headers, data=body or None) as upstream:
                payload = await upstream.read()
                response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                if request.method == "HEAD" and "Content-Length" in upstream.headers:
                    response_headers["Content-Length"] = upstream.headers["Content-Length"]  # the object's size
                status = upstream.status
        except (aiohttp.ClientError, OSError) as error:  # the upstream is gone: what a gateway answers
            return self._error(502, "BadGateway", f"the upstream S3 server cannot be reached ({type(error).__name__})")
        exchange = Exchange(
            request.method, request.path, request.query_string, status, request.headers.get("Content-MD5")
        )
        with self._lock:
            self.exchanges.append(exchange)
        if self.on_response:
            self.on_response(exchange)
        if self.rewrite_etags is True or (callable(self.rewrite_etags) and self.rewrite_etags(exchange)):
            payload = self._rewrite(response_headers, payload)
        fault = None
        if request.method == "GET" and status == 200 and not request.query_string and len(payload) > 1:
            fault = self._fault(exchange.key)
        if request.method == "GET" and self.cut_range is not None and request.headers.get("Range") == self.cut_range:
            self.cut_range, fault = None, "cut"
            self.cut.append(exchange.key)
        if fault == "flip":
            middle = len(payload) // 2
            payload = payload[:middle] + bytes([payload[middle] ^ 0xFF]) + payload[middle + 1 :]
        if fault == "cut":
            response = web.StreamResponse(status=status, headers=response_headers)
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            request.transport.close()
            return response
        return web.Response(status=status, headers=response_headers, body=payload)

    async def __aenter__(self) -> S3Proxy:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent")
        )
        application = web.Application(client_max_size=1024**3)
        application.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        self._serving_loop = asyncio.get_running_loop()
        self._site = site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self._port = port = site._server.sockets[0].getsockname()[1]
        self.endpoint_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._runner.cleanup()
        await self._session.close()

    def __enter__(self) -> S3Proxy:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._stop = asyncio.Event()
            async with self:
                started.set()
                await self._stop.wait()

        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(serve(),), daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the S3 proxy did not start")
        return self

    def __exit__(self, *exc_info) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate for 127.0.0.1 and its key, as PEM files (for ``tls=``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_file, key_file = directory / "cert.pem", directory / "key.pem"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certificate_file, key_file
