"""Id-range partitions in Dagster: one dynamic partitions definition per table, the
partitions' records in the instance (which are synced, when their rows were read),
and cutting new ranges into the instance.

The ranges themselves (keys, cutting SQL) are ``core.id_ranges``; which rows
changed is ``core.changes``. Here they meet the instance's records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DynamicPartitionsDefinition,
    MetadataValue,
    RunsFilter,
)

from mastodon_s3_sync.core.changes import LastRead, LateRows, PartitionCheck, check_partitions
from mastodon_s3_sync.core.id_ranges import IdRange, last_range_end, next_ranges, parse_partition_key
from mastodon_s3_sync.core.mastodon.tables import TABLES, MediaTable
from mastodon_s3_sync.definitions.jobs import sync_job_name

SNAPSHOT_AT = "db_snapshot_at"
"""Materialization metadata key: the database clock (UTC) when the partition's rows were read.
Staleness is decided against it, so it is part of the record, not only of the UI."""
LATE_WINDOW_FROM = "late_window_from"
LATE_WINDOW_ROWS = "late_window_rows"
LATE_WINDOW_FINGERPRINT = "late_window_fingerprint"
"""The read's late window (``core.changes``): where it starts, and the rows read in it."""


def read_metadata(read: LastRead | None) -> dict[str, MetadataValue]:
    """A partition's ``LastRead`` as materialization metadata (``last_read`` reads it back)."""
    if read is None:
        return {SNAPSHOT_AT: MetadataValue.text("")}
    late_rows = read.late_rows or LateRows()
    return {
        SNAPSHOT_AT: MetadataValue.text(read.snapshot_at.isoformat()),
        LATE_WINDOW_FROM: MetadataValue.text(read.window_start.isoformat()),
        LATE_WINDOW_ROWS: MetadataValue.int(late_rows.count),
        LATE_WINDOW_FINGERPRINT: MetadataValue.text(f"{late_rows.fingerprint:016x}"),
    }


def last_read(metadata: Mapping[str, object], overlap: timedelta) -> LastRead:
    """The ``LastRead`` a materialization's metadata records. One recorded before late windows
    were kept gets a window of ``overlap`` with unknown rows: a row in it makes it stale once."""
    snapshot_at = datetime.fromisoformat(metadata[SNAPSHOT_AT].value)
    if LATE_WINDOW_FINGERPRINT not in metadata:
        return LastRead(snapshot_at, snapshot_at - overlap, None)
    late_rows = LateRows(metadata[LATE_WINDOW_ROWS].value, int(metadata[LATE_WINDOW_FINGERPRINT].value, 16))
    return LastRead(snapshot_at, datetime.fromisoformat(metadata[LATE_WINDOW_FROM].value), late_rows)


PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
"""The tags of a run over one partition, and of a run over several contiguous ones (what backfills with
a multi-run policy and ``sync`` launch). Dagster's own (test_dagster_internals checks them)."""
_NOT_IN_PROGRESS = {
    DagsterRunStatus.SUCCESS,
    DagsterRunStatus.FAILURE,
    DagsterRunStatus.CANCELED,
    DagsterRunStatus.MANAGED,
}
UNFINISHED_STATUSES = [status for status in DagsterRunStatus if status not in _NOT_IN_PROGRESS]
"""Queued, starting, started, canceling...: the runs Dagster counts as not finished (a MANAGED run is
not one Dagster runs)."""


def range_tags(keys: Sequence[str]) -> dict[str, str]:
    """The tags of a run over ``keys`` (contiguous, in id order), as backfills tag their ranged runs."""
    return {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]}


def partitions_in_progress(instance: DagsterInstance, table: str, keys: Iterable[str]) -> dict[str, str]:
    """Those of ``keys`` that an unfinished run materializes -> its run id: a run of ``table``'s sync job
    or of any job selecting its asset (a backfill from the asset page), over that one partition or over
    a range of partitions that includes it."""
    wanted = {key: parse_partition_key(key) for key in keys}
    found: dict[str, str] = {}
    for run in instance.get_runs(RunsFilter(statuses=UNFINISHED_STATUSES)):  # newest first
        if run.job_name != sync_job_name(table) and AssetKey(table) not in (run.asset_selection or ()):
            continue
        if run.tags.get(PARTITION_TAG) in wanted:
            found.setdefault(run.tags[PARTITION_TAG], run.run_id)
        start, end = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
        if start and end:
            lo, hi = parse_partition_key(start).lo, parse_partition_key(end).hi
            for key, id_range in wanted.items():
                if lo <= id_range.lo and id_range.hi <= hi:
                    found.setdefault(key, run.run_id)
    return found


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


def _latest_read_metadata(instance: DagsterInstance, table: str, keys: Iterable[str]) -> dict[str, Mapping]:
    """Partition key -> the metadata of its latest materialization that records a read (absent if never synced).

    Each partition's latest materialization is found by its storage id, so a partition re-synced
    many times cannot crowd others out of a shared page of records."""
    asset = AssetKey(table)
    latest = instance.get_latest_storage_id_by_partition(asset, DagsterEventType.ASSET_MATERIALIZATION, set(keys))
    found: dict[str, Mapping] = {}
    storage_ids = list(latest.values())
    for start in range(0, len(storage_ids), 500):
        chunk = storage_ids[start : start + 500]
        for record in instance.fetch_materializations(
            AssetRecordsFilter(asset, storage_ids=chunk), limit=len(chunk)
        ).records:
            materialization = record.asset_materialization
            if _records_a_read(materialization.metadata):
                found[materialization.partition] = materialization.metadata
    for key in latest.keys() - found.keys():  # its latest records no read (reported by hand): look further back
        cursor, more = None, True
        while more and key not in found:
            page = instance.fetch_materializations(AssetRecordsFilter(asset, asset_partitions=[key]), 100, cursor)
            for record in page.records:  # newest first
                if _records_a_read(record.asset_materialization.metadata):
                    found[key] = record.asset_materialization.metadata
                    break
            cursor, more = page.cursor, page.has_more
    return found


def _records_a_read(metadata: Mapping) -> bool:
    return bool(metadata.get(SNAPSHOT_AT) and metadata[SNAPSHOT_AT].value)


def snapshot_times(instance: DagsterInstance, table: str, keys: Iterable[str]) -> dict[str, datetime]:
    """Partition key -> ``db_snapshot_at`` of its latest materialization (absent if never synced)."""
    return {
        key: datetime.fromisoformat(metadata[SNAPSHOT_AT].value)
        for key, metadata in _latest_read_metadata(instance, table, keys).items()
    }


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
    overlap: timedelta,
    within: IdRange | None = None,
) -> dict[str, str]:
    """Synced partitions whose rows changed after their last sync read them, or whose late window
    no longer holds the rows that read saw (``core.changes``) -> the state found (a run key part).

    Without ``within`` the whole table is read (``sync``, once per call); with it only
    the rows and partitions inside that id range (the sensor's slice of a pass). ``overlap`` is
    the late window of syncs that recorded none (``last_read``)."""
    ranges = [parse_partition_key(key) for key in instance.get_dynamic_partitions(partitions_name(table.name))]
    if within is not None:
        ranges = [r for r in ranges if within.lo <= r.lo and r.hi <= within.hi]
    reads = _latest_read_metadata(instance, table.name, [r.key for r in ranges])
    checks = {r: PartitionCheck(last_read(reads[r.key], overlap)) for r in ranges if r.key in reads}
    check_partitions(connection, table, checks, within)
    return {id_range.key: check.state for id_range, check in checks.items() if check.stale}
