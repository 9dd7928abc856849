"""The code location: assets, jobs, schedules, sensors and resources assembled in one place."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from mastodon_s3_sync.assets.media import MEDIA_ASSETS
from mastodon_s3_sync.assets.observations import plan_migration
from mastodon_s3_sync.checks import DESTINATION_CHECKS
from mastodon_s3_sync.config import load_environment
from mastodon_s3_sync.jobs import SYNC_JOBS, VERIFY_JOB
from mastodon_s3_sync.resources import build_resources
from mastodon_s3_sync.schedules import CATCH_UP_SCHEDULES, VERIFY_SCHEDULE
from mastodon_s3_sync.sensors import add_id_range_partitions, resync_changed_rows


def build_definitions() -> Definitions:
    """Definitions for the current environment: which optional variables are set decides
    which resource fields are bound to EnvVars, so reload the location after changing them."""
    load_environment()
    return Definitions(
        assets=MEDIA_ASSETS,
        asset_checks=DESTINATION_CHECKS,
        jobs=[*SYNC_JOBS.values(), VERIFY_JOB, plan_migration],
        schedules=[*CATCH_UP_SCHEDULES, VERIFY_SCHEDULE],
        sensors=[add_id_range_partitions, resync_changed_rows],
        resources=build_resources(),
        # Asset-page materializations and backfills run __ASSET_JOB: in-process like sync_<asset>.
        executor=in_process_executor,
    )


defs = build_definitions()
