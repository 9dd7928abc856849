"""Materialize every partition against real PostgreSQL and real S3 servers, then check
the destination key by key against the fake instance's hand-written expectations."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance
from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk
from mastodon_s3_sync_demo.fake_instance.seeding import CACHE_CONTROL

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.mastodon.layout import with_key_prefix
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.verification import verify_table
from mastodon_s3_sync.execution.instance import in_process_instance
from mastodon_s3_sync_tests.support.acl import public_read
from mastodon_s3_sync_tests.support.migration import Migration, make_migration
from mastodon_s3_sync_tests.support.processes import signals_as_from_a_terminal
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy
from mastodon_s3_sync_tests.support.sync import sync_into


def run_sync(migration: Migration, environment, sync_once, partition_rows: int = 25):
    environment({**migration.environment(), "SYNC_PARTITION_ROWS": str(partition_rows)})
    return sync_once(*TABLES)


def assert_destination_exact(migration: Migration) -> None:
    expected = {with_key_prefix(migration.destination_prefix, obj.key): obj for obj in migration.instance.expected}
    assert migration.destination_keys() == set(expected), "destination must hold exactly the referenced objects"
    client = migration.destination.client()
    for key, obj in expected.items():
        response = client.get_object(Bucket=migration.destination_bucket, Key=key)
        assert response["Body"].read() == obj.body, key
        assert response["ContentType"] == obj.content_type, key
        assert response["CacheControl"] == CACHE_CONTROL, key


def missing_reported(dagster_instance) -> tuple[int, str]:
    total, text = 0, ""
    for table in TABLES:
        for event in dagster_instance.fetch_materializations(AssetKey(table), limit=1000).records:
            metadata = event.asset_materialization.metadata
            total += metadata["objects_missing"].value
            text += metadata["missing_at_source"].value
    return total, text


def test_cross_provider_sync_is_exact_and_reports_missing(
    database_url, rclone_source, rclone_destination, dagster_instance, environment, sync_once
):
    migration = make_migration(database_url, rclone_source, rclone_destination, destination_prefix="media")
    results = run_sync(migration, environment, sync_once, partition_rows=4)

    assert all(not result.failed for result in results), [result.failed for result in results]
    assert_destination_exact(migration)
    assert sum(result.copied for result in results) == len(migration.instance.expected)
    total_missing, missing_text = missing_reported(dagster_instance)
    assert total_missing == len(migration.instance.missing)
    for _table, row_id, key in migration.instance.missing:
        assert f"| {row_id} | `{key}`" in missing_text

    stored = [path.name for path in Path(dagster_instance.storage_directory()).glob("*/*")]
    assert "compute_logs" in stored, "the runs' compute logs stay"
    assert set(stored) == {"compute_logs"}, "successful runs leave no stored batches behind"

    again = run_sync(migration, environment, sync_once, partition_rows=4)
    assert sum(len(result.succeeded) for result in again) == 0, "a second sync has nothing left to run"

    resources = configured()
    for table in TABLES:
        verification = verify_table(
            resources["mastodon_db"], TABLES[table], resources["source_s3"], resources["destination_s3"]
        )
        assert verification.complete, verification.findings
        assert verification.counts.get("missing_at_source", 0) == len(migration.instance.missing_for(table))


def test_same_endpoint_two_buckets_uses_server_side_copy(database_url, rclone_source, environment, sync_once):
    migration = make_migration(database_url, rclone_source, rclone_source, source_prefix="old")
    results = run_sync(migration, environment, sync_once)
    assert all(not result.failed for result in results)
    assert_destination_exact(migration)


def test_same_bucket_other_prefix(database_url, rclone_source, environment, sync_once):
    migration = make_migration(
        database_url, rclone_source, rclone_source, source_prefix="", destination_prefix="moved", same_bucket=True
    )
    results = run_sync(migration, environment, sync_once)
    assert all(not result.failed for result in results)
    moved = {key for key in migration.destination_keys() if key.startswith("moved/")}
    assert moved == {f"moved/{obj.key}" for obj in migration.instance.expected}


@pytest.mark.parametrize("permission", ["public-read", ""])
def test_acls_follow_mastodon(database_url, rclone_source, moto, environment, sync_once, permission):
    migration = make_migration(database_url, rclone_source, moto, permission=permission)
    results = run_sync(migration, environment, sync_once)
    assert all(not result.failed for result in results)
    assert_destination_exact(migration)
    client = moto.client()
    for obj in migration.instance.expected:
        grants = client.get_object_acl(Bucket=migration.destination_bucket, Key=obj.key)["Grants"]
        assert public_read(grants) == (obj.acl(permission) == "public-read"), (obj.key, obj.acl_kind, grants)


def test_absent_legacy_ico_is_not_missing_and_a_present_one_is_copied(
    database_url, rclone_source, rclone_destination, environment, sync_once
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    [ico] = [o for o in migration.instance.expected_for("site_uploads") if o.style == "ico"]
    migration.source.client().delete_object(Bucket=migration.source_bucket, Key=ico.key)
    environment(migration.environment())
    [result] = sync_once("site_uploads")
    assert not result.failed
    assert result.missing == len(migration.instance.missing_for("site_uploads")), "an absent ico is not missing"
    assert result.copied == len(migration.instance.expected_for("site_uploads")) - 1
    resources = configured()
    verification = verify_table(
        resources["mastodon_db"], TABLES["site_uploads"], resources["source_s3"], resources["destination_s3"]
    )
    assert verification.complete and verification.absent_optional == 1
    assert with_key_prefix(migration.destination_prefix, ico.key) not in migration.destination_keys()


def test_wrong_key_prefix_stops_early_with_one_clear_error(database_url, rclone_source, rclone_destination, tmp_path):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    seed_bulk(database_url, rclone_source.client(), migration.source_bucket, rows=60)
    environment = {
        **migration.environment(),
        "SOURCE_S3_KEY_PREFIX": "media",  # the objects are at the bucket's root
        "SYNC_PARTITION_ROWS": "1000",
        "DAGSTER_HOME": str(tmp_path / "home"),
    }

    def sync(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mastodon_s3_sync", "sync", "media_attachments", *options],
            env={**os.environ, **environment},
            capture_output=True,
            text=True,
            timeout=300,
        )

    refused = sync()
    assert refused.returncode == 2, refused.stdout + refused.stderr
    [line] = refused.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: most referenced objects are missing at the source: "), line
    for variable in ("SOURCE_S3_BUCKET", "SOURCE_S3_ENDPOINT", "SOURCE_S3_KEY_PREFIX", "SYNC_ACCEPT_MISSING"):
        assert variable in line, line
    assert migration.destination_keys() == set(), "nothing was copied"

    accepted = sync("--accept-missing")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    referenced = len(migration.instance.expected_for("media_attachments")) + len(
        migration.instance.missing_for("media_attachments")
    )
    assert f"0 objects copied, 0 already there, {referenced + 2 * 60} missing at the source" in accepted.stdout


def run_intervals(instance) -> list[tuple[str, float, float]]:
    return [(record.dagster_run.job_name, record.start_time, record.end_time) for record in instance.get_run_records()]


def test_tables_at_once_overlap_and_stay_exact(database_url, rclone_source, rclone_destination, environment, tmp_path):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    bulk_keys = seed_bulk(database_url, rclone_source.client(), migration.source_bucket, rows=400)
    environment({**migration.environment(), "SYNC_PARTITION_ROWS": "25", "DAGSTER_HOME": str(tmp_path)})
    resources = configured()
    with in_process_instance() as instance:
        results = sync_into(instance, TABLES, tables_at_once=2)
        intervals = run_intervals(instance)

    assert [result.table for result in results] == list(TABLES), "results in the tables' order"
    assert all(not result.failed for result in results), [result.failed for result in results]
    expected = {obj.key for obj in migration.instance.expected} | set(bulk_keys)
    assert migration.destination_keys() == expected
    assert sum(result.copied for result in results) == len(expected)
    overlapping = {
        (first_job, second_job)
        for first_job, first_start, first_end in intervals
        for second_job, second_start, second_end in intervals
        if first_job < second_job and first_start < second_end and second_start < first_end
    }
    assert overlapping, f"no two tables' runs overlapped: {sorted(intervals, key=lambda interval: interval[1])}"
    for table in TABLES:
        verification = verify_table(
            resources["mastodon_db"], TABLES[table], resources["source_s3"], resources["destination_s3"]
        )
        assert verification.complete, (table, verification.findings)


def test_ctrl_c_stops_tables_at_once_and_the_next_sync_completes(
    database_url, rclone_source, rclone_destination, tmp_path
):
    """Ctrl-C while two tables copy: the runs in progress stop within seconds, none is left
    "started" in DAGSTER_HOME, and the same command again copies the rest."""
    interrupted = threading.Event()

    def interrupt_mid_copy(exchange) -> None:
        """At the 20th object stored, with hundreds still to copy (no polling: a fast machine
        could finish the copy between two looks at the bucket)."""
        if exchange.method == "PUT" and not interrupted.is_set() and len(proxy.completed_puts()) >= 20:
            interrupted.set()
            slow.send_signal(signal.SIGINT)

    with S3Proxy(rclone_destination.endpoint_url, on_response=interrupt_mid_copy) as proxy:
        destination = dataclasses.replace(rclone_destination, endpoint_url=proxy.endpoint_url)
        migration = make_migration(database_url, rclone_source, destination)
        bulk_keys = seed_bulk(database_url, rclone_source.client(), migration.source_bucket, rows=300)
        environment = {
            **os.environ,
            **migration.environment(),
            "SYNC_PARTITION_ROWS": "100",
            "SYNC_TABLES_AT_ONCE": "2",
            "DAGSTER_HOME": str(tmp_path / "home"),
        }
        command = [sys.executable, "-m", "mastodon_s3_sync", "sync"]
        slow = subprocess.Popen(
            command,
            env={**environment, "SYNC_CONCURRENCY": "1"},  # one object in flight per table: hundreds left at the 20th
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=signals_as_from_a_terminal,
        )
        try:
            stdout, stderr = slow.communicate(timeout=120)
        finally:
            slow.kill()
        assert interrupted.is_set(), "sync ended before storing 20 objects: " + stdout + stderr
        assert slow.returncode == 130, stdout + stderr
        assert "Stopping the runs in progress" in stderr and "run the same command again to resume" in stderr
        copied_before = migration.destination_keys()
        expected = {obj.key for obj in migration.instance.expected} | set(bulk_keys)
        assert copied_before < expected, "interrupted part-way"

        with DagsterInstance.from_config(environment["DAGSTER_HOME"]) as instance:
            unfinished = [
                record.dagster_run.run_id for record in instance.get_run_records() if not record.dagster_run.is_finished
            ]
        assert unfinished == [], "no run is left started by the interrupted sync"

        again = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
        assert migration.destination_keys() == expected
