"""A latency, bandwidth and throttling proxy in front of S3 servers, for benchmarks and tests (loopback only).

A raw TCP relay on asyncio protocols (uvloop when installed): bytes are passed
on as received, never parsed or re-serialised, so the proxy costs little CPU
per request (it reports its own: ``cpu_ms_per_request`` in its statistics).
Host header, path and body reach the server unchanged, so SigV4 signatures
made for the proxy's address still verify upstream.

- **Round trip** (``delay``): each request's first bytes are held ``delay``
  seconds before they are forwarded; the rest of the request follows them.
  A request starts at the first bytes a client sends after the server last
  sent something on that connection: HTTP/1.1 without pipelining (neither the
  engine nor rclone pipelines) alternates requests and responses on a
  keep-alive connection, so this turn-taking finds every request without
  parsing, and each request on a connection pays the delay, not only the
  first. It models a provider's round trip: the answer cannot start before
  the request has gone there and the first bytes back, one RTT after the
  client sent it; the bytes within one request or response are not delayed
  again (a window's worth are in flight at once). An interim
  ``100 Continue`` makes the body that follows it a turn of its own: it
  pays another delay, as it costs another round trip on a real network.
  Not modelled: the round trip of a new connection's handshake (the clients
  keep their connections alive), and slow start.
- **Bandwidth** (``rate``): each connection's throughput is capped at
  ``rate`` bytes/s in each direction: a chunk read is held until the cap
  lets its last byte leave, reading paused meanwhile, so the sender is held
  back by TCP's own flow control, as behind a slow link.
- **Throttling** (``slowdown_rate``): a token bucket per listener (per
  provider), ``slowdown_rate`` requests/s with bursts of ``slowdown_burst``:
  a request that finds it empty is answered ``503 SlowDown`` (after the round
  trip), its body read and dropped, as a throttling provider does. A request
  announcing ``Expect: 100-continue`` or a chunked body is answered the same,
  with ``Connection: close``.

Run as a process (what the benchmarks do): it prints one line per upstream,
``http://127.0.0.1:PORT``, and on SIGTERM or SIGINT writes its statistics
(JSON, per listener, with the process's CPU) to ``--stats``; ``running`` does
that from Python::

    python benchmarks/latency_proxy.py --upstream http://127.0.0.1:9000 --delay-ms 100 --rate-mb-s 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>latency-proxy</RequestId></Error>"
)
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
NO_BODY_WAIT = re.compile(rb"\r\n(expect:[ \t]*100-continue|transfer-encoding:[ \t]*chunked)", re.IGNORECASE)
MAX_HEADER = 64 * 1024
INTERIM = b"HTTP/1.1 100 "


@dataclass(frozen=True)
class Limits:
    delay: float = 0.0
    """Seconds each request's first bytes are held (one round trip)."""
    rate: float = 0.0
    """Bytes/s per connection and direction; 0 for no cap."""
    slowdown_rate: float = 0.0
    """Requests/s a listener lets through before answering 503 SlowDown; 0 for no throttling."""
    slowdown_burst: float = 1.0
    """Requests the bucket holds when full."""


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Stats:
    started: float
    connections: int = 0
    requests: int = 0
    """Requests (turns) seen, refused ones included."""
    refused: int = 0
    continues: int = 0
    """Interim 100 Continue answers (the body after each paid another round trip)."""
    bytes_up: int = 0
    bytes_down: int = 0
    per_second: dict[int, list[int]] = field(default_factory=dict)
    """Second since start -> [requests let through, requests refused]."""

    methods: dict[str, int] = field(default_factory=dict)
    """Requests by method (the request line's first word)."""

    def request(self, now: float, refused: bool, first_bytes: bytes) -> None:
        method = first_bytes[: first_bytes.find(b" ", 0, 8)].decode("ascii", "replace")
        self.methods[method] = self.methods.get(method, 0) + 1
        self.requests += 1
        self.refused += refused
        self.per_second.setdefault(int(now - self.started), [0, 0])[refused] += 1

    def as_dict(self) -> dict:
        return {
            "connections": self.connections,
            "requests": self.requests,
            "refused": self.refused,
            "continues": self.continues,
            "methods": self.methods,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "per_second": [
                self.per_second.get(second, [0, 0]) for second in range(max(self.per_second, default=-1) + 1)
            ],
        }


class Pipe:
    """One direction of a relayed connection: what ``source`` sends goes to ``sink``, held back for the
    round trip and the bandwidth cap (the source's reading paused meanwhile)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: float):
        self.loop, self.rate = loop, rate
        self.source: asyncio.Transport | None = None
        self.sink: asyncio.Transport | None = None
        self.ready = 0.0
        """When the cap lets the next byte leave."""
        self.held = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.sink_full = False
        self.closing = False
        """The source is gone: close the sink once the held bytes are out."""

    def push(self, data: bytes, delay: float = 0.0) -> None:
        if self.timer is not None:  # keep the order: behind what is held (rare: reading is paused)
            self.held += data
            if self.rate:
                self.ready += len(data) / self.rate
                self.timer.cancel()
                self.timer = self.loop.call_at(self.ready, self.release)
            return
        now = self.loop.time()
        leave = now + delay
        if self.rate:
            self.ready = leave = max(self.ready, leave) + len(data) / self.rate
        if leave <= now:
            self.sink.write(data)
            return
        self.held += data
        self.source.pause_reading()
        self.timer = self.loop.call_at(leave, self.release)

    def release(self) -> None:
        self.timer = None
        if not self.sink.is_closing():
            self.sink.write(bytes(self.held))
        self.held.clear()
        if self.closing:
            self.sink.close()
        elif not self.sink_full and not self.source.is_closing():
            self.source.resume_reading()

    def close(self) -> None:
        self.closing = True
        if self.timer is None and self.sink is not None:
            self.sink.close()

    def sink_paused(self, paused: bool) -> None:
        self.sink_full = paused
        if paused:
            self.source.pause_reading()
        elif self.timer is None and not self.source.is_closing():
            self.source.resume_reading()


class Refusal:
    """A refused request being read to its end, to be answered 503 SlowDown."""

    def __init__(self):
        self.head = bytearray()
        self.remaining: int | None = None
        self.close = False
        self.head_request = False

    def feed(self, data: bytes) -> bool:
        """Take the request's next bytes; whether the request has now been read (as far as it will be)."""
        if self.remaining is not None:
            self.remaining -= len(data)
            return self.remaining <= 0
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEADER:
                self.close, self.remaining = True, 0
                return True
            return False
        head = bytes(self.head[: end + 2])
        self.head_request = head.startswith(b"HEAD ")
        if NO_BODY_WAIT.search(head):  # the body would be sent only after an answer we won't give
            self.close, self.remaining = True, 0
            return True
        length = CONTENT_LENGTH.search(head)
        self.remaining = (int(length.group(1)) if length else 0) - (len(self.head) - end - 4)
        self.head = bytearray()
        return self.remaining <= 0

    def answer(self) -> bytes:
        headers = b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n%s\r\n" % (
            len(SLOW_DOWN_BODY),
            b"Connection: close\r\n" if self.close else b"",
        )
        return headers if self.head_request else headers + SLOW_DOWN_BODY


class Listener:
    """One upstream behind one listening port: its limits, its token bucket, its statistics."""

    def __init__(self, loop: asyncio.AbstractEventLoop, upstream: str, limits: Limits):
        parts = urlsplit(upstream)
        self.loop, self.host, self.port, self.limits = loop, parts.hostname, parts.port, limits
        self.stats = Stats(started=loop.time())
        self.bucket = (
            TokenBucket(limits.slowdown_rate, limits.slowdown_burst, loop.time()) if limits.slowdown_rate else None
        )
        self.server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> str:
        self.server = await self.loop.create_server(lambda: ClientSide(self), "127.0.0.1", port)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def admit(self, first_bytes: bytes) -> bool:
        """Count a request; whether the provider takes it (else it is refused with 503 SlowDown)."""
        now = self.loop.time()
        refused = self.bucket is not None and not self.bucket.take(now)
        self.stats.request(now, refused, first_bytes)
        return not refused


class ClientSide(asyncio.Protocol):
    """The client's connection to the proxy; opens its own connection upstream."""

    def __init__(self, listener: Listener):
        self.listener = listener
        self.up = Pipe(listener.loop, listener.limits.rate)
        self.down = Pipe(listener.loop, listener.limits.rate)
        self.awaiting_request = True
        self.continuing = False
        """The server answered 100 Continue: the client's next bytes are the body, another round trip."""
        self.refusal: Refusal | None = None
        self.early = bytearray()
        """What the client sent before the upstream connection was open (uvloop may read before
        ``pause_reading`` from ``connection_made`` takes effect)."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.up.source = self.down.sink = transport
        self.listener.stats.connections += 1
        transport.pause_reading()
        self.listener.loop.create_task(self.connect())

    async def connect(self) -> None:
        try:
            upstream, _ = await self.listener.loop.create_connection(
                lambda: ServerSide(self), self.listener.host, self.listener.port
            )
        except OSError:
            self.up.source.close()
            return
        self.up.sink = self.down.source = upstream
        if self.up.closing:  # the client left while we connected
            upstream.close()
            return
        if self.early:
            early, self.early = bytes(self.early), bytearray()
            self.data_received(early)
        if self.up.timer is None and not self.up.source.is_closing():
            self.up.source.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.up.sink is None:
            self.early += data
            self.up.source.pause_reading()
            return
        self.listener.stats.bytes_up += len(data)
        if self.continuing:
            self.continuing = False
            self.up.push(data, self.listener.limits.delay)
            return
        if self.refusal is None and self.awaiting_request:
            self.awaiting_request = False
            if self.listener.admit(data):
                self.up.push(data, self.listener.limits.delay)
                return
            self.refusal = Refusal()
        if self.refusal is None:
            self.up.push(data)
        elif self.refusal.feed(data):
            self.down.push(self.refusal.answer(), self.listener.limits.delay)
            if self.refusal.close:
                self.down.close()
            self.refusal, self.awaiting_request = None, True

    def pause_writing(self) -> None:
        self.down.sink_paused(True)

    def resume_writing(self) -> None:
        self.down.sink_paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.up.close()


class ServerSide(asyncio.Protocol):
    def __init__(self, client: ClientSide):
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.listener.stats.bytes_down += len(data)
        if data.startswith(INTERIM) and data.find(b"\r\n\r\n") == len(data) - 4:
            self.client.continuing = True  # the body that follows belongs to the same request
            self.client.listener.stats.continues += 1
        else:
            self.client.awaiting_request = True
        self.client.down.push(data)

    def pause_writing(self) -> None:
        self.client.up.sink_paused(True)

    def resume_writing(self) -> None:
        self.client.up.sink_paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.down.close()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def serve(upstreams: list[str], limits: Limits, stats_path: str | None) -> None:
    loop = asyncio.get_running_loop()
    listeners = [Listener(loop, upstream, limits) for upstream in upstreams]
    for listener in listeners:
        print(await listener.start(), flush=True)
    stop = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    cpu = cpu_seconds()  # from here: the relaying's CPU, not the interpreter's start
    await stop.wait()
    spent = cpu_seconds() - cpu
    requests = sum(listener.stats.requests for listener in listeners)
    report = {
        "cpu_seconds": round(spent, 4),
        "cpu_ms_per_request": round(1000 * spent / requests, 4) if requests else None,
        "listeners": [listener.stats.as_dict() for listener in listeners],
    }
    text = json.dumps(report)
    if stats_path:
        with open(stats_path, "w") as output:
            output.write(text)
    else:
        print(text, flush=True)


@dataclass
class RunningProxy:
    endpoints: list[str]
    """The proxy's URL for each upstream, in order."""
    stats: dict | None = None
    """Its statistics, once it has stopped."""


@contextmanager
def running(
    upstreams: list[str],
    *,
    delay_ms: float = 0,
    rate_mb_s: float = 0,
    slowdown_rps: float = 0,
    slowdown_burst: float = 1,
) -> Iterator[RunningProxy]:
    """The proxy in a process of its own (its CPU apart from the client's) in front of ``upstreams``."""
    with tempfile.TemporaryDirectory(prefix="latency-proxy-") as directory:
        stats = Path(directory) / "stats.json"
        command = [sys.executable, __file__, *(f"--upstream={upstream}" for upstream in upstreams)]
        command += [f"--delay-ms={delay_ms}", f"--rate-mb-s={rate_mb_s}", f"--slowdown-rps={slowdown_rps}"]
        command += [f"--slowdown-burst={slowdown_burst}", f"--stats={stats}"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            endpoints = [process.stdout.readline().strip() for _ in upstreams]
            if not all(endpoint.startswith("http://") for endpoint in endpoints):
                raise RuntimeError(f"the latency proxy did not start (exit status {process.poll()})")
            proxy = RunningProxy(endpoints)
            yield proxy
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        proxy.stats = json.loads(stats.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", action="append", required=True, help="an S3 server's URL; one listener each")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="held before each request is forwarded")
    parser.add_argument("--rate-mb-s", type=float, default=0.0, help="per-connection cap, each direction (MB = 10^6 B)")
    parser.add_argument("--slowdown-rps", type=float, default=0.0, help="requests/s per listener before 503 SlowDown")
    parser.add_argument("--slowdown-burst", type=float, default=1.0, help="the token bucket's size")
    parser.add_argument("--stats", help="write the statistics (JSON) here on exit instead of to stdout")
    arguments = parser.parse_args()
    limits = Limits(
        delay=arguments.delay_ms / 1000,
        rate=arguments.rate_mb_s * 1_000_000,
        slowdown_rate=arguments.slowdown_rps,
        slowdown_burst=arguments.slowdown_burst,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the engine
        asyncio.run(serve(arguments.upstream, limits, arguments.stats))
    else:
        uvloop.run(serve(arguments.upstream, limits, arguments.stats))


if __name__ == "__main__":
    sys.exit(main())
