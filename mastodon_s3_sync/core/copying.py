"""Copy one batch of a partition's objects and add the batches up: the sync's logic without Dagster.

``referenced_objects`` + ``batched`` cut a partition into batches;
``copy_objects`` moves one batch with the transfer engine; ``PartitionReport``
adds the batch reports up. The Dagster assets only wire these together.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mastodon_s3_sync.core.buckets import DestinationBucket, SourceBucket
from mastodon_s3_sync.core.changes import LastRead
from mastodon_s3_sync.core.errors import BucketOutage, ConfigError
from mastodon_s3_sync.core.mastodon.tables import MediaObject
from mastodon_s3_sync.core.referenced_objects import MAX_LISTED_PROBLEMS, ObjectProblem, ReadStats
from mastodon_s3_sync.core.transfer.batch import (
    BatchProgress,
    BucketUnavailable,
    CopyItem,
    ItemResult,
    Outcome,
    TransferSettings,
)
from mastodon_s3_sync.core.transfer.engine import copy_batch
from mastodon_s3_sync.core.transfer.s3 import S3Error

MOSTLY_MISSING = "most referenced objects are missing at the source"
MOSTLY_MISSING_MIN_OBJECTS = 100


def mostly_missing_error(
    missing: int, looked_up: int, example_key: str | None = None, command: str = "sync"
) -> str | None:
    """The one-line error for a misconfiguration that would otherwise look like success.

    With a wrong bucket, endpoint or key prefix every referenced object is "missing at the
    source"; more than half of at least a hundred says so far more often than a real loss does.
    """
    if looked_up < MOSTLY_MISSING_MIN_OBJECTS or missing * 2 <= looked_up:
        return None
    where = f" (for example {example_key})" if example_key else ""
    return (
        f"{MOSTLY_MISSING}: {missing} of {looked_up}{where}. Check SOURCE_S3_BUCKET, SOURCE_S3_ENDPOINT and "
        "SOURCE_S3_KEY_PREFIX (or SOURCE_PAPERCLIP_ROOT_PATH); if this instance really lost that media, set SYNC_ACCEPT_MISSING=true "
        f"(`{command} --accept-missing`)"
    )


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
    absent_optional: int = 0
    """Legacy styles (``MediaObject.optional``) that this instance never had: not missing."""
    recopied_wrong_content: int = 0
    """Copied again: the destination had the object with the source's size but other content (ETags)."""
    rejected_attempts: int = 0
    """Copy attempts whose bytes failed a content check (length, MD5, ETag) and were tried again."""
    acls_fixed: int = 0
    """Skipped objects that must be private, made so with a PutObjectAcl (another tool may have put them public)."""
    peak_in_flight: int = 0
    """The most requests in flight an endpoint's limiter allowed (it follows the round trip)..."""
    max_in_flight: int = 0
    """...and the ceiling it may not pass (``SYNC_MAX_IN_FLIGHT_PER_ENDPOINT``)."""
    parts: dict[str, BatchReport] = field(default_factory=dict)
    """The same figures per partition key, when the batch spans the partitions of a ranged run."""

    def mostly_missing(self) -> str | None:
        example = self.missing[0].key if self.missing else None
        return mostly_missing_error(len(self.missing), self.copied + self.skipped + len(self.missing), example)

    def tally(self, media_object: MediaObject, item: ItemResult) -> None:
        """Count one object's outcome."""
        self.objects += 1
        self.rejected_attempts += item.rejected_attempts
        self.recopied_wrong_content += item.recopied_wrong_content
        self.acls_fixed += item.acl_fixed
        if item.outcome is Outcome.COPIED:
            self.copied += 1
            self.bytes_copied += item.size
        elif item.outcome is Outcome.SKIPPED:
            self.skipped += 1
        elif item.outcome is Outcome.MISSING and media_object.optional:
            self.absent_optional += 1
        elif item.outcome is Outcome.MISSING:
            self.missing.append(
                ObjectProblem(media_object.table, media_object.row_id, item.source_key, "missing at the source")
            )
        else:
            self.failed.append(
                ObjectProblem(media_object.table, media_object.row_id, item.destination_key, item.error or "")
            )
        if item.used_fallback:
            self.fallback_used.append(
                ObjectProblem(
                    media_object.table, media_object.row_id, item.source_key, "found under the other cache/ variant"
                )
            )


AclsNow = Callable[[Sequence[MediaObject]], list[str | None]]
"""The ACL the database gives each object now (``referenced_objects.current_acls``)."""


def copy_items_for(
    objects: list[MediaObject], source: SourceBucket, destination: DestinationBucket, acls: Sequence[str | None]
) -> list[CopyItem]:
    return [
        CopyItem(
            source_key=source.full_key(media_object.key),
            destination_key=destination.full_key(media_object.key),
            acl=acl,
            fallback_source_key=source.full_key(media_object.fallback_key) if media_object.fallback_key else None,
            fallback_destination_key=(
                destination.full_key(media_object.fallback_key) if media_object.fallback_key else None
            ),
            content_type=media_object.content_type,
        )
        for media_object, acl in zip(objects, acls)
    ]


def copy_objects(
    objects: list[MediaObject],
    source: SourceBucket,
    destination: DestinationBucket,
    settings: TransferSettings,
    on_progress: Callable[[BatchProgress], None] | None = None,
    partition_of: Callable[[MediaObject], str] | None = None,
    acls_now: AclsNow | None = None,
) -> BatchReport:
    """Copy one batch; a bucket that cannot be listed at all is a ``ConfigError`` naming its variables
    (refused: credentials, bucket name) or a ``BucketOutage`` (unreachable, 5xx: a retry may help).

    With ``partition_of``, the report's ``parts`` hold the figures of each partition the batch spans.
    With ``acls_now``, the ACLs are read from the database now, not taken from the plan, and again
    during the copy once older than ``settings.acl_max_age``."""
    started = time.monotonic()
    items = copy_items_for(objects, source, destination, acls_now(objects) if acls_now else [o.acl for o in objects])
    fresh_acls = None
    if acls_now is not None:
        object_of = {item.destination_key: media_object for item, media_object in zip(items, objects)}

        def fresh_acls(unfinished: Sequence[CopyItem]) -> list[str | None]:
            return acls_now([object_of[item.destination_key] for item in unfinished])

    try:
        result = copy_batch(
            source.engine_bucket(), destination.engine_bucket(), items, settings, on_progress, fresh_acls
        )
    except BucketUnavailable as unavailable:
        bucket = source if unavailable.role == "source" else destination
        message = bucket.explain(unavailable.error)
        if isinstance(unavailable.error, S3Error) and not unavailable.error.is_retryable:
            raise ConfigError(message) from None  # credentials, bucket name: a retry cannot help
        raise BucketOutage(message) from None  # unreachable or 5xx: the step's retry policy tries again
    in_flight = {
        "peak_in_flight": max(
            result.source_limiter.highest_concurrency, result.destination_limiter.highest_concurrency
        ),
        "max_in_flight": settings.max_in_flight_per_endpoint,
    }
    report = BatchReport(
        requests=result.requests,
        throttled=result.source_limiter.throttled + result.destination_limiter.throttled,
        **in_flight,
    )
    for media_object, item in zip(objects, result.results):
        report.tally(media_object, item)
        if partition_of is not None:
            report.parts.setdefault(partition_of(media_object), BatchReport(**in_flight)).tally(media_object, item)
    report.seconds = time.monotonic() - started
    return report


@dataclass
class PartitionReport:
    read: LastRead | None
    """When the rows were read, and the rows read in the late window (``core.changes``)."""
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
    recopied_wrong_content: int = 0
    rejected_attempts: int = 0
    acls_fixed: int = 0
    peak_in_flight: int = 0
    max_in_flight: int = 0

    @classmethod
    def combine(cls, stats: ReadStats, batches: list[BatchReport]) -> PartitionReport:
        missing = [problem for batch in batches for problem in batch.missing]
        fallback = [problem for batch in batches for problem in batch.fallback_used]
        return cls(
            read=stats.last_read,
            rows=stats.rows,
            planned=stats.objects,
            copied=sum(batch.copied for batch in batches),
            skipped=sum(batch.skipped for batch in batches),
            missing=len(missing),
            failed=sum(len(batch.failed) for batch in batches),
            bytes_copied=sum(batch.bytes_copied for batch in batches),
            invalid_rows=stats.invalid_rows,
            fallback_used=len(fallback),
            missing_objects=missing[:MAX_LISTED_PROBLEMS],
            problems=(stats.invalid_examples + fallback)[:MAX_LISTED_PROBLEMS],
            recopied_wrong_content=sum(batch.recopied_wrong_content for batch in batches),
            rejected_attempts=sum(batch.rejected_attempts for batch in batches),
            acls_fixed=sum(batch.acls_fixed for batch in batches),
            peak_in_flight=max((batch.peak_in_flight for batch in batches), default=0),
            max_in_flight=max((batch.max_in_flight for batch in batches), default=0),
        )
