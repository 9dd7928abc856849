"""The code location: assets, checks, jobs, schedules, sensors and resources assembled in one place.

Built when Dagster loads the location (``@definitions``), never at import time, so a bad
variable is the one-line ``ConfigError`` that names it.
"""

from __future__ import annotations

import os

from dagster import Definitions, definitions, in_process_executor

from mastodon_s3_sync.core import settings
from mastodon_s3_sync.definitions.acl_refresh import build_acl_refresh_schedule, refresh_destination_acls
from mastodon_s3_sync.definitions.assets import build_media_assets
from mastodon_s3_sync.definitions.checks import DESTINATION_CHECKS
from mastodon_s3_sync.definitions.jobs import SYNC_JOBS, VERIFY_JOB
from mastodon_s3_sync.definitions.plan_job import plan_migration
from mastodon_s3_sync.definitions.resources import build_resources
from mastodon_s3_sync.definitions.schedules import build_schedules
from mastodon_s3_sync.definitions.sensors import add_id_range_partitions, build_resync_changed_rows


def build_definitions() -> Definitions:
    """Definitions for the current environment: which optional variables are set decides
    which resource fields are bound to EnvVars, so reload the location after changing them."""
    settings.load_environment()
    return Definitions(
        assets=build_media_assets(settings.value("SYNC_PARTITIONS_PER_RUN")),
        asset_checks=DESTINATION_CHECKS,
        jobs=[*SYNC_JOBS.values(), VERIFY_JOB, plan_migration, refresh_destination_acls],
        schedules=[
            *build_schedules(settings.value("SYNC_SCHEDULE_CRON"), settings.value("SYNC_VERIFY_CRON")),
            build_acl_refresh_schedule(settings.value("SYNC_ACL_REFRESH_CRON")),
        ],
        sensors=[
            add_id_range_partitions,
            build_resync_changed_rows(
                settings.value("SYNC_CHANGES_INTERVAL_SECONDS"), settings.value("SYNC_CHANGES_ROWS_PER_TICK")
            ),
        ],
        resources=build_resources(os.environ),
        # Asset-page materializations and backfills run __ASSET_JOB: in-process like sync_<asset>.
        executor=in_process_executor,
    )


@definitions
def defs() -> Definitions:
    return build_definitions()
