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

Every copy is proven equal to its source before it counts as copied (see
``Check``), at no cost where the servers make it free: the source's GET says
its MD5 (a plain ETag), which is sent as Content-MD5 (servers that check it
refuse a body changed on the way) and compared with the ETag the PUT answers
(when the destination's ETags are MD5s: one probe PUT per batch decides it,
``_probe_destination_etags``). Only where neither side states an MD5 does the
engine hash the body itself. A GET body of the wrong length never reaches a
PUT. Multipart parts carry their Content-MD5, the assembled object's ETag is
checked, and the whole body's MD5, when known before the upload starts, is
stored as ``x-amz-meta-md5chksum`` (rclone's convention) so that ``verify``
can prove it without downloading; a source that states no MD5 at all has its
part layout mirrored, so that the two multipart ETags agree. The skip rule is
"same size and, where both listings give plain MD5 ETags, the same ETag".

ACLs: each item carries the ACL its PUT sends. Given ``fresh_acls``, the caller's source of
current ACLs, no copy starts with an ACL older than ``TransferSettings.acl_max_age``: past it,
the ACLs of the batch's unfinished items are asked for again. A skipped object (already at the
destination) whose ACL must be ``private`` gets one PutObjectAcl, where the destination keeps
ACLs (``probe_acl_support``, once per batch, on the first such object): it may have been put
there public by another tool, or before a change.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.acl_support import AclSupport, probe_acl_support
from mastodon_s3_sync.core.errors import AclProbeFailed
from mastodon_s3_sync.core.transfer.http import Buffer, ConnectionLost, ConnectionPool, Response
from mastodon_s3_sync.core.transfer.limiter import EndpointLimiter, LimiterStats
from mastodon_s3_sync.core.transfer.retries import NETWORK_ERRORS, ContentMismatch, with_retries
from mastodon_s3_sync.core.transfer.s3 import Bucket, ListedObject, PendingUpload, S3Client, S3Error, copied_headers
from mastodon_s3_sync.core.tuning import Tuning

MiB = 1024 * 1024
MAX_SINGLE_COPY = 5 * 1024 * MiB
"""CopyObject's limit; larger objects are copied server-side part by part (UploadPartCopy)."""
SERVER_SIDE_PART = 512 * MiB
MAX_PARTS = 10_000
MAX_MIRRORED_PART = 64 * MiB
"""A source's part layout is mirrored (``_mirrored_part_size``) only with parts up to this size."""
ETAG_PROBE_BODY = b"mastodon-s3-sync: does this bucket answer a PUT with the body's MD5?\n"
HASH_IN_THREAD = 1 * MiB
"""Parts at least this large are hashed on a thread (hashlib releases the GIL), not on the event loop."""

T = TypeVar("T")


@dataclass(frozen=True)
class TransferSettings:
    """The defaults of the knobs that ``SYNC_*`` variables set are ``Tuning``'s, written once there."""

    concurrency: int = Tuning.concurrency
    """Objects copied at once."""
    max_in_flight_per_endpoint: int = Tuning.concurrency
    requests_per_second: float | None = Tuning.requests_per_second
    """Per endpoint; None for no limit beyond the in-flight cap."""
    multipart_threshold: int = Tuning.multipart_threshold_megabytes * MiB
    part_size: int = Tuning.part_size_megabytes * MiB
    memory_budget: int = Tuning.memory_megabytes * MiB
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
    verify_content: bool = True
    """Prove every copy equal to its source (ETags, Content-MD5). Off only to measure what the checks cost."""
    acl_max_age: float = 300.0
    """Seconds an item's ACL may have been read before its copy starts, when the batch has ``fresh_acls``:
    well below ``SYNC_CHANGE_OVERLAP_MINUTES``, for which the ACL refresh re-asserts each change."""

    @classmethod
    def tuned(cls, tuning: Tuning, storage_class: str | None) -> TransferSettings:
        """What the ``SYNC_*`` knobs ask for (the other settings keep their defaults)."""
        return cls(
            concurrency=tuning.concurrency,
            max_in_flight_per_endpoint=tuning.concurrency,
            requests_per_second=tuning.requests_per_second,
            multipart_threshold=tuning.multipart_threshold_megabytes * MiB,
            part_size=tuning.part_size_megabytes * MiB,
            memory_budget=tuning.memory_megabytes * MiB,
            storage_class=storage_class,
        )


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
    """Written and proven equal to the source (``ItemResult.check`` says how)."""
    SKIPPED = "skipped"
    """Already at the destination with the source's size (and ETag, where both state an MD5)."""
    MISSING = "missing"
    """Neither the key nor its fallback exists at the source."""
    FAILED = "failed"


class Check(enum.StrEnum):
    """How a copied object was proven equal to its source, strongest first."""

    ETAG = "etag"
    """The destination's ETag is the source's MD5 (end to end, nothing hashed here)."""
    MD5 = "md5"
    """The body hashed here is the source's MD5 and went out with it as Content-MD5 (the destination's
    ETags are not MD5s); for multipart uploads, also every part's Content-MD5 and ETag."""
    MULTIPART_ETAG = "multipart_etag"
    """Source and destination have the same multipart ETag (same part layout, every part's MD5)."""
    SENT_MD5 = "sent_md5"
    """The source states no MD5 (multipart ETag of another layout, encrypted): its body is checked by
    length, and the destination by the Content-MD5 of what was sent (and its ETag, where it reports one)."""
    SERVER_SIDE_ETAG = "server_side_etag"
    """Copied server-side; the new object's ETag is the source's."""
    SERVER_SIDE = "server_side"
    """Copied server-side; the ETags do not compare (e.g. multipart source): the server's word only."""
    SIZE = "size"
    """Length only: ``TransferSettings.verify_content`` is off."""


class BodyLengthMismatch(ConnectionLost):
    """A GET body shorter or longer than its Content-Length: a failed attempt, retried."""


@dataclass(slots=True)
class ItemResult:
    outcome: Outcome
    source_key: str
    destination_key: str
    size: int = 0
    used_fallback: bool = False
    error: str | None = None
    check: Check | None = None
    """For a copied object, how it was proven equal to its source."""
    rejected_attempts: int = 0
    """Attempts whose bytes failed a check (wrong length, MD5 or ETag mismatch, BadDigest) and were tried again."""
    recopied_wrong_content: bool = False
    """The destination had the key with the source's size but another content (ETags), so it was copied again."""
    acl_fixed: bool = False
    """Skipped, and made ``private`` with a PutObjectAcl (it may have been already)."""


FreshAcls = Callable[[Sequence[CopyItem]], Sequence[str | None]]
"""The current ACL of each item, read again (called on a thread; may block)."""


@dataclass
class BatchProgress:
    total: int
    done: int = 0
    copied: int = 0
    skipped: int = 0
    missing: int = 0
    failed: int = 0
    bytes_copied: int = 0
    recopied_wrong_content: int = 0
    """Copied again because the destination's object had the right size but another content."""
    rejected_attempts: int = 0
    """Attempts whose bytes failed a content check (and were tried again)."""
    checks: Counter[str] = field(default_factory=Counter)
    """Copied objects by how they were proven (``Check``)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def objects_per_second(self) -> float:
        return self.done / max(1e-6, time.monotonic() - self.started)

    def record(self, result: ItemResult) -> None:
        self.done += 1
        setattr(self, result.outcome.value, getattr(self, result.outcome.value) + 1)
        self.rejected_attempts += result.rejected_attempts
        if result.outcome is Outcome.COPIED:
            self.bytes_copied += result.size
            self.recopied_wrong_content += result.recopied_wrong_content
            if result.check is not None:
                self.checks[result.check.value] += 1


@dataclass
class BatchResult:
    results: list[ItemResult]
    """One per item, in the items' order."""
    progress: BatchProgress
    source_limiter: LimiterStats
    destination_limiter: LimiterStats
    requests: Counter[str]
    """Requests sent, by S3 operation."""


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


async def list_fallbacks(
    source: S3Client, destination: S3Client, pairs: Sequence[tuple[str, str]], gap_limit: int = 1000
) -> dict[tuple[str, str], tuple[ListedObject, ListedObject | None]]:
    """For each (source key, destination key) pair whose source exists: its listing and the destination's
    (None when absent). Two listings over the pairs' keys, not a HEAD each: the lookup of Mastodon's other
    ``cache/`` variant (``MediaObject.fallback_key``) for the copy and for ``verify`` alike."""
    if not pairs:
        return {}
    listed_sources = await list_objects(source, [source_key for source_key, _ in pairs], gap_limit)
    found = [(source_key, destination_key) for source_key, destination_key in pairs if source_key in listed_sources]
    listed_destinations = await list_objects(destination, [destination_key for _, destination_key in found], gap_limit)
    return {
        (source_key, destination_key): (listed_sources[source_key], listed_destinations.get(destination_key))
        for source_key, destination_key in found
    }


async def list_objects(
    client: S3Client, keys: Sequence[str], gap_limit: int = 1000, page_size: int = 1000
) -> dict[str, ListedObject]:
    """Size and ETag of the ``keys`` that exist, by listing the bucket over their key range.

    The listing walks the keys in order under their common prefix and jumps
    ahead (a new start-after) once it has skipped ``gap_limit`` keys nobody
    asked for, so a sparse range costs a page per gap, not the whole range.
    """
    wanted = sorted(set(keys))
    found: dict[str, ListedObject] = {}
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
                    found[listed.key] = listed
                    index += 1
                    gap = 0
                else:
                    gap += 1
            if token is None:
                return found
            if gap >= gap_limit:
                break
    return found


def etags_comparable(pairs: Sequence[tuple[ListedObject, ListedObject]]) -> bool:
    """Whether two listings' plain-MD5 ETags can be compared: true when any same-size pair agrees.

    When none of them agrees, one side's ETags are probably not MD5s (KMS-encrypted buckets);
    callers then decide from what the destination's PUTs answer, or download (verify --deep).
    """
    return any(
        a.size == b.size and (md5 := providers.plain_md5(a.etag)) is not None and md5 == providers.plain_md5(b.etag)
        for a, b in pairs
    )


def different_content(source: ListedObject | None, destination: ListedObject | None) -> bool:
    """Same size, but both ETags plain MD5s, and different ones."""
    if source is None or destination is None or source.size != destination.size:
        return False
    source_md5, destination_md5 = providers.plain_md5(source.etag), providers.plain_md5(destination.etag)
    return source_md5 is not None and destination_md5 is not None and source_md5 != destination_md5


def _content_md5(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _md5(chunks: Sequence[Buffer]) -> bytes:
    digest = hashlib.md5()
    for chunk in chunks:
        digest.update(chunk)
    return digest.digest()


def _md5_part(part: Buffer, whole) -> bytes:
    """The part's MD5, adding the part to ``whole`` (a running MD5) too when given."""
    if whole is not None:
        whole.update(part)
    return hashlib.md5(part).digest()


class _BatchCopy:
    def __init__(
        self,
        source: S3Client,
        destination: S3Client,
        settings: TransferSettings,
        on_progress,
        fresh_acls: FreshAcls | None = None,
    ):
        self.source = source
        self.destination = destination
        self.settings = settings
        self.budget = ByteBudget(settings.memory_budget)
        self.server_side = settings.server_side_copy and source.bucket.same_account_as(destination.bucket)
        self.on_progress = on_progress
        self.verify = settings.verify_content
        self.source_listed: dict[str, ListedObject] = {}
        self.destination_listed: dict[str, ListedObject] = {}
        self.listed_etags_comparable = False
        self.destination_md5_etags: bool | None = None
        """Whether the destination's ETags are its objects' MD5s: decided by ``_probe_destination_etags``
        before the batch's first upload (None until then)."""
        self._probe_lock = asyncio.Lock()
        self.items: Sequence[CopyItem] = ()
        self.results: list[ItemResult | None] = []
        self.fresh_acls = fresh_acls
        self.acls: dict[str, str | None] = {}
        """Destination key -> its ACL as last read by ``fresh_acls``, when newer than the item's."""
        self.acls_read_at = time.monotonic()
        """When the items' ACLs were read: the caller reads them just before the batch."""
        self._acl_lock = asyncio.Lock()
        self._acl_support: asyncio.Future[AclSupport] | None = None

    async def run(self, items: Sequence[CopyItem]) -> BatchResult:
        """List what the destination has, then copy with ``concurrency`` workers."""
        self.destination_listed = await self._list("destination", self.destination, [i.destination_key for i in items])
        present = [item.source_key for item in items if item.destination_key in self.destination_listed]
        self.source_listed = await self._list("source", self.source, present)
        self.listed_etags_comparable = etags_comparable(
            [
                (self.source_listed[item.source_key], self.destination_listed[item.destination_key])
                for item in items
                if item.source_key in self.source_listed and item.destination_key in self.destination_listed
            ]
        )
        progress = BatchProgress(total=len(items))
        self.items = items
        self.results = results = [None] * len(items)
        last_report = time.monotonic()
        fallbacks: dict[int, ItemResult] = {}
        """Items missing at the source that have a fallback key, by position: looked up together, and
        unfinished until then."""

        def record(position: int, result: ItemResult) -> None:
            nonlocal last_report
            results[position] = result
            progress.record(result)
            if self.on_progress and time.monotonic() - last_report >= self.settings.progress_interval:
                last_report = time.monotonic()
                self.on_progress(progress)

        async def first_pass(position: int) -> None:
            item = items[position]
            result = await self._handle(item)
            if result.outcome is Outcome.MISSING and item.fallback_source_key and item.fallback_destination_key:
                fallbacks[position] = result
            else:
                record(position, result)

        await self._in_workers(first_pass, range(len(items)))
        if fallbacks:
            found = await self._lookup_fallbacks([items[position] for position in fallbacks])

            async def fallback_pass(position: int) -> None:
                record(position, await self._transfer_fallback(items[position], fallbacks[position], found))

            await self._in_workers(fallback_pass, list(fallbacks))
        if self.on_progress:
            self.on_progress(progress)
        return BatchResult(
            results,  # type: ignore[arg-type]
            progress,
            self.source.limiter.stats,
            self.destination.limiter.stats,
            self.source.requests + self.destination.requests,
        )

    async def _in_workers(self, handle: Callable[[int], Awaitable[None]], positions: Sequence[int]) -> None:
        """``handle`` every position, ``concurrency`` at a time."""
        pending = iter(positions)

        async def worker() -> None:
            for position in pending:
                await handle(position)

        async with asyncio.TaskGroup() as workers:
            for _ in range(min(self.settings.concurrency, len(positions))):
                workers.create_task(worker())

    async def _lookup_fallbacks(
        self, items: Sequence[CopyItem]
    ) -> dict[tuple[str, str], tuple[ListedObject, ListedObject | None]] | BaseException:
        """The fallback keys that exist (``list_fallbacks``), or the error that kept them from being listed."""
        pairs = [(item.fallback_source_key or "", item.fallback_destination_key or "") for item in items]
        try:
            return await self._with_retries(
                lambda: list_fallbacks(self.source, self.destination, pairs, self.settings.list_gap)
            )
        except (S3Error, *NETWORK_ERRORS) as error:
            return error

    async def _list(self, role: str, client: S3Client, keys: list[str]) -> dict[str, ListedObject]:
        """The ``keys`` that exist; with no keys, one tiny listing still checks access to the bucket."""
        try:
            if not keys:
                await self._with_retries(lambda: client.list_page("", None, None, max_keys=1))
                return {}
            return await self._with_retries(lambda: list_objects(client, keys, self.settings.list_gap))
        except (S3Error, *NETWORK_ERRORS) as error:
            raise BucketUnavailable(role, client.bucket, error) from error

    async def _with_retries(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(operation, self.settings.max_attempts, self.settings.max_throttled_attempts)

    async def _handle(self, item: CopyItem) -> ItemResult:
        result = ItemResult(Outcome.FAILED, item.source_key, item.destination_key)
        try:
            source = self.source_listed.get(item.source_key)
            if item.destination_key in self.destination_listed and source is None:
                result.outcome = Outcome.MISSING
            else:
                await self._transfer(result, item, source)
            return result
        except (S3Error, ContentMismatch, AclProbeFailed, *NETWORK_ERRORS) as error:
            result.outcome, result.error = Outcome.FAILED, _describe(error)
            return result

    async def _acl(self, item: CopyItem) -> str | None:
        """The item's ACL, read again (for every unfinished item) once older than ``acl_max_age``."""
        max_age = self.settings.acl_max_age
        if self.fresh_acls is not None and time.monotonic() - self.acls_read_at > max_age:
            async with self._acl_lock:
                if time.monotonic() - self.acls_read_at > max_age:  # not just read by another worker
                    unfinished = [i for i, done in zip(self.items, self.results) if done is None]
                    read_at = time.monotonic()
                    acls = await asyncio.to_thread(self.fresh_acls, unfinished)
                    self.acls.update((i.destination_key, acl) for i, acl in zip(unfinished, acls))
                    self.acls_read_at = read_at
        return self.acls.get(item.destination_key, item.acl)

    async def _make_private(self, result: ItemResult, item: CopyItem) -> None:
        """A skipped object that must be private is made so (one PutObjectAcl), where the destination
        keeps ACLs: never on one that does not (rclone's server would take it for an empty PutObject)."""
        if await self._acl(item) != providers.PRIVATE:
            return
        if self._acl_support is None:
            self._acl_support = asyncio.ensure_future(
                probe_acl_support(self.destination, self.settings.max_attempts, self.settings.max_throttled_attempts)
            )
        if not (await self._acl_support).keeps_acls:
            return
        key = result.destination_key
        result.acl_fixed = await self._with_retries(lambda: self.destination.put_acl(key, providers.PRIVATE))

    def _is_wrong_content(self, source: ListedObject, destination: ListedObject) -> bool:
        """Same size, other content by the listings' ETags, if those are comparable: in this batch's listings
        some same-size pair agrees, or the destination's PUTs have shown its ETags to be MD5s."""
        if not self.verify or not different_content(source, destination):
            return False
        return self.listed_etags_comparable or self.destination_md5_etags is not False

    async def _transfer(self, result: ItemResult, item: CopyItem, source: ListedObject | None) -> None:
        """Skip when the destination has the source's size (known only when the destination has the key)
        and no other content, else copy, counting the attempts whose bytes failed a check."""
        source_key, destination_key = result.source_key, result.destination_key
        destination = self.destination_listed.get(destination_key)
        if source is not None and destination is not None and destination.size == source.size:
            if not self._is_wrong_content(source, destination):
                result.outcome, result.size = Outcome.SKIPPED, source.size
                await self._make_private(result, item)
                return
            # Reported as wrong content only when the ETags are known to compare (else: copied to find out).
            result.recopied_wrong_content = self.listed_etags_comparable or bool(self.destination_md5_etags)
        copy = self._copy_server_side if self.server_side else self._copy

        async def attempt() -> tuple[int, Check]:
            try:
                return await copy(source_key, destination_key, await self._acl(item))
            except (ContentMismatch, BodyLengthMismatch):
                result.rejected_attempts += 1
                raise
            except S3Error as error:
                if error.code == "BadDigest":
                    result.rejected_attempts += 1
                raise

        try:
            result.size, result.check = await self._with_retries(attempt)
            result.outcome = Outcome.COPIED
        except _SourceMissing:
            result.outcome = Outcome.MISSING

    async def _transfer_fallback(self, item: CopyItem, missing: ItemResult, found) -> ItemResult:
        """The item's other key (Mastodon's cache/ variant), found by ``_lookup_fallbacks``; ``missing``
        when it is not there either."""
        source_key, destination_key = item.fallback_source_key or "", item.fallback_destination_key or ""
        if isinstance(found, BaseException):
            missing.outcome, missing.error = Outcome.FAILED, f"looking up {source_key}: {_describe(found)}"
            return missing
        if (source_key, destination_key) not in found:
            return missing
        source, existing = found[source_key, destination_key]
        if existing is not None:
            self.destination_listed[destination_key] = existing
        result = ItemResult(Outcome.FAILED, source_key, destination_key, used_fallback=True)
        result.rejected_attempts = missing.rejected_attempts
        try:
            await self._transfer(result, item, source)
        except (S3Error, ContentMismatch, AclProbeFailed, *NETWORK_ERRORS) as error:
            result.outcome, result.error = Outcome.FAILED, _describe(error)
        return result

    def _destination_headers(self, headers: dict[str, str], acl: str | None) -> dict[str, str]:
        if acl:
            headers["x-amz-acl"] = acl
        if self.settings.storage_class:
            headers["x-amz-storage-class"] = self.settings.storage_class
        return headers

    async def _copy(self, source_key: str, destination_key: str, acl: str | None) -> tuple[int, Check]:
        """GET, then PUT the body with the GET's headers, or stream it through a multipart upload."""
        async with self.source.get(source_key) as response:
            if response is None:
                raise _SourceMissing()
            size = int(response.headers.get("content-length", -1))
            headers = self._destination_headers(copied_headers(response.headers), acl)
            source_etag = response.headers.get("etag")
            source_md5 = providers.stated_md5(source_etag, response.headers)
            if not 0 <= size <= self.settings.multipart_threshold:
                return await self._upload_parts(
                    response, source_key, destination_key, size, headers, source_etag, source_md5
                )
            async with self.budget.reserve(size):
                try:
                    chunks = await response.read_chunks()
                except ConnectionLost as error:
                    raise BodyLengthMismatch(f"GET {source_key}: body cut short ({error})") from error
                received = sum(len(chunk) for chunk in chunks)
                if received != size:
                    raise BodyLengthMismatch(f"GET {source_key}: {received} bytes, Content-Length {size}")
                if not self.verify:
                    await self.destination.put(destination_key, chunks, headers)
                    return size, Check.SIZE
                return size, await self._put_checked(destination_key, chunks, headers, source_md5)

    async def _put_checked(
        self, key: str, chunks: list[Buffer], headers: dict[str, str], source_md5: str | None
    ) -> Check:
        """PUT a body whose source MD5 is ``source_md5`` (if stated) and prove what the destination stored.

        Free when the source states its MD5 and the destination's ETags are MD5s: the source's MD5
        goes out as Content-MD5 (a server that checks it refuses a changed body: BadDigest) and the
        PUT's ETag must be it (for servers that don't check). Otherwise the body is hashed here first
        (a mismatch with the source's MD5 never reaches the PUT) and sent with its Content-MD5; where
        the destination's ETags are not MD5s, that MD5 is stored as ``md5chksum`` too, for ``verify``.
        """
        md5_etags = await self._destination_md5_etags(key)
        if source_md5 is not None and md5_etags:
            headers["Content-MD5"] = _content_md5(bytes.fromhex(source_md5))
            etag = providers.plain_md5(await self.destination.put(key, chunks, headers))
            if etag != source_md5:
                raise ContentMismatch(f"PUT {key}: the destination's ETag {etag} is not the source's MD5 {source_md5}")
            return Check.ETAG
        digest = _md5(chunks)
        md5 = digest.hex()
        if source_md5 is not None and md5 != source_md5:
            raise ContentMismatch(f"GET body of {key}: MD5 {md5}, the source's ETag says {source_md5}")
        headers["Content-MD5"] = _content_md5(digest)
        if not md5_etags:
            headers[providers.MD5_METADATA] = providers.md5_metadata_value(md5)
        etag = providers.plain_md5(await self.destination.put(key, chunks, headers))
        self._check_answered_etag(key, etag, md5)
        return Check.MD5 if source_md5 is not None else Check.SENT_MD5

    def _check_answered_etag(self, key: str, etag: str | None, sent_md5: str) -> None:
        """On a destination whose ETags are MD5s, an ETag other than the MD5 sent fails the attempt."""
        if self.destination_md5_etags and etag != sent_md5:
            raise ContentMismatch(f"PUT {key}: the destination's ETag {etag} is not the MD5 sent, {sent_md5}")

    async def _destination_md5_etags(self, near_key: str) -> bool:
        """Whether the destination's ETags are MD5s, probed once per batch (retried like any request;
        a probe that fails for good fails the copies that needed it)."""
        if self.destination_md5_etags is None:
            async with self._probe_lock:
                if self.destination_md5_etags is None:
                    self.destination_md5_etags = await self._with_retries(
                        lambda: self._probe_destination_etags(near_key)
                    )
        return self.destination_md5_etags

    async def _probe_destination_etags(self, near_key: str) -> bool:
        """PUT a small known body with its Content-MD5 under a temporary key beside ``near_key`` (so a
        policy that allows the batch's writes allows it), compare the ETag answered, delete it again.
        A definite answer, unlike mismatches, which corrupted answers can cause too."""
        directory = near_key.rpartition("/")[0]
        key = f"{directory}/" if directory else ""
        key += f"{providers.ETAG_PROBE_NAME}{uuid.uuid4().hex}"
        digest = hashlib.md5(ETAG_PROBE_BODY).digest()
        try:
            etag = await self.destination.put(
                key, [ETAG_PROBE_BODY], {"Content-MD5": _content_md5(digest), "Content-Type": "text/plain"}
            )
        finally:
            try:
                await self._with_retries(lambda: self.destination.delete(key))
            except (S3Error, *NETWORK_ERRORS):
                pass  # credentials without DeleteObject: a few bytes left behind, the answer stands
        return providers.plain_md5(etag) == digest.hex()

    async def _hash_part(self, part: Buffer, whole) -> bytes:
        if len(part) >= HASH_IN_THREAD:
            return await asyncio.to_thread(_md5_part, part, whole)
        return _md5_part(part, whole)

    async def _upload_parts(
        self,
        response: Response,
        source_key: str,
        destination_key: str,
        size: int,
        headers: dict[str, str],
        source_etag: str | None,
        source_md5: str | None,
    ) -> tuple[int, Check]:
        """Stream the body through a multipart upload; each part goes with its Content-MD5 and its ETag
        is checked, the whole body's MD5 is checked against the source's before the upload is completed,
        and the assembled object's ETag after. The source's MD5 is stored as ``md5chksum``; a source that
        states none has its part layout mirrored, so that the two multipart ETags prove the copy."""
        part_size = max(self.settings.part_size, -(-size // MAX_PARTS))
        if self.verify:
            md5_etags = await self._destination_md5_etags(destination_key)
            if source_md5 is not None:
                headers[providers.MD5_METADATA] = providers.md5_metadata_value(source_md5)
            elif md5_etags:
                part_size = await self._mirrored_part_size(source_key, size, source_etag) or part_size
        whole = hashlib.md5() if self.verify and source_md5 is not None else None
        upload_id = await self.destination.create_multipart_upload(destination_key, headers)
        try:
            etags: list[str] = []
            digests: list[bytes] = []
            total = 0
            while True:
                async with self.budget.reserve(part_size):
                    try:
                        part = await response.read_up_to(part_size)
                    except ConnectionLost as error:
                        raise BodyLengthMismatch(f"GET {destination_key}: body cut short ({error})") from error
                    if part or not etags:
                        number = len(etags) + 1
                        part_headers = None
                        if self.verify:
                            digest = await self._hash_part(part, whole)
                            digests.append(digest)
                            part_headers = {"Content-MD5": _content_md5(digest)}
                        etag = await self.destination.upload_part(
                            destination_key, upload_id, number, part, part_headers
                        )
                        if self.verify:
                            self._check_answered_etag(
                                f"{destination_key} part {number}", providers.plain_md5(etag), digest.hex()
                            )
                        etags.append(etag)
                total += len(part)
                if len(part) < part_size:
                    break
            if size >= 0 and total != size:
                raise BodyLengthMismatch(f"GET {destination_key}: read {total} of {size} bytes")
            if not self.verify:
                await self.destination.complete_multipart_upload(destination_key, upload_id, etags)
                return total, Check.SIZE
            check = Check.SENT_MD5
            if whole is not None:
                if whole.hexdigest() != source_md5:
                    raise ContentMismatch(f"GET body of {destination_key}: MD5 {whole.hexdigest()}, not {source_md5}")
                check = Check.MD5
            expected = f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"
            if providers.normalized_etag(source_etag) == expected:
                check = Check.MULTIPART_ETAG  # same layout, and every part's MD5 the source's
            final = await self.destination.complete_multipart_upload(destination_key, upload_id, etags)
        except BaseException:
            await asyncio.shield(self._abort_quietly(destination_key, upload_id))
            raise
        final_etag = providers.normalized_etag(final)
        if self.destination_md5_etags and final_etag is not None:
            # A multipart ETag must be the parts' (AWS, moto, rclone); an MD5 (some servers hash the
            # assembled object) must be the source's, when the source states it.
            if providers.multipart_parts(final_etag) is not None and final_etag != expected:
                raise ContentMismatch(f"{destination_key}: assembled as {final_etag}, the parts sent make {expected}")
            md5 = providers.plain_md5(final_etag)
            if md5 is not None and whole is not None and md5 != source_md5:
                raise ContentMismatch(f"{destination_key}: assembled with MD5 {md5}, the source's is {source_md5}")
        return total, check

    async def _mirrored_part_size(self, source_key: str, size: int, source_etag: str | None) -> int | None:
        """The source's part size, when its ETag is a multipart one and a HEAD of part 1 says the layout
        (AWS, moto, MinIO; rclone does not say): parts of that size make the source's ETag again."""
        parts = providers.multipart_parts(source_etag)
        if parts is None:
            return None
        layout = await self._with_retries(lambda: self.source.head_first_part(source_key))
        if layout is None:
            return None
        first, count = layout
        if count != parts or not 0 < first <= min(MAX_MIRRORED_PART, self.settings.memory_budget):
            return None
        return first if (count - 1) * first < size <= count * first else None

    async def _abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            await self.destination.abort_multipart_upload(key, upload_id)
        except (S3Error, *NETWORK_ERRORS):
            pass  # an unfinished upload is invisible and expires with the bucket's lifecycle rules

    async def _copy_server_side(self, source_key: str, destination_key: str, acl: str | None) -> tuple[int, Check]:
        """HEAD for the headers, then CopyObject replacing them: some servers (rclone) drop
        Content-Type under the COPY metadata directive, so the headers are always sent.
        The new object's ETag is compared with the source's (from the HEAD)."""
        head = await self.source.head(source_key)
        if head is None:
            raise _SourceMissing()
        headers = self._destination_headers(dict(head.headers), acl)
        source = self.source.object_name(source_key)
        source_etag = providers.normalized_etag(head.etag)
        if head.size <= MAX_SINGLE_COPY:
            etag = providers.normalized_etag(await self.destination.copy_from(destination_key, source, headers))
            if not self.verify:
                return head.size, Check.SIZE
            if etag is not None and etag == source_etag:
                return head.size, Check.SERVER_SIDE_ETAG
            if head.content_md5 is not None and providers.plain_md5(etag) is not None:
                raise ContentMismatch(f"CopyObject {destination_key}: ETag {etag}, the source's is {source_etag}")
            return head.size, Check.SERVER_SIDE
        part_size = max(self.settings.part_size, SERVER_SIDE_PART, -(-head.size // MAX_PARTS))
        if head.stated_md5 is not None:
            headers[providers.MD5_METADATA] = providers.md5_metadata_value(head.stated_md5)
        upload_id = await self.destination.create_multipart_upload(destination_key, headers)
        try:
            etags = [
                await self.destination.upload_part_copy(
                    destination_key, upload_id, number, source, start, min(head.size, start + part_size) - 1
                )
                for number, start in enumerate(range(0, head.size, part_size), start=1)
            ]
            final = providers.normalized_etag(
                await self.destination.complete_multipart_upload(destination_key, upload_id, etags)
            )
        except BaseException:
            await asyncio.shield(self._abort_quietly(destination_key, upload_id))
            raise
        if not self.verify:
            return head.size, Check.SIZE
        if final is not None and final == source_etag:
            return head.size, Check.SERVER_SIDE_ETAG  # same layout: the source's multipart ETag
        return head.size, Check.SERVER_SIDE  # the layouts differ (or KMS): nothing more to compare


# Unfinished multipart uploads -----------------------------------------------------------------


async def list_stale_uploads_async(
    client: S3Client, prefix: str = "", older_than: timedelta = timedelta(days=1), now: datetime | None = None
) -> list[PendingUpload]:
    """The bucket's unfinished multipart uploads under ``prefix`` started more than ``older_than`` ago
    (ListMultipartUploads, every page). An upload whose start the server does not say is left out."""
    cutoff = (now or datetime.now(UTC)) - older_than
    stale: list[PendingUpload] = []
    markers: tuple[str, str] | None = None
    while True:
        key_marker, upload_marker = markers or (None, None)
        try:
            uploads, markers = await with_retries(
                lambda key_marker=key_marker, upload_marker=upload_marker: client.list_multipart_uploads(
                    prefix, key_marker, upload_marker
                ),
                5,
                30,
            )
        except S3Error as error:
            if providers.no_uploads(error.status, error.code):
                return stale
            raise
        stale.extend(upload for upload in uploads if upload.initiated is not None and upload.initiated <= cutoff)
        if markers is None:
            return stale


async def abort_uploads_async(client: S3Client, uploads: Sequence[PendingUpload], concurrency: int = 16) -> int:
    """Abort ``uploads`` (AbortMultipartUpload; one already gone counts as aborted); how many were aborted."""
    gate = asyncio.Semaphore(concurrency)

    async def abort(upload: PendingUpload) -> None:
        async with gate:
            await with_retries(lambda: client.abort_multipart_upload(upload.key, upload.upload_id), 5, 30)

    await asyncio.gather(*(abort(upload) for upload in uploads))
    return len(uploads)


def list_stale_uploads(
    bucket: Bucket,
    prefix: str = "",
    older_than: timedelta = timedelta(days=1),
    settings: TransferSettings = TransferSettings(),
) -> list[PendingUpload]:
    """Synchronous ``list_stale_uploads_async`` on its own event loop."""

    async def run() -> list[PendingUpload]:
        async with open_clients(bucket, bucket, settings) as (client, _):
            return await list_stale_uploads_async(client, prefix, older_than)

    return run_async(run())


def abort_uploads(
    bucket: Bucket, uploads: Sequence[PendingUpload], settings: TransferSettings = TransferSettings()
) -> int:
    """Synchronous ``abort_uploads_async`` on its own event loop."""

    async def run() -> int:
        async with open_clients(bucket, bucket, settings) as (client, _):
            return await abort_uploads_async(client, uploads)

    return run_async(run())


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
    fresh_acls: FreshAcls | None = None,
) -> BatchResult:
    async with open_clients(source, destination, settings) as (source_client, destination_client):
        return await _BatchCopy(source_client, destination_client, settings, on_progress, fresh_acls).run(items)


def copy_batch(
    source: Bucket,
    destination: Bucket,
    items: Sequence[CopyItem],
    settings: TransferSettings = TransferSettings(),
    on_progress: Callable[[BatchProgress], None] | None = None,
    fresh_acls: FreshAcls | None = None,
) -> BatchResult:
    """Synchronous entry point: runs the batch on its own (uvloop) event loop."""
    return run_async(copy_batch_async(source, destination, items, settings, on_progress, fresh_acls))


def run_async(coroutine):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
