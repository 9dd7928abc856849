"""A lean HTTP/1.1 client: keep-alive connections on asyncio protocols, parsed by httptools.

A copy of small objects is two requests per object, so the client's cost per
request is most of the engine's CPU. aiohttp's session spends about 0.3 ms of
Python per request on what a copy never uses (cookies, redirects, tracing,
proxies, per-chunk timeouts); this client does only what S3 requests need: one
request at a time per connection, bodies given as bytes, responses read whole
or streamed with back-pressure, an inactivity timeout, and one silent resend
when a reused keep-alive connection turns out to have been closed by the server.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import httptools

Buffer = bytes | bytearray | memoryview

WRITE_CHUNK = 1024 * 1024
"""Large bodies are written in slices of this size, waiting for the socket to drain between them."""
READ_HIGH_WATER = 1024 * 1024
"""A streamed response stops reading from the socket while this much is buffered and unread."""
MOST_UNREAD = READ_HIGH_WATER + 256 * 1024
"""The most body a response nobody reads holds: the high water and the read that crossed it (asyncio and
uvloop read at most 256 KiB at a time)."""
SWEEP_INTERVAL = 1.0
"""How often requests are checked for a silent server (the read timeout's resolution)."""


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """A client context that verifies certificates and host names, against ``ca_bundle`` (a PEM
    file of CA certificates) when given, else the system's CAs."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


class ConnectionLost(ConnectionError):
    """The connection closed or broke before the response was complete."""


class Response:
    """Status and headers (names lower-cased); the body is read whole or streamed."""

    __slots__ = (
        "status",
        "reason",
        "headers",
        "_connection",
        "_head_only",
        "_chunks",
        "_buffered",
        "_complete",
        "_error",
        "_waiter",
        "_wanted",
        "_on_complete",
    )

    def __init__(self, connection: _Connection, head_only: bool):
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self._connection: _Connection | None = connection
        self._head_only = head_only
        self._chunks: deque[Buffer] = deque()
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._wanted = 0
        self._on_complete: Callable[[], None] | None = None

    def when_complete(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the whole response has arrived (now, if it has), read or not."""
        if self._complete:
            callback()
        else:
            self._on_complete = callback

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        return b"".join(await self.read_chunks())

    async def read_chunks(self) -> list[Buffer]:
        """The whole (rest of the) body, in the pieces it arrived in (no copy)."""
        while not self._complete:
            await self._wait(1 << 62)
        chunks = list(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return chunks

    async def read_up_to(self, size: int) -> bytearray:
        """Exactly ``size`` bytes of the body, fewer only at its end, in one buffer filled as they arrive
        (so no more than ``READ_HIGH_WATER`` is held beside it, not a second copy of it)."""
        taken = bytearray(size)
        filled = 0
        with memoryview(taken) as view:
            while filled < size:
                if not self._chunks:
                    if self._complete:
                        break
                    await self._wait(min(size - filled, READ_HIGH_WATER))
                    continue
                chunk = memoryview(self._chunks.popleft())
                count = min(len(chunk), size - filled)
                view[filled : filled + count] = chunk[:count]
                if count < len(chunk):
                    self._chunks.appendleft(chunk[count:])
                self._buffered -= count
                filled += count
        if filled < size:
            del taken[filled:]
        return taken

    async def _wait(self, wanted: int) -> None:
        if self._error is not None:
            raise self._error
        self._wanted = wanted
        self._waiter = asyncio.get_running_loop().create_future()
        if self._connection is not None:
            self._connection.resume_reading()
        try:
            await self._waiter
        finally:
            self._waiter = None
            self._wanted = 0  # while nobody reads, buffer no more than READ_HIGH_WATER
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _feed(self, chunk: Buffer) -> bool:
        """Buffer a body chunk; True when the reader should pause."""
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= self._wanted:
            self._wake()
        return self._buffered >= max(READ_HIGH_WATER, self._wanted)

    def _finish(self, error: BaseException | None = None) -> None:
        if self._complete:
            return
        self._complete = error is None
        self._error = error
        self._wake()
        if self._complete and self._on_complete is not None:
            self._on_complete()

    def release(self) -> None:
        """Give the connection back for reuse if the response was read to its end, else close it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.release(reusable=self._complete)


class _Connection(asyncio.Protocol):
    def __init__(self, pool: ConnectionPool, origin: tuple[str, str, int]):
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = True
        self.response: Response | None = None
        self.received = False
        """Whether any byte of the current response arrived (a resend is safe only before)."""
        self._parser = None
        self._body_left = -1
        """Body bytes still to come, once the headers said how many; -1 while the parser frames the body."""
        self._reading_paused = False
        self._drain: asyncio.Future | None = None
        self._last_activity = 0.0

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        self.received = True
        if self._body_left > 0:
            self._take_body(data)
            return
        if self._parser is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionLost(f"malformed HTTP response: {error}"))
            self.close()

    def _take_body(self, data: bytes) -> None:
        """Body bytes handed over as received, bypassing the parser, which would copy them."""
        if len(data) > self._body_left:  # more than the response holds: the connection is out of step
            data = data[: self._body_left]
            self.keep_alive = False
        self._body_left -= len(data)
        self._deliver(data)
        if self._body_left == 0:
            self.on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        self._fail(ConnectionLost(f"connection closed by the server{f' ({exc})' if exc else ''}"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionLost("connection closed while sending"))

    def pause_writing(self) -> None:
        self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    # httptools callbacks

    def on_status(self, status: bytes) -> None:
        self.response.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.response.headers
        name_text = name.decode("latin-1").lower()
        value_text = value.decode("utf-8", "surrogateescape")
        headers[name_text] = f"{headers[name_text]}, {value_text}" if name_text in headers else value_text

    def on_headers_complete(self) -> None:
        response = self.response
        response.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        if response._head_only:
            self.on_message_complete()
            return
        length = response.headers.get("content-length")
        if length is not None and "transfer-encoding" not in response.headers:
            self._body_left = int(length)
        response._wake()

    def on_body(self, chunk: bytes) -> None:
        if self._body_left > 0:
            self._body_left -= len(chunk)  # the parser's share of the body, in the chunk with the headers
        self._deliver(chunk)

    def _deliver(self, chunk: bytes) -> None:
        if self.response._feed(chunk) and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self._parser = None
        self.response._finish()

    # requests

    async def send(self, head: bytes, body: Sequence[Buffer], size: int, head_only: bool) -> Response:
        """Write one request and wait for the response's status and headers."""
        self.response = response = Response(self, head_only)
        self.received = False
        self._parser = httptools.HttpResponseParser(self)
        self._body_left = -1
        self._last_activity = time.monotonic()
        try:
            if size <= WRITE_CHUNK:
                self.transport.writelines((head, *body))
            else:
                self.transport.write(head)
                for part in body:
                    view = memoryview(part)
                    for start in range(0, len(view), WRITE_CHUNK):
                        self.transport.write(view[start : start + WRITE_CHUNK])
                        if self._drain is not None:
                            await self._drain
                        self._last_activity = time.monotonic()
            while response.status == 0:
                await response._wait(0)
        except BaseException:
            self.close()
            raise
        return response

    def resume_reading(self) -> None:
        if self._reading_paused and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def release(self, reusable: bool) -> None:
        self.response = None
        if reusable and self.keep_alive and not self.closed:
            self.pool.give_back(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    def _fail(self, error: BaseException) -> None:
        if self.response is not None:
            self.response._finish(error)

    def check_silence(self, now: float, timeout: float) -> None:
        """Fail the request in progress if the server has sent nothing for ``timeout`` seconds."""
        if self.response is None or self.response._complete:
            return
        if self._reading_paused and self.response._waiter is None:
            self._last_activity = now  # the reader is busy elsewhere: the silence is ours
        elif now - self._last_activity >= timeout:
            self._fail(TimeoutError(f"no data from the server for {timeout:g} s"))
            self.close()


class ConnectionPool:
    """Idle keep-alive connections per origin (scheme, host, port); open ones are closed by ``close``."""

    def __init__(self, connect_timeout: float = 30.0, read_timeout: float = 120.0):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._ssl: dict[tuple[str, str, int], ssl.SSLContext] = {}
        """TLS context per origin: the system's CAs unless ``trust`` gave a CA bundle for it."""
        self._sweeper: asyncio.TimerHandle | None = None

    def trust(self, origin: tuple[str, str, int], ca_bundle: str | None) -> None:
        """Verify ``origin``'s TLS certificate against ``ca_bundle`` (a PEM file) instead of the
        system's CAs. Certificates and host names are always verified."""
        if ca_bundle:
            self._ssl[origin] = tls_context(ca_bundle)

    async def request(
        self,
        origin: tuple[str, str, int],
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: Buffer | Sequence[Buffer] | None = None,
    ) -> Response:
        """Send a request; the caller reads the body (or not) and must ``release()`` the response.

        ``body`` may come in pieces (as ``Response.read_chunks`` gives it), sent without joining them.
        """
        parts = () if body is None else body if isinstance(body, list | tuple) else (body,)
        size = sum(len(part) for part in parts)
        lines = [f"{method} {target} HTTP/1.1"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if parts or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {size}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        idle = self._idle.get(origin)
        connection = idle.pop() if idle else None
        if connection is not None:
            try:
                return await connection.send(head, parts, size, method == "HEAD")
            except ConnectionLost:
                if connection.received:
                    raise  # the server answered part of it: not safe to send again
        connection = await self._connect(origin)
        return await connection.send(head, parts, size, method == "HEAD")

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == "https":
            tls = self._ssl.get(origin)
            if tls is None:
                tls = self._ssl[origin] = tls_context(None)
        connection = _Connection(self, origin)
        await asyncio.wait_for(
            loop.create_connection(lambda: connection, host, port, ssl=tls, server_hostname=host if tls else None),
            self.connect_timeout,
        )
        self._open.add(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)
        return connection

    def _sweep(self) -> None:
        """One timer for every connection, rather than one per request."""
        now = time.monotonic()
        for connection in list(self._open):
            connection.check_silence(now, self.read_timeout)
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep) if self._open else None

    def give_back(self, connection: _Connection) -> None:
        self._idle.setdefault(connection.origin, []).append(connection)

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self._open):
            connection.close()
        await asyncio.sleep(0)  # let the transports run their close callbacks on this loop
