"""The batch copier: one batch of items, as many at a time as the limiters allow, each skipped, copied or found missing.

The batch starts with the listings (``listing.py``), from which ``proof.decide`` says, item by item,
whether the destination already has it. A new object costs one GET and one PUT (``_copy``), the
headers taken from the GET (a 404 says the source is missing); larger ones are copied as parts in
parallel (``parallel_parts.py``: ranged GETs, a multipart upload). When both buckets share an
endpoint and credentials, the copy is server-side (CopyObject, or UploadPartCopy above its limit).
Where the source is read: ``_copy`` (GET, and ranged GETs in ``parallel_parts``) and
``_copy_server_side`` (HEAD); where the destination is written: ``_put_checked``,
``parallel_parts`` and ``multipart.upload_parts`` (``ends.py`` says what each end must offer).
Every copy is proven equal to its source (``proof`` says how); the destination's ETags are probed
once per batch (``_probe_destination_etags``). An attempt whose bytes fail a check is tried again
from its GET and counted (``ItemResult.rejected_attempts``); so is a part of a large object whose
bytes fail one, tried again alone.

Items missing at the source that have a fallback key (Mastodon's other ``cache/`` variant) are
looked up together after the first pass (``listing.list_fallbacks``) and stay unfinished until then.

ACLs: each item carries the ACL its PUT sends. Given ``fresh_acls``, the caller's source of current
ACLs, no copy starts with an ACL older than ``TransferSettings.acl_max_age``: past it, the ACLs of
the batch's unfinished items are asked for again. A skipped object (already at the destination)
whose ACL must be ``private`` gets one PutObjectAcl (a chmod on a directory), where the destination
keeps ACLs (``probe_acl_support``, once per batch, on the first such object): it may have been put
there public by another tool, or before a change.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TypeVar

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.acl_support import AclSupport, probe_acl_support
from mastodon_s3_sync.core.errors import AclProbeFailed
from mastodon_s3_sync.core.transfer import multipart, parallel_parts, proof
from mastodon_s3_sync.core.transfer.batch import (
    BatchProgress,
    BatchResult,
    BucketUnavailable,
    CopyItem,
    FreshAcls,
    ItemResult,
    Outcome,
    TransferSettings,
    describe_error,
)
from mastodon_s3_sync.core.transfer.budget import ByteBudget
from mastodon_s3_sync.core.transfer.ends import ObjectDestination, ObjectSource
from mastodon_s3_sync.core.transfer.http import MOST_UNREAD, Buffer, ConnectionLost
from mastodon_s3_sync.core.transfer.listing import list_fallbacks, list_objects
from mastodon_s3_sync.core.transfer.proof import Check, Decision
from mastodon_s3_sync.core.transfer.retries import NETWORK_ERRORS, BodyLengthMismatch, ContentMismatch, with_retries
from mastodon_s3_sync.core.transfer.s3 import ListedObject, S3Client, S3Error, copied_headers

T = TypeVar("T")


class _SourceMissing(Exception):
    pass


class BatchCopy:
    def __init__(
        self,
        source: ObjectSource,
        destination: ObjectDestination,
        settings: TransferSettings,
        on_progress,
        fresh_acls: FreshAcls | None = None,
    ):
        self.source = source
        self.destination = destination
        self.settings = settings
        self.budget = ByteBudget(settings.memory_budget)
        self.lanes = parallel_parts.Lanes()
        """What the large objects copied in parts share: the throughput measured per lane, their count."""
        self.server_side = (  # S3's only: a directory offers no server-side copy
            settings.server_side_copy
            and isinstance(source, S3Client)
            and isinstance(destination, S3Client)
            and source.bucket.same_account_as(destination.bucket)
        )
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
        """List what the destination has, then copy (``_in_workers``)."""
        self.destination_listed = await self._list("destination", self.destination, [i.destination_key for i in items])
        present = [item.source_key for item in items if item.destination_key in self.destination_listed]
        self.source_listed = await self._list("source", self.source, present)
        self.listed_etags_comparable = proof.etags_comparable(
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
                self.on_progress(self._with_in_flight(progress))

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
            self.on_progress(self._with_in_flight(progress))
        return BatchResult(
            results,  # type: ignore[arg-type]
            progress,
            self.source.limiter.stats,
            self.destination.limiter.stats,
            self.source.requests + self.destination.requests,
        )

    def _with_in_flight(self, progress: BatchProgress) -> BatchProgress:
        progress.in_flight = max(self.source.limiter.allowed_in_flight, self.destination.limiter.allowed_in_flight)
        progress.max_in_flight = self.settings.max_in_flight_per_endpoint
        return progress

    async def _in_workers(self, handle: Callable[[int], Awaitable[None]], positions: Sequence[int]) -> None:
        """``handle`` every position, ``_objects_at_once`` at a time: workers are added as the limiters' limits
        grow and leave as they shrink."""
        pending = iter(positions)
        running = 0

        async def worker() -> None:
            nonlocal running
            try:
                for position in pending:
                    await handle(position)
                    wanted = self._objects_at_once()
                    while running < wanted:
                        start()
                    if running > wanted:
                        return
            finally:
                running -= 1

        def start() -> None:
            nonlocal running
            running += 1
            workers.create_task(worker())

        async with asyncio.TaskGroup() as workers:
            for _ in range(min(self._objects_at_once(), len(positions))):
                start()

    def _objects_at_once(self) -> int:
        """Objects enough to use the requests in flight both ends' limiters allow (an object has one request
        in flight at a time, at one end or the other), and at least ``concurrency``."""
        source, destination = self.source.limiter, self.destination.limiter
        both = source.allowed_in_flight + (destination.allowed_in_flight if destination is not source else 0)
        return max(self.settings.concurrency, both)

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
            await self._transfer(result, item, self.source_listed.get(item.source_key))
        except (S3Error, ContentMismatch, AclProbeFailed, *NETWORK_ERRORS) as error:
            result.outcome, result.error = Outcome.FAILED, describe_error(error)
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
        keeps ACLs (a directory keeps them as file modes): never on one that does not (rclone's server would
        take it for an empty PutObject)."""
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

    async def _transfer(self, result: ItemResult, item: CopyItem, source: ListedObject | None) -> None:
        """Skip, copy, or say missing, as ``proof.decide`` rules from the listings; a copy counts the
        attempts whose bytes failed a check."""
        source_key, destination_key = result.source_key, result.destination_key
        decision = proof.decide(
            source,
            self.destination_listed.get(destination_key),
            verify=self.verify,
            listed_etags_comparable=self.listed_etags_comparable,
            destination_md5_etags=self.destination_md5_etags,
        )
        if decision is Decision.MISSING:
            result.outcome = Outcome.MISSING
            return
        if decision is Decision.SKIP:
            result.outcome, result.size = Outcome.SKIPPED, source.size  # type: ignore[union-attr]
            await self._make_private(result, item)
            return
        result.recopied_wrong_content = decision is Decision.RECOPY

        def part_rejected() -> None:
            result.rejected_attempts += 1

        copy = self._copy_server_side if self.server_side else functools.partial(self._copy, on_rejected=part_rejected)

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
            missing.outcome, missing.error = Outcome.FAILED, f"looking up {source_key}: {describe_error(found)}"
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
            result.outcome, result.error = Outcome.FAILED, describe_error(error)
        return result

    def _destination_headers(self, headers: dict[str, str], acl: str | None) -> dict[str, str]:
        if acl:
            headers["x-amz-acl"] = acl
        if self.settings.storage_class:
            headers["x-amz-storage-class"] = self.settings.storage_class
        return headers

    # Through here: GET, then PUT or a multipart upload ------------------------------------------

    async def _copy(
        self, source_key: str, destination_key: str, acl: str | None, on_rejected: Callable[[], None]
    ) -> tuple[int, Check]:
        """GET, then PUT the body with the GET's headers, or copy it in parts (``parallel_parts``; one of
        unknown size streams through ``multipart.upload_parts``). What the GET's response may buffer
        unread is reserved before it is sent (``budget.py``)."""
        async with self.budget.reserve(MOST_UNREAD) as held, AsyncExitStack() as stack:
            response = await stack.enter_async_context(self.source.get(source_key))
            if response is None:
                raise _SourceMissing()
            size = int(response.headers.get("content-length", -1))
            headers = self._destination_headers(copied_headers(response.headers), acl)
            source_etag = response.headers.get("etag")
            source_md5 = providers.stated_md5(source_etag, response.headers)
            if not 0 <= size <= self.settings.multipart_threshold:
                md5_etags = mirrored = None
                if self.verify:
                    md5_etags = await self._destination_md5_etags(destination_key)
                    if source_md5 is None and md5_etags:
                        mirrored = await self._mirrored_part_size(source_key, size, source_etag)
                await held.resize(0)  # its parts reserve their own (holding this too could starve them)
                if size >= 0:
                    return await parallel_parts.ParallelCopy(
                        self.source, source_key, response, stack.pop_all().aclose, self.destination,
                        destination_key, size, headers, self.settings, self.budget, self.lanes,
                        md5_etags, source_md5, mirrored, on_rejected,
                    ).run()  # fmt: skip
                return await multipart.upload_parts(
                    response,
                    self.destination,
                    destination_key,
                    size,
                    headers,
                    mirrored or proof.streamed_part_size(self.settings.part_size, size),
                    self.budget,
                    md5_etags,
                    source_etag,
                    source_md5,
                )
            await held.resize(size)
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
        """PUT a body whose source MD5 is ``source_md5`` (if stated) and prove what the destination stored
        (``proof.put_check``): the body is hashed here unless the PUT's ETag will prove it, and a mismatch
        with the source's MD5 never reaches the PUT. Where the destination's ETags are not MD5s, the MD5
        is stored as ``md5chksum`` too, for ``verify``."""
        md5_etags = await self._destination_md5_etags(key)
        check = proof.put_check(source_md5, md5_etags)
        md5 = source_md5 if check is Check.ETAG else proof.md5_of(chunks).hex()
        if source_md5 is not None and md5 != source_md5:
            raise ContentMismatch(f"GET body of {key}: MD5 {md5}, the source's ETag says {source_md5}")
        headers["Content-MD5"] = proof.content_md5(bytes.fromhex(md5))
        if not md5_etags:
            headers[providers.MD5_METADATA] = providers.md5_metadata_value(md5)
        etag = await self.destination.put(key, chunks, headers)
        if proof.etag_refutes(md5_etags, etag, md5):
            raise ContentMismatch(f"PUT {key}: the destination's ETag {etag} is not the MD5 sent, {md5}")
        return check

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
        """PUT ``proof.ETAG_PROBE_BODY`` with its Content-MD5 under a temporary key beside ``near_key`` (so
        a policy that allows the batch's writes allows it), ask ``proof.probe_says_md5_etags`` what the
        answer means, delete it again."""
        directory = near_key.rpartition("/")[0]
        key = f"{directory}/" if directory else ""
        key += f"{providers.ETAG_PROBE_NAME}{uuid.uuid4().hex}"
        try:
            etag = await self.destination.put(
                key,
                [proof.ETAG_PROBE_BODY],
                {"Content-MD5": proof.content_md5(proof.ETAG_PROBE_DIGEST), "Content-Type": "text/plain"},
            )
        finally:
            try:
                await self._with_retries(lambda: self.destination.delete(key))
            except (S3Error, *NETWORK_ERRORS):
                pass  # credentials without DeleteObject: a few bytes left behind, the answer stands
        return proof.probe_says_md5_etags(etag)

    async def _mirrored_part_size(self, source_key: str, size: int, source_etag: str | None) -> int | None:
        """The source's part size, when its ETag is a multipart one and a HEAD of part 1 says a layout
        that makes it (``proof.mirrored_part_size``)."""
        if providers.multipart_parts(source_etag) is None:
            return None
        layout = await self._with_retries(lambda: self.source.head_first_part(source_key))
        return proof.mirrored_part_size(source_etag, layout, size, self.settings.memory_budget)

    # Server-side: CopyObject, or UploadPartCopy above its limit ---------------------------------

    async def _copy_server_side(self, source_key: str, destination_key: str, acl: str | None) -> tuple[int, Check]:
        """HEAD for the headers, then CopyObject replacing them: some servers (rclone) drop
        Content-Type under the COPY metadata directive, so the headers are always sent.
        The new object's ETag is compared with the source's (from the HEAD)."""
        head = await self.source.head(source_key)
        if head is None:
            raise _SourceMissing()
        headers = self._destination_headers(dict(head.headers), acl)
        source = self.source.object_name(source_key)
        if proof.fits_single_copy(head.size):
            etag = await self.destination.copy_from(destination_key, source, headers)
            if not self.verify:
                return head.size, Check.SIZE
            return head.size, proof.server_side_check(destination_key, etag, head.etag, head.content_md5)
        if head.stated_md5 is not None:
            headers[providers.MD5_METADATA] = providers.md5_metadata_value(head.stated_md5)
        part_size = proof.server_side_part_size(self.settings.part_size, head.size)
        final = await multipart.copy_parts(self.destination, destination_key, source, head.size, headers, part_size)
        if not self.verify:
            return head.size, Check.SIZE
        # the same layout gives the source's multipart ETag; other layouts (or KMS) compare nothing more
        return head.size, proof.server_side_check(destination_key, final, head.etag, None)
