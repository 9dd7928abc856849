"""Tuning knobs with defaults that suit most instances (``SYNC_*`` variables override them).

Plain data, importing nothing of the package: ``settings`` takes the variables' defaults from
here, and ``TransferSettings.tuned`` and ``PlanRates.tuned`` turn the knobs into what the engine
and the plan use (``TransferSettings``' own defaults are these too)."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
"""The unit of the ``*_megabytes`` knobs and of the engine's byte sizes."""


@dataclass(frozen=True)
class Tuning:
    partition_rows: int = 20_000
    batch_objects: int = 5_000
    batch_megabytes: int = 4_096
    concurrency: int = 64
    max_in_flight_per_endpoint: int = 512
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
