"""Fault matrix, database side, against real PostgreSQL (and sshd): a backend terminated
mid-scan, a role without SELECT, rows with garbage. Each ends with the destination checked
object by object against the source."""

from __future__ import annotations

import dataclasses
import re
import uuid

import psycopg2
import pytest
from dagster import DagsterEventType
from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk

from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync.definitions.jobs import sync_job_name
from mastodon_s3_sync.definitions.partitions import add_new_partitions
from mastodon_s3_sync.execution.runs import QUIET_CONSOLE, _failure_message
from mastodon_s3_sync_tests.support.cli import run_cli
from mastodon_s3_sync_tests.support.faults import assert_destination_exact, expected_media
from mastodon_s3_sync_tests.support.migration import make_migration

pytestmark = pytest.mark.integration

BULK_ROWS = 300
FETCH_ROWS = 50
TERMINATE_AFTER_ROWS = 120


def logged_text(instance) -> str:
    return "\n".join(str(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id))


def test_backend_terminated_mid_scan_fails_clearly_and_the_op_retry_succeeds(
    database_url, postgres_admin_url, rclone_source, moto, dagster_instance, environment, monkeypatch, sync_once
):
    migration = make_migration(database_url, rclone_source, moto)
    bulk = seed_bulk(database_url, rclone_source.client(), migration.source_bucket, rows=BULK_ROWS)
    environment({**migration.environment(), "SYNC_PARTITION_ROWS": "100000", "SYNC_BATCH_OBJECTS": "200"})
    terminated: list[int] = []
    original_stream = MastodonDatabase.stream

    def stream(self, sql, parameters=(), connection=None):
        """The plan's scan, a few rows per fetch; the first scan's backend is terminated (from
        another session, as an admin would) once row TERMINATE_AFTER_ROWS was handed over."""
        small = dataclasses.replace(self, fetch_rows=FETCH_ROWS)
        for count, row in enumerate(original_stream(small, sql, parameters, connection), start=1):
            yield row
            if count == TERMINATE_AFTER_ROWS and not terminated and "media_attachments" in sql:
                pid = connection.info.backend_pid
                with psycopg2.connect(postgres_admin_url) as admin, admin.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE pid = %s AND application_name = 'mastodon-s3-sync'",
                        (pid,),
                    )
                    assert cursor.fetchone() == (True,)
                admin.close()
                terminated.append(pid)

    monkeypatch.setattr(MastodonDatabase, "stream", stream)
    [result] = sync_once("media_attachments")

    assert terminated, "the scan was never interrupted"
    assert not result.failed and len(result.succeeded) == 1
    [run] = dagster_instance.get_runs()
    retried = [
        event
        for event in dagster_instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        if event.step_key == "media_attachments.media_attachments_plan"
    ]
    assert len(retried) == 1
    logged = logged_text(dagster_instance)
    assert "the Mastodon database connection to " in logged
    assert "was lost while reading media_attachments rows" in logged
    lost = re.search(r"the Mastodon database connection to [^\n'\"]* was lost while reading [^\n'\"]*", logged)
    assert lost and "media_attachments rows (ids " in lost.group(0), logged
    expected = expected_media(migration, "media_attachments", bulk)
    assert result.copied == len(expected) and result.skipped == 0, "each object copied once, none twice"
    assert_destination_exact(migration, expected, acls=True)


@pytest.fixture
def role_without_select(postgres_admin_url, database_url, rclone_source, rclone_destination):
    """A seeded migration and a login role that may connect and read every table but custom_emojis."""
    migration = make_migration(database_url, rclone_source, rclone_destination)
    role = f"no_emojis_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    admin = psycopg2.connect(postgres_admin_url)
    admin.autocommit = True
    database = psycopg2.extensions.parse_dsn(database_url)["dbname"]
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (password,))
        cursor.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
    with psycopg2.connect(database_url) as owner, owner.cursor() as cursor:
        cursor.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        cursor.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        cursor.execute(f'REVOKE SELECT ON custom_emojis FROM "{role}"')
    owner.close()
    parameters = {**psycopg2.extensions.parse_dsn(database_url), "user": role, "password": password}
    try:
        yield migration, role, psycopg2.extensions.make_dsn(**parameters)
    finally:
        with psycopg2.connect(database_url) as owner, owner.cursor() as cursor:
            cursor.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"')
            cursor.execute(f'REVOKE ALL ON SCHEMA public FROM "{role}"')
        owner.close()
        with admin.cursor() as cursor:
            cursor.execute(f'REVOKE ALL ON DATABASE "{database}" FROM "{role}"')
            cursor.execute(f'DROP ROLE "{role}"')
        admin.close()


@pytest.mark.parametrize("command", ["sync", "plan"])
def test_role_without_select_is_one_line_naming_table_and_role(command, role_without_select, tmp_path):
    migration, role, role_dsn = role_without_select
    environment = migration.environment()
    environment["DATABASE_URL"] = role_dsn
    result = run_cli(
        command, "custom_emojis", environment=environment, cwd=tmp_path, dagster_home=tmp_path / "dagster_home"
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert [line for line in lines if "error" in line.lower()] == [lines[-1]], result.stderr  # one error line
    assert f"role {role} may not read table custom_emojis" in lines[-1]
    assert role_dsn.split("password=")[1].split()[0] not in result.stderr + result.stdout


def test_role_without_select_fails_the_dagster_run_with_that_line(
    role_without_select, database_url, dagster_instance, environment
):
    migration, role, role_dsn = role_without_select
    [key] = add_new_partitions(
        dagster_instance, MastodonDatabase(database_url=database_url), "custom_emojis", 100000, include_tail=True
    )
    environment({**migration.environment(), "DATABASE_URL": role_dsn})
    job = build_definitions().resolve_job_def(sync_job_name("custom_emojis"))
    run = job.execute_in_process(
        run_config=QUIET_CONSOLE, instance=dagster_instance, partition_key=key, raise_on_error=False
    )
    assert not run.success
    message = _failure_message(run)
    assert "\n" not in message
    assert f"the database role {role} may not read table custom_emojis" in message
    retries = [e for e in run.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries == [], "a missing privilege is not retried"
    assert migration.destination_keys() == set()
