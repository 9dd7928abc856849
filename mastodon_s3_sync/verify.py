"""Verify: every referenced object that exists at the source is at the destination,
with the source's size, Content-Type and Cache-Control, and the ACL Mastodon would set."""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from mastodon_s3_sync.mastodon.tables import InvalidRow, MediaObject, MediaTable
from mastodon_s3_sync.partitions import IdRange
from mastodon_s3_sync.resources import DestinationBucket, MastodonDatabase, SourceBucket
from mastodon_s3_sync.transfer.engine import TransferSettings, list_sizes, open_clients, run_async
from mastodon_s3_sync.transfer.s3 import S3Client, S3Error

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
CHECKED_HEADERS = ("Content-Type", "Cache-Control")
VERIFY_BATCH = 2000


class Problem(enum.StrEnum):
    MISSING_AT_SOURCE = "missing_at_source"
    MISSING_AT_DESTINATION = "missing_at_destination"
    WRONG_SIZE = "wrong_size"
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
    table: str
    expected: int = 0
    findings: list[Finding] = field(default_factory=list)
    acl_checked: bool = True

    @property
    def counts(self) -> Counter:
        return Counter(finding.problem for finding in self.findings)

    @property
    def present(self) -> int:
        """Objects at the destination, right or wrong."""
        counts = self.counts
        return self.expected - counts[Problem.MISSING_AT_SOURCE] - counts[Problem.MISSING_AT_DESTINATION]

    @property
    def complete(self) -> bool:
        """Missing at the source is reported, not a failure: nothing can copy it."""
        return all(finding.problem is Problem.MISSING_AT_SOURCE for finding in self.findings)


def acl_problem(expected_acl: str | None, grants: list[tuple[str, str]]) -> str | None:
    public = any(who == ALL_USERS and permission in ("READ", "FULL_CONTROL") for who, permission in grants)
    if expected_acl == "public-read" and not public:
        return "expected public-read, the object is not readable by everyone"
    if expected_acl == "private" and public:
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
    ):
        self.thorough = thorough
        self.source = source
        self.destination = destination
        self.source_bucket = source_bucket
        self.destination_bucket = destination_bucket
        self.check_acl = check_acl
        self.acl_supported: bool | None = None if check_acl else False
        self.gate = asyncio.Semaphore(32)

    async def verify(self, objects: Sequence[MediaObject], result: TableVerification) -> None:
        source_keys = [self.source_bucket.full_key(o.key) for o in objects]
        destination_keys = [self.destination_bucket.full_key(o.key) for o in objects]
        source_sizes, destination_sizes = await asyncio.gather(
            list_sizes(self.source, source_keys), list_sizes(self.destination, destination_keys)
        )
        await asyncio.gather(
            *(
                self._check(o, source_key, destination_key, source_sizes, destination_sizes, result)
                for o, source_key, destination_key in zip(objects, source_keys, destination_keys)
            )
        )

    async def _check(self, media_object, source_key, destination_key, source_sizes, destination_sizes, result):
        async with self.gate:
            source_size = source_sizes.get(source_key)
            destination_size = destination_sizes.get(destination_key)
            if source_size is None and media_object.fallback_key:
                fallback = await self.source.head(self.source_bucket.full_key(media_object.fallback_key))
                if fallback is not None:
                    source_key = self.source_bucket.full_key(media_object.fallback_key)
                    destination_key = self.destination_bucket.full_key(media_object.fallback_key)
                    source_size = fallback.size
                    existing = await self.destination.head(destination_key)
                    destination_size = existing.size if existing else None
            finding = await self._finding(media_object, source_key, destination_key, source_size, destination_size)
        if finding is not None:
            result.findings.append(finding)

    async def _finding(self, media_object, source_key, destination_key, source_size, destination_size):
        def found(problem: Problem, detail: str = "", key: str = destination_key) -> Finding:
            return Finding(media_object.table, media_object.row_id, key, problem, detail)

        if source_size is None:
            return found(Problem.MISSING_AT_SOURCE, key=source_key)
        if destination_size is None:
            return found(Problem.MISSING_AT_DESTINATION)
        if destination_size != source_size:
            return found(Problem.WRONG_SIZE, f"source {source_size} bytes, destination {destination_size}")
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
        if self.acl_supported is not False and media_object.acl:
            grants = await self._grants(destination_key)
            problem = acl_problem(media_object.acl, grants) if grants is not None else None
            if problem:
                return found(Problem.WRONG_ACL, problem)
        return None

    async def _grants(self, key: str) -> list[tuple[str, str]] | None:
        try:
            grants = await self.destination.get_acl_grants(key)
        except S3Error as error:
            if self.acl_supported or error.status < 500:
                raise
            grants = None  # e.g. rclone answers 500 to ?acl: the server keeps no ACLs
        if self.acl_supported is None:
            self.acl_supported = grants is not None
        return grants


def _batches(objects: Iterator[MediaObject], size: int) -> Iterator[list[MediaObject]]:
    batch: list[MediaObject] = []
    for media_object in objects:
        batch.append(media_object)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def table_objects(
    database: MastodonDatabase, table: MediaTable, permission: str | None, id_range: IdRange | None = None
) -> Iterator[MediaObject]:
    where, parameters = ("t.id BETWEEN %s AND %s", (id_range.lo, id_range.hi)) if id_range else ("TRUE", ())
    for row in database.stream(table.select_sql(where), parameters):
        try:
            yield from table.objects_for_row(row, permission)
        except InvalidRow:
            continue  # reported by the sync itself


def verify_table(
    database: MastodonDatabase,
    table: MediaTable,
    source: SourceBucket,
    destination: DestinationBucket,
    *,
    check_acl: bool = True,
    thorough: bool = True,
    id_range: IdRange | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> TableVerification:
    """Check every object the table's rows (in ``id_range``) reference; ``on_progress`` gets the
    count of each batch done. ``thorough=False`` checks presence and size from listings only."""
    result = TableVerification(table.name)

    async def run() -> None:
        settings = TransferSettings(max_in_flight_per_endpoint=64)
        async with open_clients(source.engine_bucket(), destination.engine_bucket(), settings) as (src, dst):
            verifier = _Verifier(src, dst, source, destination, check_acl, thorough)
            objects = table_objects(database, table, destination.acl_permission(), id_range)
            for batch in _batches(objects, VERIFY_BATCH):
                result.expected += len(batch)
                await verifier.verify(batch, result)
                if on_progress:
                    on_progress(len(batch))
            result.acl_checked = bool(verifier.acl_supported)

    run_async(run())
    return result
