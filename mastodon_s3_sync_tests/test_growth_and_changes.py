"""A growing, changing instance: the partition sensor, the catch-up schedule, the
changed-rows sensor and ``sync``'s own catch-up, against real PostgreSQL and S3."""

from __future__ import annotations

import json
import os
from contextlib import closing
from datetime import UTC, datetime

import psycopg2
import psycopg2.extensions
from dagster import SensorResult, SkipReason, build_schedule_context, build_sensor_context
from mastodon_s3_sync_demo.fake_instance import CACHE_CONTROL, seed_bulk

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.id_ranges import parse_partition_key
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.settings import value
from mastodon_s3_sync.orchestration.definitions import build_definitions
from mastodon_s3_sync.orchestration.partitions import partitions_name
from mastodon_s3_sync.orchestration.resources import build_resources
from mastodon_s3_sync.orchestration.runs import sync_tables
from mastodon_s3_sync.orchestration.schedules import build_catch_up_schedule
from mastodon_s3_sync.orchestration.sensors import add_id_range_partitions, build_resync_changed_rows
from mastodon_s3_sync_tests.conftest import make_migration

resync_changed_rows = build_resync_changed_rows(3600, value("SYNC_CHANGES_ROWS_PER_TICK", {}))

PARTITION_ROWS = 10


def prepare(migration, environment, **extra):
    environment({**migration.environment(), "SYNC_PARTITION_ROWS": str(PARTITION_ROWS), **extra})
    return configured()


def dagster_resources():
    """The code location's own resources, bound to the environment as a run binds them."""
    return build_resources(os.environ)


def execute(dagster_instance, request_or_key, table):
    job = build_definitions().resolve_job_def(f"sync_{table}")
    key = getattr(request_or_key, "partition_key", request_or_key)
    assert job.execute_in_process(instance=dagster_instance, partition_key=key).success


def test_partition_sensor_adds_exactly_the_new_full_partitions(
    database_url, rclone_source, rclone_destination, dagster_instance, environment
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    prepare(migration, environment)
    context = build_sensor_context(instance=dagster_instance, resources=dagster_resources())

    def tick():
        result = add_id_range_partitions(context)
        if isinstance(result, SensorResult):
            for request in result.dynamic_partitions_requests:
                dagster_instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    first = tick()
    media_keys = dagster_instance.get_dynamic_partitions(partitions_name("media_attachments"))
    rows = migration.instance.row_counts["media_attachments"]
    assert len(media_keys) == rows // PARTITION_ROWS, "only full partitions; the tail waits"
    assert isinstance(first, SensorResult)
    assert isinstance(tick(), SkipReason), "no growth, no new partition"

    seed_bulk(database_url, migration.source.client(), migration.source_bucket, rows=25)
    tick()
    grown = dagster_instance.get_dynamic_partitions(partitions_name("media_attachments"))
    assert grown[: len(media_keys)] == media_keys
    assert len(grown) == (rows + 25) // PARTITION_ROWS


def test_catch_up_schedule_syncs_new_rows_once(
    database_url, rclone_source, rclone_destination, dagster_instance, environment
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    prepare(migration, environment)
    schedule = build_catch_up_schedule("custom_emojis", "0 * * * *")
    context = build_schedule_context(
        instance=dagster_instance,
        resources=dagster_resources(),
        scheduled_execution_time=datetime.now(UTC),
        repository_def=build_definitions().get_repository_def(),
    )
    requests = schedule.evaluate_tick(context).run_requests
    keys = dagster_instance.get_dynamic_partitions(partitions_name("custom_emojis"))
    assert [request.partition_key for request in requests] == keys, "a tail partition is cut and requested"
    assert all(request.run_key == request.partition_key for request in requests)
    for request in requests:
        execute(dagster_instance, request, "custom_emojis")
    assert schedule.evaluate_tick(context).skip_message, "nothing new after the sync"

    with closing(psycopg2.connect(migration.database_url)) as connection, connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO custom_emojis (shortcode, image_file_name, image_content_type, image_file_size, "
            "image_updated_at, created_at, updated_at) VALUES ('late', 'feedbeef.png', 'image/png', 3, now(), now(), now())"
        )
    [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key not in keys


def test_changed_avatar_is_resynced_by_the_sensor_and_by_sync(
    database_url, rclone_source, rclone_destination, dagster_instance, environment
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    resources = prepare(migration, environment)
    [first] = sync_tables(
        build_definitions(), dagster_instance, ["accounts"], resources["mastodon_db"], resources["sync_tuning"]
    )
    assert not first.failed

    context = build_sensor_context(instance=dagster_instance, resources=dagster_resources())
    quiet = resync_changed_rows(context)
    assert not quiet.run_requests, "nothing changed since the sync"

    account = next(
        row for row in migration.instance.rows["accounts"] if row["avatar_file_name"] and row["domain"] is None
    )
    new_name = "0123456789abcdef.png"
    id_directories = "/".join(f"{account['id']:09d}"[i : i + 3] for i in (0, 3, 6))
    new_key = f"accounts/avatars/{id_directories}/original/{new_name}"
    migration.source.client().put_object(
        Bucket=migration.source_bucket,
        Key=new_key,
        Body=b"a new avatar",
        ContentType="image/png",
        CacheControl=CACHE_CONTROL,
    )
    with closing(psycopg2.connect(migration.database_url)) as connection, connection, connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts SET avatar_file_name = %s, avatar_content_type = 'image/png', avatar_file_size = 12, "
            "avatar_updated_at = now() AT TIME ZONE 'UTC' WHERE id = %s",
            (new_name, account["id"]),
        )

    context = build_sensor_context(instance=dagster_instance, resources=dagster_resources(), cursor=quiet.cursor)
    [request] = resync_changed_rows(context).run_requests
    assert request.job_name == "sync_accounts"
    assert account["id"] in parse_partition_key(request.partition_key)
    execute(dagster_instance, request, "accounts")
    body = migration.destination.client().get_object(Bucket=migration.destination_bucket, Key=new_key)["Body"].read()
    assert body == b"a new avatar"
    again = build_sensor_context(instance=dagster_instance, resources=dagster_resources(), cursor=quiet.cursor)
    assert not resync_changed_rows(again).run_requests, "a re-synced partition is no longer stale"

    # sync's own catch-up sees the same kind of change
    with closing(psycopg2.connect(migration.database_url)) as connection, connection, connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts SET avatar_updated_at = now() AT TIME ZONE 'UTC' WHERE id = %s", (account["id"],)
        )
    [second] = sync_tables(
        build_definitions(), dagster_instance, ["accounts"], resources["mastodon_db"], resources["sync_tuning"]
    )
    assert second.changed == [request.partition_key]
    assert second.succeeded == [request.partition_key] and second.copied == 0, "already there: skipped cheaply"


def test_changed_rows_sensor_reads_one_slice_per_tick_and_finds_a_change_within_a_pass(
    database_url, rclone_source, rclone_destination, dagster_instance, environment
):
    """With a budget of two partitions per tick, each tick reads a bounded id slice of each
    table (a range, never the table), the cursor walks the partitions, and a changed avatar
    is found within one pass of the change, exactly once."""
    migration = make_migration(database_url, rclone_source, rclone_destination)
    resources = prepare(migration, environment)
    sliced = build_resync_changed_rows(3600, rows_per_tick=2 * PARTITION_ROWS)
    synced = sync_tables(
        build_definitions(), dagster_instance, list(TABLES), resources["mastodon_db"], resources["sync_tuning"]
    )
    assert not any(result.failed for result in synced)
    partitions = sum(len(dagster_instance.get_dynamic_partitions(partitions_name(t))) for t in TABLES)
    ticks_per_pass = -(-partitions // 2)
    assert ticks_per_pass > 2, "the fake instance has enough partitions to need several ticks"

    statements: list[tuple[str, tuple]] = []
    original_execute = psycopg2.extensions.cursor.execute

    class Recording(psycopg2.extensions.cursor):
        def execute(self, sql, parameters=None):
            statements.append((sql, parameters))
            return original_execute(self, sql, parameters)

    connect = psycopg2.connect

    def recording_connect(*args, **kwargs):
        return connect(*args, **{**kwargs, "cursor_factory": Recording})

    def tick(cursor):
        context = build_sensor_context(instance=dagster_instance, resources=dagster_resources(), cursor=cursor)
        statements.clear()
        psycopg2.connect = recording_connect
        try:
            return sliced(context)
        finally:
            psycopg2.connect = connect

    cursor, positions = None, set()
    for _ in range(ticks_per_pass):  # a first pass over every table: nothing changed since the syncs
        result = tick(cursor)
        assert not result.run_requests
        scans = [sql for sql, _ in statements if "updated_at" in sql]
        assert scans and all("id BETWEEN" in sql for sql in scans), "every read is one id slice"
        cursor = result.cursor
        positions.add(json.loads(cursor)["tables"]["media_attachments"]["next"])
    assert len(positions) > 1, "the cursor walks media_attachments' partitions"

    account = next(row for row in migration.instance.rows["accounts"] if row["avatar_file_name"])
    with closing(psycopg2.connect(migration.database_url)) as connection, connection, connection.cursor() as db:
        db.execute("UPDATE accounts SET avatar_updated_at = now() AT TIME ZONE 'UTC' WHERE id = %s", (account["id"],))
    found = []
    for _ in range(ticks_per_pass):  # found within one pass of the change
        result = tick(cursor)
        found += result.run_requests
        cursor = result.cursor
    assert {request.run_key for request in found} == {found[0].run_key}, "one run key: Dagster requests it once"
    request = found[0]
    assert request.job_name == "sync_accounts" and account["id"] in parse_partition_key(request.partition_key)
    execute(dagster_instance, request, "accounts")
    for _ in range(ticks_per_pass):  # re-synced: no longer stale
        result = tick(cursor)
        assert not result.run_requests
        cursor = result.cursor


def test_all_tables_have_sensors_and_schedules():
    definitions = build_definitions()
    assert {s.name for s in definitions.schedules} >= {f"catch_up_{table}" for table in TABLES} | {
        "verify_destination_daily"
    }, "other schedules may exist beside these"
    assert {s.name for s in definitions.sensors} >= {"add_id_range_partitions", "resync_changed_rows"}
