"""Catch-up schedules: cut partitions for the rows added since the last tick and sync them."""

from __future__ import annotations

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from mastodon_s3_sync.definitions.jobs import SYNC_JOBS, VERIFY_JOB
from mastodon_s3_sync.definitions.partitions import add_new_partitions, partitions_in_progress, unsynced_partitions
from mastodon_s3_sync.definitions.resources import MastodonDbResource, SyncTuningResource


def build_catch_up_schedule(table: str, cron: str) -> ScheduleDefinition:
    job = SYNC_JOBS[table]

    @schedule(
        name=f"catch_up_{table}",
        job=job,
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Cuts a partition for the {table} rows added since the last tick (even a short one) "
        "and syncs every partition never synced yet.",
    )
    def catch_up(context: ScheduleEvaluationContext, mastodon_db: MastodonDbResource, sync_tuning: SyncTuningResource):
        added = add_new_partitions(
            context.instance, mastodon_db.client(), table, sync_tuning.partition_rows, include_tail=True
        )
        unsynced = unsynced_partitions(context.instance, table)
        running = partitions_in_progress(context.instance, table, unsynced)
        pending = [key for key in unsynced if key not in running]
        if not pending:
            return SkipReason(f"{table}: nothing new ({len(added)} partitions added)")
        # run_key = the partition: a schedule requests a partition's first sync once; crashed runs
        # are retried by run retries, failed ones by a backfill or `mastodon-s3-sync sync`.
        return [
            RunRequest(run_key=key, partition_key=key, tags={"mastodon_s3_sync/reason": "new rows"}) for key in pending
        ]

    return catch_up


def build_schedules(catch_up_cron: str, verify_cron: str) -> list[ScheduleDefinition]:
    """A catch-up schedule per table and the daily verify, on the configured crons."""
    verify = ScheduleDefinition(
        name="verify_destination_daily",
        job=VERIFY_JOB,
        cron_schedule=verify_cron,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Runs the destination checks daily, so the asset graph shows where the migration stands.",
    )
    return [*(build_catch_up_schedule(table, catch_up_cron) for table in SYNC_JOBS), verify]
