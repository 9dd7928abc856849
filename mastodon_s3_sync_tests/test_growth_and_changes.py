"""A growing, changing instance: the partition sensor, the catch-up schedule, the
changed-rows sensor and ``sync``'s own catch-up, against real PostgreSQL and S3."""

from __future__ import annotations

import json
import os
from contextlib import closing, contextmanager
from datetime import UTC, datetime

import psycopg2
import psycopg2.extensions
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)
from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk
from mastodon_s3_sync_demo.fake_instance.seeding import CACHE_CONTROL

from mastodon_s3_sync.core.id_ranges import MIN_ID, parse_partition_key
from mastodon_s3_sync.core.mastodon.layout import object_key
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.settings import value
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync.definitions.partitions import partitions_name, snapshot_times
from mastodon_s3_sync.definitions.resources import build_resources
from mastodon_s3_sync.definitions.schedules import build_catch_up_schedule
from mastodon_s3_sync.definitions.sensors import add_id_range_partitions, build_resync_changed_rows
from mastodon_s3_sync_tests.support.database import run_statement
from mastodon_s3_sync_tests.support.migration import make_migration

resync_changed_rows = build_resync_changed_rows(3600, value("SYNC_CHANGES_ROWS_PER_TICK", {}))

PARTITION_ROWS = 10


def prepare(migration, environment, **extra):
    environment({**migration.environment(), "SYNC_PARTITION_ROWS": str(PARTITION_ROWS), **extra})


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
    with build_schedule_context(  # as a context manager: else its instance's state outlives the test
        instance=dagster_instance,
        resources=dagster_resources(),
        scheduled_execution_time=datetime.now(UTC),
        repository_def=build_definitions().get_repository_def(),
    ) as context:
        requests = schedule.evaluate_tick(context).run_requests
        keys = dagster_instance.get_dynamic_partitions(partitions_name("custom_emojis"))
        assert [request.partition_key for request in requests] == keys, "a tail partition is cut and requested"
        assert all(request.run_key == request.partition_key for request in requests)
        for request in requests:
            execute(dagster_instance, request, "custom_emojis")
        assert schedule.evaluate_tick(context).skip_message, "nothing new after the sync"

        run_statement(
            migration.database_url,
            "INSERT INTO custom_emojis (shortcode, image_file_name, image_content_type, image_file_size, "
            "image_updated_at, created_at, updated_at) VALUES ('late', 'feedbeef.png', 'image/png', 3, now(), now(), now())",
        )
        [request] = schedule.evaluate_tick(context).run_requests
        assert request.partition_key not in keys


def test_changed_avatar_is_resynced_by_the_sensor_and_by_sync(
    database_url, rclone_source, rclone_destination, dagster_instance, environment, sync_once
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    prepare(migration, environment)
    [first] = sync_once("accounts")
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
    run_statement(
        migration.database_url,
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
    run_statement(
        migration.database_url,
        "UPDATE accounts SET avatar_updated_at = now() AT TIME ZONE 'UTC' WHERE id = %s",
        (account["id"],),
    )
    [second] = sync_once("accounts")
    assert second.changed == [request.partition_key]
    assert second.succeeded == [request.partition_key] and second.copied == 0, "already there: skipped cheaply"


def test_changed_rows_sensor_reads_one_slice_per_tick_and_finds_a_change_within_a_pass(
    database_url, rclone_source, rclone_destination, dagster_instance, environment, sync_once
):
    """With a budget of two partitions per tick, each tick reads a bounded id slice of each
    table (a range, never the table), the cursor walks the partitions, and a changed avatar
    is found within one pass of the change, exactly once."""
    migration = make_migration(database_url, rclone_source, rclone_destination)
    prepare(migration, environment)
    sliced = build_resync_changed_rows(3600, rows_per_tick=2 * PARTITION_ROWS)
    synced = sync_once(*TABLES)
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
    run_statement(
        migration.database_url,
        "UPDATE accounts SET avatar_updated_at = now() AT TIME ZONE 'UTC' WHERE id = %s",
        (account["id"],),
    )
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


@contextmanager
def committed_after(database_url: str, sql: str, parameters: tuple = ()):
    """Run ``sql`` in a transaction that commits when the block ends: a read inside the block
    cannot see it, as a sync's read cannot see Mastodon's transaction still transcoding. Yields
    the statement's rows (``RETURNING``)."""
    with closing(psycopg2.connect(database_url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            rows = cursor.fetchall() if cursor.description else []
        yield rows
        connection.commit()


def synced_table(sync_once, table: str):
    """``table`` synced once, no partition failed."""
    [result] = sync_once(table)
    assert not result.failed, result.failed
    return result


def partition_of(dagster_instance, table: str, row_id: int) -> str:
    keys = dagster_instance.get_dynamic_partitions(partitions_name(table))
    [key] = [key for key in keys if row_id in parse_partition_key(key)]
    return key


def put_source(migration, key: str, body: bytes, content_type: str = "image/png") -> None:
    migration.source.client().put_object(
        Bucket=migration.source_bucket, Key=key, Body=body, ContentType=content_type, CacheControl=CACHE_CONTROL
    )


def destination_body(migration, key: str) -> bytes | None:
    client = migration.destination.client()
    try:
        return client.get_object(Bucket=migration.destination_bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def late_window_rows(dagster_instance, row_id: int) -> int:
    """``late_window_rows`` of the latest materialization of the media partition holding ``row_id``."""
    key = partition_of(dagster_instance, "media_attachments", row_id)
    records = dagster_instance.fetch_materializations(
        AssetRecordsFilter(AssetKey("media_attachments"), asset_partitions=[key]), limit=1
    ).records
    return records[0].asset_materialization.metadata["late_window_rows"].value


def changed_rows_requests(dagster_instance) -> list:
    """One full pass of the changed-rows sensor from a fresh cursor (one tick at the default budget)."""
    context = build_sensor_context(instance=dagster_instance, resources=dagster_resources())
    result = resync_changed_rows(context)
    assert all(table["next"] == MIN_ID for table in json.loads(result.cursor)["tables"].values()), "a whole pass"
    return result.run_requests


def test_avatar_replaced_in_a_commit_after_the_read_is_resynced_once_by_sync(
    database_url, rclone_source, rclone_destination, dagster_instance, environment, sync_once
):
    """Mastodon stamps avatar_updated_at, then commits minutes later: the stamp is before the
    sync's read, the row visible only after it. The next ``sync`` re-syncs exactly that
    partition, and the one after finds nothing."""
    migration = make_migration(database_url, rclone_source, rclone_destination)
    prepare(migration, environment)
    account = next(row for row in migration.instance.rows["accounts"] if row["avatar_file_name"] and not row["domain"])
    new_name = "5ca1ab1e5ca1ab1e.png"
    new_key = object_key("accounts", "avatars", account["id"], "original", new_name, cached=False)
    put_source(migration, new_key, b"the replaced avatar")
    with committed_after(
        migration.database_url,
        "UPDATE accounts SET avatar_file_name = %s, avatar_content_type = 'image/png', avatar_file_size = 19, "
        "avatar_updated_at = now() AT TIME ZONE 'UTC' - interval '5 minutes' WHERE id = %s "
        "RETURNING avatar_updated_at",
        (new_name, account["id"]),
    ) as [(stamp,)]:
        synced_table(sync_once, "accounts")  # its read cannot see the update
    key = partition_of(dagster_instance, "accounts", account["id"])
    assert stamp < snapshot_times(dagster_instance, "accounts", [key])[key], "stamped before the read"
    assert destination_body(migration, new_key) is None, "the read saw the old avatar"

    second = synced_table(sync_once, "accounts")
    assert second.changed == [key] and second.succeeded == [key]
    assert destination_body(migration, new_key) == b"the replaced avatar"
    assert synced_table(sync_once, "accounts").changed == [], "re-synced once, not again"


def test_avatar_stamped_by_a_slow_app_clock_is_found_by_the_sensor_once(
    database_url, rclone_source, rclone_destination, dagster_instance, environment, sync_once
):
    """An app server a minute behind the database stamps a change and commits at once, right
    after a sync read the partition: the stamp is older than the read. The sensor requests
    exactly that partition, and nothing once it is re-synced."""
    migration = make_migration(database_url, rclone_source, rclone_destination)
    prepare(migration, environment)
    synced_table(sync_once, "accounts")
    account = next(row for row in migration.instance.rows["accounts"] if row["avatar_file_name"])
    [(stamp,)] = run_statement(
        migration.database_url,
        "UPDATE accounts SET avatar_updated_at = now() AT TIME ZONE 'UTC' - interval '1 minute' WHERE id = %s "
        "RETURNING avatar_updated_at",
        (account["id"],),
    )
    key = partition_of(dagster_instance, "accounts", account["id"])
    assert stamp < snapshot_times(dagster_instance, "accounts", [key])[key], "committed within a minute of the read"

    [request] = changed_rows_requests(dagster_instance)
    assert (request.job_name, request.partition_key) == ("sync_accounts", key)
    execute(dagster_instance, request, "accounts")
    assert changed_rows_requests(dagster_instance) == [], "re-synced once, not again"


def test_new_row_committed_late_inside_a_synced_partition_is_synced(
    database_url, rclone_source, rclone_destination, dagster_instance, environment, sync_once
):
    """A media attachment's snowflake id comes from its insert time; committed after a sync read
    the partition that id falls in (a full one, not the tail), the row is found by the sensor and
    by ``sync``, copied, and not found again. Rows changed shortly before the sync, in that
    partition and others (read by ranged runs), are in their windows as read: not stale."""
    migration = make_migration(database_url, rclone_source, rclone_destination)
    prepare(migration, environment)
    ids = sorted(row["id"] for row in migration.instance.rows["media_attachments"])
    recent = [ids[5], ids[PARTITION_ROWS + 2], ids[-1]]  # three partitions, one ranged run
    run_statement(
        migration.database_url,
        "UPDATE media_attachments SET file_updated_at = now() AT TIME ZONE 'UTC' - interval '10 minutes' "
        "WHERE id = ANY(%s)",
        (recent,),
    )
    new_id = ids[3] + 1
    assert new_id < ids[4] and new_id < ids[PARTITION_ROWS - 1], "inside the first full partition"
    new_key = object_key("media_attachments", "files", new_id, "original", "0ddba11.bin", cached=False)
    put_source(migration, new_key, b"media of a late commit", "application/octet-stream")
    with committed_after(
        migration.database_url,
        "INSERT INTO media_attachments (id, account_id, file_file_name, file_content_type, file_file_size, "
        "file_updated_at, remote_url, created_at, updated_at, type, file_meta, file_storage_schema_version) "
        "VALUES (%s, 1, '0ddba11.bin', 'application/octet-stream', 22, now() AT TIME ZONE 'UTC', '', "
        "now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', 0, '{}', 1)",
        (new_id,),
    ):
        synced_table(sync_once, "media_attachments")
    key = partition_of(dagster_instance, "media_attachments", new_id)
    assert destination_body(migration, new_key) is None
    windows = {
        partition_of(dagster_instance, "media_attachments", row_id): late_window_rows(dagster_instance, row_id)
        for row_id in recent
    }
    assert len(windows) == 3 and set(windows.values()) == {1}, "each read recorded its recent row"

    [request] = changed_rows_requests(dagster_instance)
    assert (request.job_name, request.partition_key) == ("sync_media_attachments", key)
    second = synced_table(sync_once, "media_attachments")
    assert second.changed == [key] and second.copied == 1
    assert destination_body(migration, new_key) == b"media of a late commit"
    assert late_window_rows(dagster_instance, new_id) == 2, "the recent row and the late one"
    assert synced_table(sync_once, "media_attachments").changed == []
    assert changed_rows_requests(dagster_instance) == [], "re-synced once, not again"


def test_row_committed_late_inside_the_tail_that_sync_cut_is_synced(
    database_url, rclone_source, rclone_destination, dagster_instance, environment, sync_once
):
    """Serial ids are handed out at insert, not at commit: an emoji inserted first and committed
    after a later one lies below the highest id when ``sync`` cuts its tail partition up to that
    id and reads it. The next ``sync`` re-syncs the tail and copies it; the one after finds nothing."""
    migration = make_migration(database_url, rclone_source, rclone_destination)
    prepare(migration, environment)
    insert = (
        "INSERT INTO custom_emojis (shortcode, image_file_name, image_content_type, image_file_size, image_updated_at, "
        "created_at, updated_at) VALUES (%s, %s, 'image/png', 4, now() AT TIME ZONE 'UTC', now(), now()) RETURNING id"
    )

    def emoji_keys(emoji_id: int, name: str) -> list[str]:
        return [object_key("custom_emojis", "images", emoji_id, s, name, cached=False) for s in ("original", "static")]

    with committed_after(migration.database_url, insert, ("late", "1a7e1a7e.png")) as [(late_id,)]:
        for key in emoji_keys(late_id, "1a7e1a7e.png"):
            put_source(migration, key, b"late")
        [(early_id,)] = run_statement(migration.database_url, insert, ("early", "ea51ea51.png"))
        for key in emoji_keys(early_id, "ea51ea51.png"):
            put_source(migration, key, b"early")
        synced_table(sync_once, "custom_emojis")
    tail = dagster_instance.get_dynamic_partitions(partitions_name("custom_emojis"))[-1]
    assert late_id in parse_partition_key(tail) and parse_partition_key(tail).hi == early_id
    assert [destination_body(migration, key) for key in emoji_keys(late_id, "1a7e1a7e.png")] == [None, None]

    second = synced_table(sync_once, "custom_emojis")
    assert second.new_partitions == [] and second.changed == [tail] and second.copied == 2
    assert [destination_body(migration, key) for key in emoji_keys(late_id, "1a7e1a7e.png")] == [b"late", b"late"]
    assert synced_table(sync_once, "custom_emojis").changed == []


def test_all_tables_have_sensors_and_schedules():
    definitions = build_definitions()
    assert {s.name for s in definitions.schedules} >= {f"catch_up_{table}" for table in TABLES} | {
        "verify_destination_daily"
    }, "other schedules may exist beside these"
    assert {s.name for s in definitions.sensors} >= {"add_id_range_partitions", "resync_changed_rows"}
