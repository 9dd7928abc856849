"""Tuning knobs, with defaults that suit most instances (``SYNC_*`` variables override)."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from mastodon_s3_sync.plan import PlanRates
from mastodon_s3_sync.transfer.engine import MiB, TransferSettings


class SyncTuning(ConfigurableResource):
    partition_rows: int = Field(default=20_000, description="SYNC_PARTITION_ROWS: rows per id-range partition")
    batch_objects: int = Field(default=5_000, description="SYNC_BATCH_OBJECTS: objects per copy step")
    batch_megabytes: int = Field(default=4_096, description="SYNC_BATCH_MB: expected bytes per copy step")
    concurrency: int = Field(default=64, description="SYNC_CONCURRENCY: objects in flight per copy step")
    requests_per_second: float | None = Field(
        default=None, description="SYNC_REQUESTS_PER_SECOND: per endpoint, for providers with hard limits"
    )
    memory_megabytes: int = Field(default=256, description="SYNC_MEMORY_MB: object bytes held at once per step")
    part_size_megabytes: int = Field(default=8, description="SYNC_PART_SIZE_MB: multipart part size")
    multipart_threshold_megabytes: int = Field(default=16, description="SYNC_MULTIPART_THRESHOLD_MB")
    plan_objects_per_second: float = Field(
        default=500.0, description="SYNC_PLAN_OBJECTS_PER_SECOND: the rate `plan` estimates the time with"
    )
    plan_megabytes_per_second: float = Field(
        default=50.0, description="SYNC_PLAN_MB_PER_SECOND: the bandwidth `plan` estimates the time with"
    )

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


TUNING_VARIABLES = {
    "SYNC_PARTITION_ROWS": ("partition_rows", int),
    "SYNC_BATCH_OBJECTS": ("batch_objects", int),
    "SYNC_BATCH_MB": ("batch_megabytes", int),
    "SYNC_CONCURRENCY": ("concurrency", int),
    "SYNC_REQUESTS_PER_SECOND": ("requests_per_second", float),
    "SYNC_MEMORY_MB": ("memory_megabytes", int),
    "SYNC_PART_SIZE_MB": ("part_size_megabytes", int),
    "SYNC_MULTIPART_THRESHOLD_MB": ("multipart_threshold_megabytes", int),
    "SYNC_PLAN_OBJECTS_PER_SECOND": ("plan_objects_per_second", float),
    "SYNC_PLAN_MB_PER_SECOND": ("plan_megabytes_per_second", float),
}
