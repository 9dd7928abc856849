"""Id-range partitions in Dagster: one dynamic partitions definition per table, the
partitions' records in the instance (which are synced, when their rows were read),
and cutting new ranges into the instance.

The ranges themselves (keys, cutting SQL) are ``core.id_ranges``; which rows
changed is ``core.changes``. Here they meet the instance's records.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, DynamicPartitionsDefinition

from mastodon_s3_sync.core.changes import changes_by_partition
from mastodon_s3_sync.core.id_ranges import IdRange, last_range_end, next_ranges, parse_partition_key
from mastodon_s3_sync.core.mastodon.tables import TABLES, MediaTable

SNAPSHOT_AT = "db_snapshot_at"
"""Materialization metadata key: the database clock (UTC) when the partition's rows were read.
Staleness is decided against it, so it is part of the record, not only of the UI."""


SNAPSHOT_OVERLAP = timedelta(minutes=10)
"""Rails stamps ``<att>_updated_at`` before its transaction commits, so a change can become
visible after a scan that started later than its stamp: the sensor's passes look back this far."""


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
"""The tags of a run over several partitions (what backfills with a multi-run policy launch)."""


def partitions_name(table: str) -> str:
    return f"{table}_id_ranges"


ID_RANGE_PARTITIONS: dict[str, DynamicPartitionsDefinition] = {
    table: DynamicPartitionsDefinition(name=partitions_name(table)) for table in TABLES
}


def add_new_partitions(instance, database, table: str, rows_per_partition: int, *, include_tail: bool) -> list[str]:
    """Cut the ranges that rows added since the last partition need, and register them."""
    name = partitions_name(table)
    with database.connection() as connection:
        ranges = next_ranges(
            connection,
            table,
            last_range_end(instance.get_dynamic_partitions(name)),
            rows_per_partition,
            include_tail=include_tail,
        )
    keys = [id_range.key for id_range in ranges]
    if keys:
        instance.add_dynamic_partitions(name, keys)
    return keys


def unsynced_partitions(instance: DagsterInstance, table: str) -> list[str]:
    """Partitions without a successful materialization: never run, failed, or interrupted."""
    materialized = instance.get_materialized_partitions(AssetKey(table))
    return [key for key in instance.get_dynamic_partitions(partitions_name(table)) if key not in materialized]


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
    instance: DagsterInstance,
    connection,
    table: MediaTable,
    since: datetime | None = None,
    within: IdRange | None = None,
) -> dict[str, datetime]:
    """Synced partitions with rows changed after their last sync read them -> latest change.

    Without ``within`` the whole table is read (``sync``, once per call); with it only
    the rows and partitions inside that id range (the sensor's slice of a pass)."""
    since = since or oldest_snapshot(instance, table.name)
    if since is None:
        return {}
    ranges = [parse_partition_key(key) for key in instance.get_dynamic_partitions(partitions_name(table.name))]
    changes = changes_by_partition(connection, table, since, ranges, within)
    snapshots = snapshot_times(instance, table.name, changes)
    return {key: changed_at for key, changed_at in changes.items() if key in snapshots and changed_at > snapshots[key]}
