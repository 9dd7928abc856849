"""Sensors: cut id-range partitions as tables grow; re-sync partitions whose rows changed."""

from __future__ import annotations

import json
import os
from datetime import datetime

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from mastodon_s3_sync.changes import oldest_snapshot, stale_partitions
from mastodon_s3_sync.jobs import SYNC_JOBS, sync_job_name
from mastodon_s3_sync.mastodon.tables import TABLES
from mastodon_s3_sync.partitions import ID_RANGE_PARTITIONS, last_range_end, next_ranges, partitions_name
from mastodon_s3_sync.resources import MastodonDatabase, SyncTuning

CHANGES_INTERVAL = int(os.environ.get("SYNC_CHANGES_INTERVAL_SECONDS") or 3600)
"""The changed-rows scan reads whole tables (the columns have no index): hourly by default."""


@sensor(
    name="add_id_range_partitions",
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description="Cuts new full id-range partitions as the media tables grow (keyset steps on the id index).",
)
def add_id_range_partitions(
    context: SensorEvaluationContext, mastodon_db: MastodonDatabase, sync_tuning: SyncTuning
) -> SensorResult | SkipReason:
    requests, added = [], []
    with mastodon_db.connection() as connection:
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


@sensor(
    name="resync_changed_rows",
    jobs=list(SYNC_JOBS.values()),
    minimum_interval_seconds=CHANGES_INTERVAL,
    default_status=DefaultSensorStatus.STOPPED,
    description="Re-syncs partitions whose rows' <att>_updated_at moved past the partition's last sync.",
)
def resync_changed_rows(context: SensorEvaluationContext, mastodon_db: MastodonDatabase):
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests = []
    with mastodon_db.connection() as connection:
        scan_started = mastodon_db.clock(connection)
        for name, table in TABLES.items():
            since = datetime.fromisoformat(cursor[name]) if name in cursor else oldest_snapshot(context.instance, name)
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
