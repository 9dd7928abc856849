"""Plan, copy and report one id range of one table: the sync's logic without Dagster.

``plan_batches`` reads the range's rows and derives their objects in batches;
``copy_objects`` moves one batch with the transfer engine; ``PartitionReport``
adds the batch reports up. The Dagster assets only wire these together.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from mastodon_s3_sync.config import ConfigError
from mastodon_s3_sync.mastodon.tables import InvalidRow, MediaObject, MediaTable
from mastodon_s3_sync.partitions import IdRange
from mastodon_s3_sync.resources import DestinationBucket, MastodonDatabase, SourceBucket
from mastodon_s3_sync.transfer.engine import (
    BatchProgress,
    BucketUnavailable,
    CopyItem,
    Outcome,
    TransferSettings,
    copy_batch,
)

MAX_LISTED_PROBLEMS = 1000
"""Problem objects kept per report; the counts stay exact beyond it."""


@dataclass(frozen=True)
class ObjectProblem:
    table: str
    row_id: int
    key: str
    reason: str


@dataclass
class PlanStats:
    snapshot_at: datetime | None = None
    """The database's clock (UTC) when the rows were read: rows changed after it need a re-sync."""
    rows: int = 0
    objects: int = 0
    expected_bytes: int = 0
    invalid_rows: list[ObjectProblem] = field(default_factory=list)


def plan_batches(
    database: MastodonDatabase,
    table: MediaTable,
    id_range: IdRange,
    permission: str | None,
    *,
    max_objects: int,
    max_bytes: int,
    stats: PlanStats,
) -> Iterator[list[MediaObject]]:
    """Batches of the range's objects, cut by count and by expected bytes (originals' sizes)."""
    with database.connection() as connection:
        stats.snapshot_at = database.clock(connection)
        rows = database.stream(
            table.select_sql("t.id BETWEEN %s AND %s"), (id_range.lo, id_range.hi), connection=connection
        )
        yield from _batched_objects(table, rows, permission, max_objects, max_bytes, stats)


def _batched_objects(table, rows, permission, max_objects, max_bytes, stats) -> Iterator[list[MediaObject]]:
    batch: list[MediaObject] = []
    batch_bytes = 0
    for row in rows:
        stats.rows += 1
        try:
            objects = table.objects_for_row(row, permission)
        except InvalidRow as error:
            stats.invalid_rows.append(ObjectProblem(table.name, row["id"], "", str(error)))
            continue
        for media_object in objects:
            stats.objects += 1
            stats.expected_bytes += media_object.expected_size or 0
            batch.append(media_object)
            batch_bytes += media_object.expected_size or 0
            if len(batch) >= max_objects or batch_bytes >= max_bytes:
                yield batch
                batch, batch_bytes = [], 0
    if batch:
        yield batch


@dataclass
class BatchReport:
    objects: int = 0
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    missing: list[ObjectProblem] = field(default_factory=list)
    failed: list[ObjectProblem] = field(default_factory=list)
    fallback_used: list[ObjectProblem] = field(default_factory=list)
    requests: Counter = field(default_factory=Counter)
    throttled: int = 0


def copy_items_for(objects: list[MediaObject], source: SourceBucket, destination: DestinationBucket) -> list[CopyItem]:
    return [
        CopyItem(
            source_key=source.full_key(media_object.key),
            destination_key=destination.full_key(media_object.key),
            acl=media_object.acl,
            fallback_source_key=source.full_key(media_object.fallback_key) if media_object.fallback_key else None,
            fallback_destination_key=(
                destination.full_key(media_object.fallback_key) if media_object.fallback_key else None
            ),
        )
        for media_object in objects
    ]


def copy_objects(
    objects: list[MediaObject],
    source: SourceBucket,
    destination: DestinationBucket,
    settings: TransferSettings,
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> BatchReport:
    """Copy one batch; a bucket that cannot be listed at all is a ``ConfigError`` naming its variables."""
    started = time.monotonic()
    items = copy_items_for(objects, source, destination)
    try:
        result = copy_batch(source.engine_bucket(), destination.engine_bucket(), items, settings, on_progress)
    except BucketUnavailable as unavailable:
        bucket = source if unavailable.role == "source" else destination
        raise ConfigError(bucket.explain(unavailable.error)) from None
    report = BatchReport(
        objects=len(objects),
        requests=result.requests,
        throttled=result.source_limiter.throttled + result.destination_limiter.throttled,
    )
    for media_object, item in zip(objects, result.results):
        problem = ObjectProblem(media_object.table, media_object.row_id, item.destination_key, item.error or "")
        if item.outcome is Outcome.COPIED:
            report.copied += 1
            report.bytes_copied += item.size
        elif item.outcome is Outcome.SKIPPED:
            report.skipped += 1
        elif item.outcome is Outcome.MISSING:
            report.missing.append(
                ObjectProblem(media_object.table, media_object.row_id, item.source_key, "missing at the source")
            )
        else:
            report.failed.append(problem)
        if item.used_fallback:
            report.fallback_used.append(
                ObjectProblem(
                    media_object.table, media_object.row_id, item.source_key, "found under the other cache/ variant"
                )
            )
    report.seconds = time.monotonic() - started
    return report


@dataclass
class PartitionReport:
    snapshot_at: datetime | None
    rows: int
    planned: int
    copied: int
    skipped: int
    missing: int
    failed: int
    bytes_copied: int
    invalid_rows: int
    fallback_used: int
    missing_objects: list[ObjectProblem]
    problems: list[ObjectProblem]

    @classmethod
    def combine(cls, stats: PlanStats, batches: list[BatchReport]) -> PartitionReport:
        missing = [problem for batch in batches for problem in batch.missing]
        fallback = [problem for batch in batches for problem in batch.fallback_used]
        return cls(
            snapshot_at=stats.snapshot_at,
            rows=stats.rows,
            planned=stats.objects,
            copied=sum(batch.copied for batch in batches),
            skipped=sum(batch.skipped for batch in batches),
            missing=len(missing),
            failed=sum(len(batch.failed) for batch in batches),
            bytes_copied=sum(batch.bytes_copied for batch in batches),
            invalid_rows=len(stats.invalid_rows),
            fallback_used=len(fallback),
            missing_objects=missing[:MAX_LISTED_PROBLEMS],
            problems=(stats.invalid_rows + fallback)[:MAX_LISTED_PROBLEMS],
        )
