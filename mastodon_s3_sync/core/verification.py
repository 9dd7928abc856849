"""Verify: every referenced object that exists at the source is at the destination,
with the source's size and content, Content-Type and Cache-Control, and the ACL Mastodon would set.

Content is checked from the listings' ETags (no extra requests): where both are plain MD5s
and differ, the destination has other content (``WRONG_CONTENT``). ``deep`` also downloads
and hashes what the ETags cannot prove (multipart or encrypted objects' ETags)."""

from __future__ import annotations

import asyncio
import enum
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.acl_support import probe_acl_support
from mastodon_s3_sync.core.buckets import DestinationBucket, SourceBucket
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.id_ranges import IdRange
from mastodon_s3_sync.core.mastodon.tables import MediaObject, MediaTable
from mastodon_s3_sync.core.referenced_objects import MAX_LISTED_PROBLEMS, batched, referenced_objects
from mastodon_s3_sync.core.transfer.engine import (
    TransferSettings,
    different_content,
    etags_comparable,
    list_objects,
    open_clients,
    run_async,
)
from mastodon_s3_sync.core.transfer.retries import with_retries
from mastodon_s3_sync.core.transfer.s3 import ListedObject, S3Client

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
CHECKED_HEADERS = ("Content-Type", "Cache-Control")
VERIFY_BATCH = 2000


class Problem(enum.StrEnum):
    MISSING_AT_SOURCE = "missing_at_source"
    MISSING_AT_DESTINATION = "missing_at_destination"
    WRONG_SIZE = "wrong_size"
    WRONG_CONTENT = "wrong_content"
    """The source's size but other content (ETags, or the downloaded bytes with ``deep``)."""
    WRONG_HEADERS = "wrong_headers"
    WRONG_ACL = "wrong_acl"


@dataclass(frozen=True)
class Finding:
    table: str
    row_id: int
    key: str
    problem: Problem
    detail: str = ""


@dataclass
class TableVerification:
    """Counts of every finding, the first ``MAX_LISTED_PROBLEMS`` of them, and each one handed to
    ``on_finding`` as it is found (the CLI writes them to ``--output``): memory stays flat however
    many objects are missing or wrong."""

    table: str
    expected: int = 0
    counts: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    on_finding: Callable[[Finding], None] | None = None
    acl_checked: bool = True
    content_unproven: int = 0
    """Present with the right size, but neither the ETags nor (with ``deep``) the bytes compared."""
    downloaded: int = 0
    """Objects downloaded and hashed (``deep``)."""
    absent_optional: int = 0
    """Legacy styles this instance never had (``MediaObject.optional``): neither present nor missing."""

    def add(self, finding: Finding) -> None:
        self.counts[finding.problem] += 1
        if len(self.findings) < MAX_LISTED_PROBLEMS:
            self.findings.append(finding)
        if self.on_finding is not None:
            self.on_finding(finding)

    @property
    def present(self) -> int:
        """Objects at the destination, right or wrong."""
        counts = self.counts
        missing = counts[Problem.MISSING_AT_SOURCE] + counts[Problem.MISSING_AT_DESTINATION]
        return self.expected - self.absent_optional - missing

    @property
    def complete(self) -> bool:
        """Missing at the source is reported, not a failure: nothing can copy it."""
        return sum(self.counts.values()) == self.counts[Problem.MISSING_AT_SOURCE]


def acl_problem(expected_acl: str | None, grants: list[tuple[str, str]]) -> str | None:
    public = any(who == ALL_USERS and permission in ("READ", "FULL_CONTROL") for who, permission in grants)
    if expected_acl == "public-read" and not public:
        return "expected public-read, the object is not readable by everyone"
    if expected_acl == providers.PRIVATE and public:
        return "expected private, the object is readable by everyone"
    return None


class _Verifier:
    def __init__(
        self,
        source: S3Client,
        destination: S3Client,
        source_bucket: SourceBucket,
        destination_bucket: DestinationBucket,
        check_acl: bool,
        thorough: bool,
        deep: bool = False,
    ):
        self.thorough = thorough
        self.deep = deep
        self.source = source
        self.destination = destination
        self.source_bucket = source_bucket
        self.destination_bucket = destination_bucket
        self.check_acl = check_acl
        self.acl_supported = False
        """Set from ``probe_acl_support`` before the first batch, when ACLs are checked."""
        self.gate = asyncio.Semaphore(32)

    async def verify(self, objects: Sequence[MediaObject], result: TableVerification) -> None:
        source_keys = [self.source_bucket.full_key(o.key) for o in objects]
        destination_keys = [self.destination_bucket.full_key(o.key) for o in objects]
        source_listed, destination_listed = await asyncio.gather(
            list_objects(self.source, source_keys), list_objects(self.destination, destination_keys)
        )
        comparable = etags_comparable(
            [
                (source_listed[source_key], destination_listed[destination_key])
                for source_key, destination_key in zip(source_keys, destination_keys)
                if source_key in source_listed and destination_key in destination_listed
            ]
        )
        await asyncio.gather(
            *(
                self._check(o, source_key, destination_key, source_listed, destination_listed, comparable, result)
                for o, source_key, destination_key in zip(objects, source_keys, destination_keys)
            )
        )

    async def _check(
        self, media_object, source_key, destination_key, source_listed, destination_listed, comparable, result
    ):
        async with self.gate:
            source = source_listed.get(source_key)
            destination = destination_listed.get(destination_key)
            if source is None and media_object.fallback_key:
                fallback = await self.source.head(self.source_bucket.full_key(media_object.fallback_key))
                if fallback is not None:
                    source_key = self.source_bucket.full_key(media_object.fallback_key)
                    destination_key = self.destination_bucket.full_key(media_object.fallback_key)
                    source = ListedObject(source_key, fallback.size, fallback.etag)
                    existing = await self.destination.head(destination_key)
                    destination = ListedObject(destination_key, existing.size, existing.etag) if existing else None
            if source is None and media_object.optional:
                result.absent_optional += 1
                return
            finding = await self._finding(
                media_object, source_key, destination_key, source, destination, comparable, result
            )
        if finding is not None:
            result.add(finding)

    async def _finding(self, media_object, source_key, destination_key, source, destination, comparable, result):
        def found(problem: Problem, detail: str = "", key: str = destination_key) -> Finding:
            return Finding(media_object.table, media_object.row_id, key, problem, detail)

        if source is None:
            return found(Problem.MISSING_AT_SOURCE, key=source_key)
        if destination is None:
            return found(Problem.MISSING_AT_DESTINATION)
        if destination.size != source.size:
            return found(Problem.WRONG_SIZE, f"source {source.size} bytes, destination {destination.size}")
        content = await self._content_problem(source_key, destination_key, source, destination, comparable, result)
        if content:
            return found(Problem.WRONG_CONTENT, content)
        if not self.thorough:
            return None
        source_head, destination_head = await asyncio.gather(
            self.source.head(source_key), self.destination.head(destination_key)
        )
        if source_head is None or destination_head is None:
            return found(Problem.MISSING_AT_DESTINATION if destination_head is None else Problem.MISSING_AT_SOURCE)
        differing = [
            f"{name}: {destination_head.headers.get(name)!r} instead of {source_head.headers.get(name)!r}"
            for name in CHECKED_HEADERS
            if source_head.headers.get(name) != destination_head.headers.get(name)
        ]
        if differing:
            return found(Problem.WRONG_HEADERS, "; ".join(differing))
        if self.acl_supported and media_object.acl:
            grants = await self._grants(destination_key)
            problem = acl_problem(media_object.acl, grants) if grants is not None else None
            if problem:
                return found(Problem.WRONG_ACL, problem)
        return None

    async def _content_problem(
        self, source_key: str, destination_key: str, source: ListedObject, destination: ListedObject, comparable, result
    ) -> str | None:
        """What is wrong with the destination's content, or None when it is right or cannot be told."""
        source_md5, destination_md5 = providers.plain_md5(source.etag), providers.plain_md5(destination.etag)
        if source_md5 is not None and source_md5 == destination_md5:
            return None
        if comparable and different_content(source, destination):
            return f"ETag {destination_md5}, the source's is {source_md5}"
        same_etag = source.etag is not None and providers.normalized_etag(source.etag) == providers.normalized_etag(
            destination.etag
        )
        if same_etag and providers.multipart_parts(source.etag) is not None:
            return None  # the same multipart ETag: the same parts
        if not self.deep:
            result.content_unproven += 1
            return None
        destination_hash = await self._download_md5(self.destination, destination_key)
        result.downloaded += 1
        if destination_hash is None:
            return None  # gone since the listing: the next verify says so
        if destination_hash == source_md5:
            return None  # the MD5 the source's ETag states
        source_hash = await self._download_md5(self.source, source_key)
        result.downloaded += 1
        if source_hash is None or source_hash == destination_hash:
            return None
        return f"downloaded content differs (MD5 {destination_hash}, the source's {source_hash})"

    async def _download_md5(self, client: S3Client, key: str) -> str | None:
        digest = hashlib.md5()
        async with client.get(key) as response:
            if response is None:
                return None
            while chunk := await response.read_up_to(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    async def _grants(self, key: str) -> list[tuple[str, str]] | None:
        return await with_retries(lambda: self.destination.get_acl_grants(key), 5, 30)


def verify_table(
    database: MastodonDatabase,
    table: MediaTable,
    source: SourceBucket,
    destination: DestinationBucket,
    *,
    check_acl: bool = True,
    thorough: bool = True,
    deep: bool = False,
    id_range: IdRange | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_finding: Callable[[Finding], None] | None = None,
) -> TableVerification:
    """Check every object the table's rows (in ``id_range``) reference; ``on_progress`` gets the
    count of each batch done. ``thorough=False`` checks presence, size and content (ETags) from
    listings only; ``deep`` downloads and hashes the objects whose ETags cannot prove their content."""
    result = TableVerification(table.name, on_finding=on_finding)

    async def run() -> None:
        settings = TransferSettings(max_in_flight_per_endpoint=64)
        async with open_clients(source.engine_bucket(), destination.engine_bucket(), settings) as (src, dst):
            verifier = _Verifier(src, dst, source, destination, check_acl, thorough, deep)
            if check_acl and thorough:
                verifier.acl_supported = (await probe_acl_support(dst)).keeps_acls
            objects = referenced_objects(database, table, destination.acl_permission(), id_range)
            for batch in batched(objects, VERIFY_BATCH):
                result.expected += len(batch)
                await verifier.verify(batch, result)
                if on_progress:
                    on_progress(len(batch))
            result.acl_checked = bool(verifier.acl_supported)

    run_async(run())
    return result
