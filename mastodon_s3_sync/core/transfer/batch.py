"""What a batch is: its settings, its items and what became of each (``copy_batch`` in ``engine.py``
copies one).

A batch's outcome per item is one of ``Outcome``; a copied object's ``ItemResult.check`` says how
it was proven equal to its source (``proof.Check``). A bucket that cannot be listed at all fails
the whole batch (``BucketUnavailable``), not each item.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mastodon_s3_sync.core.transfer.limiter import LimiterStats
from mastodon_s3_sync.core.transfer.proof import Check
from mastodon_s3_sync.core.transfer.s3 import Bucket, S3Error
from mastodon_s3_sync.core.tuning import MiB, Tuning


@dataclass(frozen=True)
class TransferSettings:
    """The defaults of the knobs that ``SYNC_*`` variables set are ``Tuning``'s, written once there."""

    concurrency: int = Tuning.concurrency
    """Requests in flight per endpoint to start with (``limiter.py``); the limit then follows the round trip."""
    max_in_flight_per_endpoint: int = Tuning.max_in_flight_per_endpoint
    """The most requests in flight per endpoint, however long the round trip; also the most objects at once."""
    requests_per_second: float | None = Tuning.requests_per_second
    """Per endpoint; None for no limit beyond the in-flight cap."""
    multipart_threshold: int = Tuning.multipart_threshold_megabytes * MiB
    part_size: int = Tuning.part_size_megabytes * MiB
    memory_budget: int = Tuning.memory_megabytes * MiB
    """Bytes of object data held at once; bounds memory however large the objects are."""
    large_object_bandwidth: float = 125e6
    """Bytes/s (a 1 Gbit/s link) the parts of the large objects being copied aim for together: as many
    parts in flight as that takes at the throughput measured per connection, within the byte budget
    (``parallel_parts.lanes``)."""
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
            max_in_flight_per_endpoint=tuning.max_in_flight_per_endpoint,
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
    content_type: str | None = None
    """The Content-Type Mastodon gives the object, for a source that stores none (a directory)."""


class Outcome(enum.StrEnum):
    COPIED = "copied"
    """Written and proven equal to the source (``ItemResult.check`` says how)."""
    SKIPPED = "skipped"
    """Already at the destination with the source's size (and ETag, where both state an MD5)."""
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
    in_flight: int = 0
    """Requests in flight the busier endpoint's limiter allows now (it follows the round trip)..."""
    max_in_flight: int = 0
    """...up to this ceiling (``max_in_flight_per_endpoint``)."""
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


class BucketUnavailable(Exception):
    """Listing a bucket failed for good (bad credentials, no such bucket, unreachable)."""

    def __init__(self, role: str, bucket: Bucket, error: BaseException):
        super().__init__(f"{role} bucket {bucket.name!r} at {bucket.base_url}: {describe_error(error)}")
        self.role = role
        self.bucket = bucket
        self.error = error


def describe_error(error: BaseException) -> str:
    """An error in words for an item's result and the run's log (an ``S3Error`` says its own type)."""
    return f"{type(error).__name__}: {error}" if not isinstance(error, S3Error) else str(error)
