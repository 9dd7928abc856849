"""Copy a batch of objects between two buckets with many requests in flight.

A new object costs one GET and one PUT, the headers taken from the GET (a 404
says the source is missing). What the destination already has is found by
listing it over the batch's key range (a request per thousand keys) instead
of a HEAD per object; the source is listed only over those keys, to compare
sizes: for a fresh copy the GETs say all a source listing would (and rclone's
server hashes every file it lists, for the ETag, so listing costs it about
what a GET does). Objects above the multipart threshold stream through in
fixed-size parts, so memory is bounded by the byte budget, never by object
size. When both buckets share an endpoint and credentials, the copy is
server-side (CopyObject / UploadPartCopy). Knows nothing of Dagster or Mastodon.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from mastodon_s3_sync.transfer.http import ConnectionLost, ConnectionPool, Response
from mastodon_s3_sync.transfer.limiter import EndpointLimiter, LimiterStats
from mastodon_s3_sync.transfer.s3 import Bucket, S3Client, S3Error, copied_headers, sleep_backoff

MiB = 1024 * 1024
MAX_SINGLE_COPY = 5 * 1024 * MiB
"""CopyObject's limit; larger objects are copied server-side part by part (UploadPartCopy)."""
SERVER_SIDE_PART = 512 * MiB
MAX_PARTS = 10_000
NETWORK_ERRORS = (OSError,)
"""Refused, reset or lost connections, DNS and TLS failures and timeouts are all ``OSError``."""

T = TypeVar("T")


@dataclass(frozen=True)
class TransferSettings:
    concurrency: int = 64
    """Objects copied at once."""
    max_in_flight_per_endpoint: int = 64
    requests_per_second: float | None = None
    """Per endpoint; None for no limit beyond the in-flight cap."""
    multipart_threshold: int = 16 * MiB
    part_size: int = 8 * MiB
    memory_budget: int = 256 * MiB
    """Bytes of object data held at once; bounds memory however large the objects are."""
    max_attempts: int = 5
    """Tries per request when it fails (5xx, network); a 4xx other than throttling fails at once."""
    max_throttled_attempts: int = 30
    """Tries per request while the server throttles: slowing down is the answer, not giving up."""
    storage_class: str | None = None
    server_side_copy: bool = True
    """Use CopyObject when both buckets share endpoint and credentials."""
    list_gap: int = 1000
    """Unwanted keys a listing may skip over before it jumps to the next wanted key."""
    progress_interval: float = 15.0


@dataclass(frozen=True, slots=True)
class CopyItem:
    source_key: str
    destination_key: str
    acl: str | None = None
    fallback_source_key: str | None = None
    """Tried when ``source_key`` is missing; then copied to ``fallback_destination_key``."""
    fallback_destination_key: str | None = None


class Outcome(enum.StrEnum):
    COPIED = "copied"
    SKIPPED = "skipped"
    """Already at the destination with the source's size."""
    MISSING = "missing"
    """Neither the key nor its fallback exists at the source."""
    FAILED = "failed"


@dataclass(slots=True)
class ItemResult:
    outcome: Outcome
    source_key: str
    destination_key: str
    size: int = 0
    used_fallback: bool = False
    error: str | None = None


@dataclass
class BatchProgress:
    total: int
    done: int = 0
    copied: int = 0
    skipped: int = 0
    missing: int = 0
    failed: int = 0
    bytes_copied: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def objects_per_second(self) -> float:
        return self.done / max(1e-6, time.monotonic() - self.started)

    def record(self, result: ItemResult) -> None:
        self.done += 1
        setattr(self, result.outcome.value, getattr(self, result.outcome.value) + 1)
        if result.outcome is Outcome.COPIED:
            self.bytes_copied += result.size


@dataclass
class BatchResult:
    results: list[ItemResult]
    """One per item, in the items' order."""
    progress: BatchProgress
    source_limiter: LimiterStats
    destination_limiter: LimiterStats
    requests: Counter[str]
    """Requests sent, by S3 operation."""

    def with_outcome(self, outcome: Outcome) -> list[ItemResult]:
        return [result for result in self.results if result.outcome is outcome]


class _SourceMissing(Exception):
    pass


class BucketUnavailable(Exception):
    """Listing a bucket failed for good (bad credentials, no such bucket, unreachable)."""

    def __init__(self, role: str, bucket: Bucket, error: BaseException):
        super().__init__(f"{role} bucket {bucket.name!r} at {bucket.base_url}: {_describe(error)}")
        self.role = role
        self.bucket = bucket
        self.error = error


class ByteBudget:
    """A semaphore counted in bytes; one reservation may always proceed alone."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[asyncio.Future] = deque()

    @asynccontextmanager
    async def reserve(self, size: int):
        size = min(size, self.capacity)
        while self.used and self.used + size > self.capacity:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.used += size
        try:
            yield
        finally:
            self.used -= size
            while self._waiters:  # every waiter checks again; only large objects ever wait
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)


async def list_sizes(
    client: S3Client, keys: Sequence[str], gap_limit: int = 1000, page_size: int = 1000
) -> dict[str, int]:
    """Sizes of the ``keys`` that exist, by listing the bucket over their key range.

    The listing walks the keys in order under their common prefix and jumps
    ahead (a new start-after) once it has skipped ``gap_limit`` keys nobody
    asked for, so a sparse range costs a page per gap, not the whole range.
    """
    wanted = sorted(set(keys))
    found: dict[str, int] = {}
    index, start_after = 0, ""
    while index < len(wanted):
        prefix = os.path.commonprefix([wanted[index], wanted[-1]])
        start_after, token, gap = max(start_after, wanted[index][:-1]), None, 0
        while True:
            page, token = await client.list_page(prefix, start_after, token, page_size)
            for listed in page:
                start_after = listed.key
                while index < len(wanted) and wanted[index] < listed.key:
                    index += 1
                if index == len(wanted):
                    return found
                if listed.key == wanted[index]:
                    found[listed.key] = listed.size
                    index += 1
                    gap = 0
                else:
                    gap += 1
            if token is None:
                return found
            if gap >= gap_limit:
                break
    return found


class _BatchCopy:
    def __init__(self, source: S3Client, destination: S3Client, settings: TransferSettings, on_progress):
        self.source = source
        self.destination = destination
        self.settings = settings
        self.budget = ByteBudget(settings.memory_budget)
        self.server_side = settings.server_side_copy and source.bucket.same_account_as(destination.bucket)
        self.on_progress = on_progress
        self.source_sizes: dict[str, int] = {}
        self.destination_sizes: dict[str, int] = {}

    async def run(self, items: Sequence[CopyItem]) -> BatchResult:
        """List what the destination has, then copy with ``concurrency`` workers."""
        self.destination_sizes = await self._list("destination", self.destination, [i.destination_key for i in items])
        present = [item.source_key for item in items if item.destination_key in self.destination_sizes]
        self.source_sizes = await self._list("source", self.source, present)
        progress = BatchProgress(total=len(items))
        results: list[ItemResult] = [None] * len(items)  # type: ignore[list-item]
        pending = iter(enumerate(items))
        last_report = time.monotonic()

        async def worker() -> None:
            nonlocal last_report
            for position, item in pending:
                results[position] = result = await self._handle(item)
                progress.record(result)
                if self.on_progress and time.monotonic() - last_report >= self.settings.progress_interval:
                    last_report = time.monotonic()
                    self.on_progress(progress)

        async with asyncio.TaskGroup() as workers:
            for _ in range(min(self.settings.concurrency, len(items))):
                workers.create_task(worker())
        if self.on_progress:
            self.on_progress(progress)
        return BatchResult(
            results,
            progress,
            self.source.limiter.stats,
            self.destination.limiter.stats,
            self.source.requests + self.destination.requests,
        )

    async def _list(self, role: str, client: S3Client, keys: list[str]) -> dict[str, int]:
        """Sizes of the ``keys`` that exist; with no keys, one tiny listing still checks access to the bucket."""
        try:
            if not keys:
                await self._with_retries(lambda: client.list_page("", None, None, max_keys=1))
                return {}
            return await self._with_retries(lambda: list_sizes(client, keys, self.settings.list_gap))
        except (S3Error, *NETWORK_ERRORS) as error:
            raise BucketUnavailable(role, client.bucket, error) from error

    async def _with_retries(self, operation: Callable[[], Awaitable[T]]) -> T:
        failures = throttles = 0
        while True:
            try:
                return await operation()
            except S3Error as error:
                if not error.is_retryable:
                    raise
                if error.is_throttle:
                    throttles += 1
                    if throttles >= self.settings.max_throttled_attempts:
                        raise
                else:
                    failures += 1
                    if failures >= self.settings.max_attempts:
                        raise
            except NETWORK_ERRORS:
                failures += 1
                if failures >= self.settings.max_attempts:
                    raise
            await sleep_backoff(failures + throttles)

    async def _handle(self, item: CopyItem) -> ItemResult:
        try:
            destination_size = self.destination_sizes.get(item.destination_key)
            source_size = self.source_sizes.get(item.source_key)
            if destination_size is not None and source_size is None:
                result = ItemResult(Outcome.MISSING, item.source_key, item.destination_key)
            else:
                result = await self._transfer(item.source_key, item.destination_key, item.acl, source_size)
            if result.outcome is Outcome.MISSING and item.fallback_source_key and item.fallback_destination_key:
                return await self._transfer_fallback(item) or result
            return result
        except (S3Error, *NETWORK_ERRORS) as error:
            return ItemResult(Outcome.FAILED, item.source_key, item.destination_key, error=_describe(error))

    async def _transfer(
        self, source_key: str, destination_key: str, acl: str | None, source_size: int | None, fallback: bool = False
    ) -> ItemResult:
        """Skip when the destination has the source's size (known only when the destination has the key), else copy."""
        result = ItemResult(Outcome.SKIPPED, source_key, destination_key, source_size or 0, fallback)
        if source_size is not None and self.destination_sizes.get(destination_key) == source_size:
            return result
        copy = self._copy_server_side if self.server_side else self._copy
        try:
            result.size = await self._with_retries(lambda: copy(source_key, destination_key, acl))
            result.outcome = Outcome.COPIED
        except _SourceMissing:
            result.outcome = Outcome.MISSING
        return result

    async def _transfer_fallback(self, item: CopyItem) -> ItemResult | None:
        """The item's other key (Mastodon's cache/ variant), looked up with HEADs: it is rarely needed."""
        source_key, destination_key = item.fallback_source_key or "", item.fallback_destination_key or ""
        head = await self._with_retries(lambda: self.source.head(source_key))
        if head is None:
            return None
        existing = await self._with_retries(lambda: self.destination.head(destination_key))
        if existing is not None:
            self.destination_sizes[destination_key] = existing.size
        return await self._transfer(source_key, destination_key, item.acl, head.size, fallback=True)

    def _destination_headers(self, headers: dict[str, str], acl: str | None) -> dict[str, str]:
        if acl:
            headers["x-amz-acl"] = acl
        if self.settings.storage_class:
            headers["x-amz-storage-class"] = self.settings.storage_class
        return headers

    async def _copy(self, source_key: str, destination_key: str, acl: str | None) -> int:
        """GET, then PUT the body with the GET's headers, or stream it through a multipart upload."""
        async with self.source.get(source_key) as response:
            if response is None:
                raise _SourceMissing()
            size = int(response.headers.get("content-length", -1))
            headers = self._destination_headers(copied_headers(response.headers), acl)
            if not 0 <= size <= self.settings.multipart_threshold:
                return await self._upload_parts(response, destination_key, size, headers)
            async with self.budget.reserve(size):
                await self.destination.put(destination_key, await response.read_chunks(), headers)
            return size

    async def _upload_parts(self, response: Response, destination_key: str, size: int, headers: dict[str, str]) -> int:
        part_size = max(self.settings.part_size, -(-size // MAX_PARTS))
        upload_id = await self.destination.create_multipart_upload(destination_key, headers)
        try:
            etags: list[str] = []
            total = 0
            while True:
                async with self.budget.reserve(part_size):
                    part = await response.read_up_to(part_size)
                    if part or not etags:
                        etags.append(
                            await self.destination.upload_part(destination_key, upload_id, len(etags) + 1, part)
                        )
                total += len(part)
                if len(part) < part_size:
                    break
            if size >= 0 and total != size:
                raise ConnectionLost(f"read {total} of {size} bytes")
            await self.destination.complete_multipart_upload(destination_key, upload_id, etags)
            return total
        except BaseException:
            await asyncio.shield(self._abort_quietly(destination_key, upload_id))
            raise

    async def _abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            await self.destination.abort_multipart_upload(key, upload_id)
        except (S3Error, *NETWORK_ERRORS):
            pass  # an unfinished upload is invisible and expires with the bucket's lifecycle rules

    async def _copy_server_side(self, source_key: str, destination_key: str, acl: str | None) -> int:
        """HEAD for the headers, then CopyObject replacing them: some servers (rclone) drop
        Content-Type under the COPY metadata directive, so the headers are always sent."""
        head = await self.source.head(source_key)
        if head is None:
            raise _SourceMissing()
        headers = self._destination_headers(dict(head.headers), acl)
        source = self.source.object_name(source_key)
        if head.size <= MAX_SINGLE_COPY:
            await self.destination.copy_from(destination_key, source, headers)
            return head.size
        part_size = max(self.settings.part_size, SERVER_SIDE_PART, -(-head.size // MAX_PARTS))
        upload_id = await self.destination.create_multipart_upload(destination_key, headers)
        try:
            etags = [
                await self.destination.upload_part_copy(
                    destination_key, upload_id, number, source, start, min(head.size, start + part_size) - 1
                )
                for number, start in enumerate(range(0, head.size, part_size), start=1)
            ]
            await self.destination.complete_multipart_upload(destination_key, upload_id, etags)
            return head.size
        except BaseException:
            await asyncio.shield(self._abort_quietly(destination_key, upload_id))
            raise


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if not isinstance(error, S3Error) else str(error)


@asynccontextmanager
async def open_clients(source: Bucket, destination: Bucket, settings: TransferSettings):
    """Two S3 clients sharing one connection pool; their limiters live as long as they do."""

    def new_limiter() -> EndpointLimiter:
        return EndpointLimiter(settings.max_in_flight_per_endpoint, settings.requests_per_second)

    pool = ConnectionPool()
    source_limiter = new_limiter()
    destination_limiter = source_limiter if source.base_url == destination.base_url else new_limiter()
    try:
        yield S3Client(source, pool, source_limiter), S3Client(destination, pool, destination_limiter)
    finally:
        await pool.close()


async def copy_batch_async(
    source: Bucket,
    destination: Bucket,
    items: Sequence[CopyItem],
    settings: TransferSettings = TransferSettings(),
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> BatchResult:
    async with open_clients(source, destination, settings) as (source_client, destination_client):
        return await _BatchCopy(source_client, destination_client, settings, on_progress).run(items)


def copy_batch(
    source: Bucket,
    destination: Bucket,
    items: Sequence[CopyItem],
    settings: TransferSettings = TransferSettings(),
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> BatchResult:
    """Synchronous entry point: runs the batch on its own (uvloop) event loop."""
    return run_async(copy_batch_async(source, destination, items, settings, on_progress))


def run_async(coroutine):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
