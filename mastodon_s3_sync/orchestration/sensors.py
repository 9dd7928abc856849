"""Sensors: cut id-range partitions as tables grow; re-sync partitions whose rows changed."""

from __future__ import annotations

import json
from datetime import datetime

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from mastodon_s3_sync.core.id_ranges import last_range_end, next_ranges
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.orchestration.jobs import SYNC_JOBS, sync_job_name
from mastodon_s3_sync.orchestration.partitions import (
    ID_RANGE_PARTITIONS,
    oldest_snapshot,
    partitions_name,
    stale_partitions,
)
from mastodon_s3_sync.orchestration.resources import MastodonDbResource, SyncTuningResource


@sensor(
    name="add_id_range_partitions",
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description="Cuts new full id-range partitions as the media tables grow (keyset steps on the id index).",
)
def add_id_range_partitions(
    context: SensorEvaluationContext, mastodon_db: MastodonDbResource, sync_tuning: SyncTuningResource
) -> SensorResult | SkipReason:
    requests, added = [], []
    with mastodon_db.client().connection() as connection:
        for table in TABLES:
            covered = last_range_end(context.instance.get_dynamic_partitions(partitions_name(table)))
            ranges = next_ranges(connection, table, covered, sync_tuning.partition_rows, include_tail=False)
            if ranges:
                requests.append(ID_RANGE_PARTITIONS[table].build_add_request([r.key for r in ranges]))
                added.append(f"{table}: {len(ranges)}")
    if not requests:
        return SkipReason("no table has grown by a full partition")
    context.log.info(f"new partitions: {', '.join(added)}")
    return SensorResult(dynamic_partitions_requests=requests)


def build_resync_changed_rows(interval_seconds: int) -> SensorDefinition:
    """The changed-rows scan reads whole tables (the columns have no index): hourly by default."""

    @sensor(
        name="resync_changed_rows",
        jobs=list(SYNC_JOBS.values()),
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description="Re-syncs partitions whose rows' <att>_updated_at moved past the partition's last sync.",
    )
    def resync_changed_rows(context: SensorEvaluationContext, mastodon_db: MastodonDbResource):
        cursor = json.loads(context.cursor) if context.cursor else {}
        requests = []
        database = mastodon_db.client()
        with database.connection() as connection:
            scan_started = database.clock(connection)
            for name, table in TABLES.items():
                since = (
                    datetime.fromisoformat(cursor[name]) if name in cursor else oldest_snapshot(context.instance, name)
                )
                stale = stale_partitions(context.instance, connection, table, since) if since else {}
                requests += [
                    RunRequest(
                        job_name=sync_job_name(name),
                        partition_key=key,
                        run_key=f"{name}:{key}:{changed_at.isoformat()}",
                        tags={"mastodon_s3_sync/reason": "changed rows"},
                    )
                    for key, changed_at in sorted(stale.items())
                ]
                cursor[name] = scan_started.isoformat()
        return SensorResult(run_requests=requests, cursor=json.dumps(cursor))

    return resync_changed_rows
