"""Verify: every referenced object that exists at the source is at the destination,
with the source's size and content, Content-Type and Cache-Control (on a bucket: a file stores no
headers), and the ACL Mastodon would set (on a directory: the file's mode, ``layout.file_mode``).

An object counts as right only when its content is proven: equal plain-MD5 ETags or equal
multipart ETags (from the listings, no extra request), else the destination's stated MD5
(``x-amz-meta-md5chksum``, which the copy writes on multipart uploads) equal to the source's
(its ETag or its own ``md5chksum``), else, with ``deep``, the bytes downloaded and hashed (only
the side whose counterpart states an MD5). What is not proven is counted (``content_unproven``)
and keeps the verdict from "complete", as do ACLs that could not be read. An empty or misnamed
source stops the run with ``copying.mostly_missing_error``, as ``sync`` does."""

from __future__ import annotations

import asyncio
import enum
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.acl_support import probe_acl_support
from mastodon_s3_sync.core.buckets import DestinationBucket, DestinationDirectory, SourceBucket, SourceDirectory
from mastodon_s3_sync.core.copying import mostly_missing_error
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.errors import SourceMostlyMissing
from mastodon_s3_sync.core.id_ranges import IdRange
from mastodon_s3_sync.core.mastodon.tables import MediaObject, MediaTable
from mastodon_s3_sync.core.referenced_objects import MAX_LISTED_PROBLEMS, batched, referenced_objects
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.core.transfer.disk import DiskEnd
from mastodon_s3_sync.core.transfer.engine import open_clients, run_async
from mastodon_s3_sync.core.transfer.listing import list_fallbacks, list_objects
from mastodon_s3_sync.core.transfer.proof import different_content, etags_comparable
from mastodon_s3_sync.core.transfer.retries import NETWORK_ERRORS, with_retries
from mastodon_s3_sync.core.transfer.s3 import ListedObject, ObjectHead, S3Client, S3Error

CHECKED_HEADERS = ("Content-Type", "Cache-Control")
VERIFY_BATCH = 2000
PROVE_COMMAND = "mastodon-s3-sync verify --deep"


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
    """Whether the destination keeps ACLs (``probe_acl_support``; a directory's are file modes), so that
    they were checked."""
    acl_unreadable: int = 0
    """Objects whose ACL could not be read (GetObjectAcl failed after its retries, or answered no policy)."""
    content_unproven: int = 0
    """Present with the right size, but neither the ETags, a stated MD5 nor (with ``deep``) the bytes compared."""
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
    def wrong(self) -> int:
        """Findings other than missing at the source (which is reported, not a failure: nothing can copy it)."""
        return sum(self.counts.values()) - self.counts[Problem.MISSING_AT_SOURCE]

    @property
    def complete(self) -> bool:
        """Nothing wrong, and every present object's content and ACL proven."""
        return self.wrong == 0 and self.content_unproven == 0 and self.acl_unreadable == 0

    def unproven(self) -> list[str]:
        """What keeps an otherwise right table from "complete", one sentence each, with what to do."""
        notes = []
        if self.content_unproven:
            notes.append(
                f"{self.table}: content not proven for {self.content_unproven:,} objects (neither their ETags nor "
                f"a stored MD5 compare); `{PROVE_COMMAND}` downloads and hashes them"
            )
        if self.acl_unreadable:
            notes.append(f"{self.table}: ACLs not checked for {self.acl_unreadable:,} objects (GetObjectAcl failed)")
        return notes


def acl_problem(expected_acl: str | None, grants: list[tuple[str, str]]) -> str | None:
    public = any(who == providers.ALL_USERS and permission in ("READ", "FULL_CONTROL") for who, permission in grants)
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
        if isinstance(self.source, DiskEnd):  # a file has no Content-Type: the rows say it
            self.source.expect(
                {
                    self.source_bucket.full_key(key): o.content_type
                    for o in objects
                    for key in (o.key, o.fallback_key)
                    if key
                }
            )
        source_listed, destination_listed = await asyncio.gather(
            _retried(lambda: list_objects(self.source, source_keys)),
            _retried(lambda: list_objects(self.destination, destination_keys)),
        )
        fallback_pairs = [
            (self.source_bucket.full_key(o.fallback_key), self.destination_bucket.full_key(o.fallback_key))
            for o, source_key in zip(objects, source_keys)
            if o.fallback_key and source_key not in source_listed
        ]
        fallbacks = await _retried(lambda: list_fallbacks(self.source, self.destination, fallback_pairs))
        comparable = etags_comparable(
            [
                (source_listed[source_key], destination_listed[destination_key])
                for source_key, destination_key in zip(source_keys, destination_keys)
                if source_key in source_listed and destination_key in destination_listed
            ]
        )

        def located(media_object, source_key, destination_key):
            """(source key, destination key, source listing, destination listing), the fallback's if the key is missing."""
            source = source_listed.get(source_key)
            if source is None and media_object.fallback_key:
                fallback = (
                    self.source_bucket.full_key(media_object.fallback_key),
                    self.destination_bucket.full_key(media_object.fallback_key),
                )
                if fallback in fallbacks:
                    return (*fallback, *fallbacks[fallback])
            return source_key, destination_key, source, destination_listed.get(destination_key)

        await asyncio.gather(
            *(
                self._check(o, *located(o, source_key, destination_key), comparable, result)
                for o, source_key, destination_key in zip(objects, source_keys, destination_keys)
            )
        )

    async def _check(self, media_object, source_key, destination_key, source, destination, comparable, result):
        async with self.gate:
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
        # A file stores no headers: nothing a HEAD of a directory destination could add
        thorough = self.thorough and not isinstance(self.destination, DiskEnd)
        heads = await self._heads(source_key, destination_key) if thorough else None
        if heads is not None and None in heads:
            return found(Problem.MISSING_AT_DESTINATION if heads[1] is None else Problem.MISSING_AT_SOURCE)
        content = await self._content_problem(
            source_key, destination_key, source, destination, comparable, heads, result
        )
        if content:
            return found(Problem.WRONG_CONTENT, content)
        if heads is not None:
            source_head, destination_head = heads
            differing = [
                f"{name}: {destination_head.headers.get(name)!r} instead of {source_head.headers.get(name)!r}"
                for name in CHECKED_HEADERS
                if source_head.headers.get(name) != destination_head.headers.get(name)
            ]
            if differing:
                return found(Problem.WRONG_HEADERS, "; ".join(differing))
        if self.acl_supported and media_object.acl:
            grants = await self._grants(destination_key)
            if grants is None:
                result.acl_unreadable += 1
                return None
            problem = acl_problem(media_object.acl, grants)
            if problem:
                return found(Problem.WRONG_ACL, problem)
        return None

    async def _heads(self, source_key: str, destination_key: str) -> tuple[ObjectHead | None, ObjectHead | None]:
        return await asyncio.gather(
            _retried(lambda: self.source.head(source_key)), _retried(lambda: self.destination.head(destination_key))
        )

    async def _content_problem(
        self, source_key, destination_key, source: ListedObject, destination: ListedObject, comparable, heads, result
    ) -> str | None:
        """What is wrong with the destination's content, or None when it is right or cannot be told
        (then counted in ``content_unproven``, unless ``deep`` downloads it)."""
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
        if (
            isinstance(self.destination, DiskEnd)
            and providers.multipart_parts(source.etag) is not None
            and await _retried(lambda: self.destination.makes_etag(destination_key, source.etag))
        ):
            return None  # the file, hashed in the source's parts, makes the source's multipart ETag
        source_head, destination_head = heads or await self._heads(source_key, destination_key)
        if source_head is None or destination_head is None:
            result.content_unproven += 1  # gone since the listing: the next verify says so
            return None
        source_stated = source_head.stated_md5
        destination_stored = providers.md5_from_metadata(destination_head.headers)
        if source_stated is not None:
            if source_stated in (destination_stored, providers.plain_md5(destination_head.etag)):
                return None
            if destination_stored is not None:
                return f"stored MD5 (md5chksum) {destination_stored}, the source's is {source_stated}"
        if not self.deep:
            result.content_unproven += 1
            return None
        destination_stated = destination_stored or (destination_md5 if comparable else None)
        return await self._downloaded_difference(source_key, destination_key, source_stated, destination_stated, result)

    async def _downloaded_difference(
        self, source_key: str, destination_key: str, source_stated, destination_stated, result
    ) -> str | None:
        """Download and hash the side whose counterpart states an MD5 (the destination when both do);
        only when that disagrees, or neither states one, the other side too."""
        destination = (self.destination, destination_key)
        source = (self.source, source_key)
        first, second, second_stated = destination, source, source_stated
        if source_stated is None and destination_stated is not None:
            first, second, second_stated = source, destination, destination_stated
        first_md5 = await self._download_md5(*first, result)
        if first_md5 is not None and first_md5 == second_stated:
            return None
        second_md5 = await self._download_md5(*second, result) if first_md5 is not None else None
        if first_md5 is None or second_md5 is None:
            result.content_unproven += 1  # gone since the listing: the next verify says so
            return None
        if first_md5 == second_md5:
            return None
        destination_md5, source_md5 = (first_md5, second_md5) if first is destination else (second_md5, first_md5)
        return f"downloaded content differs (MD5 {destination_md5}, the source's {source_md5})"

    async def _download_md5(self, client: S3Client, key: str, result: TableVerification) -> str | None:
        """The MD5 of the object's bytes (downloaded, retried like any request), or None when it is gone."""

        async def download() -> str | None:
            digest = hashlib.md5()
            async with client.get(key) as response:
                if response is None:
                    return None
                while chunk := await response.read_up_to(1 << 20):
                    digest.update(chunk)
            return digest.hexdigest()

        md5 = await _retried(download)
        result.downloaded += md5 is not None
        return md5

    async def _grants(self, key: str) -> list[tuple[str, str]] | None:
        """The object's grants, or None when they could not be read (after retries) or were not answered."""
        try:
            return await _retried(lambda: self.destination.get_acl_grants(key))
        except (S3Error, *NETWORK_ERRORS):
            return None


async def _retried(operation):
    return await with_retries(operation, 5, 30)


def verify_table(
    database: MastodonDatabase,
    table: MediaTable,
    source: SourceBucket | SourceDirectory,
    destination: DestinationBucket | DestinationDirectory,
    *,
    check_acl: bool = True,
    thorough: bool = True,
    deep: bool = False,
    id_range: IdRange | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_finding: Callable[[Finding], None] | None = None,
    accept_missing: bool = False,
) -> TableVerification:
    """Check every object the table's rows (in ``id_range``) reference; ``on_progress`` gets the
    count of each batch done. ``thorough=False`` checks presence, size and content from listings
    (and a HEAD where the ETags cannot prove the content); ``deep`` downloads and hashes the objects
    nothing else proves. Raises ``SourceMostlyMissing`` after the first batch (or any later one) in
    which most objects so far are missing at the source, unless ``accept_missing``."""
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
                if not accept_missing:
                    _stop_if_mostly_missing(result)
            result.acl_checked = bool(verifier.acl_supported)

    run_async(run())
    return result


def _stop_if_mostly_missing(result: TableVerification) -> None:
    missing = result.counts[Problem.MISSING_AT_SOURCE]
    example = next((f.key for f in result.findings if f.problem is Problem.MISSING_AT_SOURCE), None)
    error = mostly_missing_error(missing, result.expected - result.absent_optional, example, "verify")
    if error:
        raise SourceMostlyMissing(f"{result.table}: {error}")
