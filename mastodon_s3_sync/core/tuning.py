"""Tuning knobs with defaults that suit most instances (``SYNC_*`` variables override them)."""

from __future__ import annotations

from dataclasses import dataclass

from mastodon_s3_sync.core.planning import PlanRates
from mastodon_s3_sync.core.transfer.engine import MiB, TransferSettings


@dataclass(frozen=True)
class Tuning:
    partition_rows: int = 20_000
    batch_objects: int = 5_000
    batch_megabytes: int = 4_096
    concurrency: int = 64
    requests_per_second: float | None = None
    memory_megabytes: int = 256
    part_size_megabytes: int = 8
    multipart_threshold_megabytes: int = 16
    plan_objects_per_second: float = 500.0
    plan_megabytes_per_second: float = 50.0
    accept_missing: bool = False
    """Go on when most referenced objects are missing at the source (``copying.mostly_missing_error``)."""
    change_overlap_minutes: int = 60
    """How long before it becomes visible a change may be stamped (a commit after a minutes-long
    transcode, an app server's clock behind the database's): change detection looks back this far."""

    def plan_rates(self) -> PlanRates:
        return PlanRates(self.plan_objects_per_second, self.plan_megabytes_per_second)

    def transfer_settings(self, storage_class: str | None) -> TransferSettings:
        return TransferSettings(
            concurrency=self.concurrency,
            max_in_flight_per_endpoint=self.concurrency,
            requests_per_second=self.requests_per_second,
            multipart_threshold=self.multipart_threshold_megabytes * MiB,
            part_size=self.part_size_megabytes * MiB,
            memory_budget=self.memory_megabytes * MiB,
            storage_class=storage_class,
        )
