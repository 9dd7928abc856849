"""A recording HTTP proxy in front of a real S3 server, for counting requests in tests.

It forwards every request unchanged (Host included, so SigV4 signatures made
for the proxy's address still verify upstream) and records method, key and
status. ``on_response`` lets a test react to traffic (e.g. kill a process
after N completed PUTs) without sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from mastodon_s3_sync.demo.servers import free_port

HOP_BY_HOP = {"transfer-encoding", "connection", "keep-alive", "content-length"}


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    query: str
    status: int

    @property
    def key(self) -> str:
        """The object key of a path-style request (``/bucket/key``)."""
        return unquote(self.path.split("/", 2)[2]) if self.path.count("/") >= 2 else ""


class RecordingProxy:
    def __init__(self, upstream_url: str, on_response: Callable[[Exchange], None] | None = None):
        self.upstream_url = upstream_url.rstrip("/")
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.exchanges: list[Exchange] = []
        self.on_response = on_response
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def completed_puts(self) -> list[str]:
        with self._lock:
            return [e.key for e in self.exchanges if e.method == "PUT" and e.status == 200 and not e.query]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream_url + request.path_qs, headers=headers, data=body or None
        ) as upstream:
            payload = await upstream.read()
            response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            if request.method == "HEAD" and "Content-Length" in upstream.headers:
                response_headers["Content-Length"] = upstream.headers["Content-Length"]  # the object's size
            status = upstream.status
        exchange = Exchange(request.method, request.path, request.query_string, status)
        with self._lock:
            self.exchanges.append(exchange)
        if self.on_response:
            self.on_response(exchange)
        return web.Response(status=status, headers=response_headers, body=payload)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._session = aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent")
        )
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        await self._session.close()

    def __enter__(self) -> RecordingProxy:
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="s3-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the S3 proxy did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
