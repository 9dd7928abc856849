"""Which synced partitions have rows that changed since they were read.

Mastodon moves ``<att>_updated_at`` whenever an attachment's file changes (a
replaced avatar, re-fetched remote media, eviction). A partition is stale when
one of its rows moved past the database time at which the partition's last
successful sync read its rows (``db_snapshot_at`` in the materialization; the
database's own clock, so no skew between machines). These columns have no
index in Mastodon, so finding changes scans the table: the sensor runs it on
a long interval with a cursor, ``sync`` once per call.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance

from mastodon_s3_sync.mastodon.tables import MediaTable
from mastodon_s3_sync.partitions import IdRange, parse_partition_key, partitions_name
from mastodon_s3_sync.reporting import SNAPSHOT_AT


def changed_rows_sql(table: MediaTable) -> str:
    stamps = [f"{attachment.column('updated_at')}" for attachment in table.attachments]
    changed_at = stamps[0] if len(stamps) == 1 else f"GREATEST({', '.join(stamps)})"
    return f"SELECT id, {changed_at} FROM {table.name} WHERE {changed_at} > %s"


def changes_by_partition(
    connection, table: MediaTable, since: datetime, ranges: Iterable[IdRange]
) -> dict[str, datetime]:
    """Partition key -> the latest change among its rows changed after ``since``."""
    ordered = sorted(ranges)
    starts = [id_range.lo for id_range in ordered]
    latest: dict[str, datetime] = {}
    with connection.cursor() as cursor:
        cursor.execute(changed_rows_sql(table), (since,))
        for record_id, changed_at in cursor:
            position = bisect.bisect_right(starts, record_id) - 1
            if position < 0 or record_id not in ordered[position]:
                continue  # not in a partition yet: the next partition cut covers it
            key = ordered[position].key
            if key not in latest or changed_at > latest[key]:
                latest[key] = changed_at
    return latest


def snapshot_times(instance: DagsterInstance, table: str, keys: Iterable[str]) -> dict[str, datetime]:
    """Partition key -> ``db_snapshot_at`` of its latest materialization (absent if never synced)."""
    wanted = list(keys)
    snapshots: dict[str, datetime] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        records = instance.fetch_materializations(
            AssetRecordsFilter(AssetKey(table), asset_partitions=chunk), limit=len(chunk) * 20
        ).records
        for record in records:  # newest first
            materialization = record.asset_materialization
            if materialization.partition in snapshots or SNAPSHOT_AT not in materialization.metadata:
                continue
            snapshots[materialization.partition] = datetime.fromisoformat(materialization.metadata[SNAPSHOT_AT].value)
    return snapshots


def oldest_snapshot(instance: DagsterInstance, table: str) -> datetime | None:
    """The earliest ``db_snapshot_at`` among partitions' latest syncs: no stale row changed before it."""
    latest_ids = instance.get_latest_storage_id_by_partition(AssetKey(table), DagsterEventType.ASSET_MATERIALIZATION)
    if not latest_ids:
        return None
    oldest_partition = min(latest_ids, key=latest_ids.get)
    return snapshot_times(instance, table, [oldest_partition]).get(oldest_partition)


def stale_partitions(
    instance: DagsterInstance, connection, table: MediaTable, since: datetime | None = None
) -> dict[str, datetime]:
    """Synced partitions with rows changed after their last sync read them -> latest change."""
    since = since or oldest_snapshot(instance, table.name)
    if since is None:
        return {}
    ranges = [parse_partition_key(key) for key in instance.get_dynamic_partitions(partitions_name(table.name))]
    changes = changes_by_partition(connection, table, since, ranges)
    snapshots = snapshot_times(instance, table.name, changes)
    return {key: changed_at for key, changed_at in changes.items() if key in snapshots and changed_at > snapshots[key]}
