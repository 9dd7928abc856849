"""Bad configuration: one line that names the variable, from the CLI and in the Dagster run;
secrets never in the definitions or the event log."""

from __future__ import annotations

import subprocess

import pytest
from dagster import EnvVar

from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync_tests.support.cli import run_cli
from mastodon_s3_sync_tests.support.migration import make_migration

pytestmark = pytest.mark.integration  # real servers or Dagster processes


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_bucket_variable(database_url, rclone_source, rclone_destination, work_dir):
    environment = make_migration(database_url, rclone_source, rclone_destination).environment()
    del environment["SOURCE_S3_BUCKET"]
    assert_one_line_error(
        run_cli("sync", environment=environment, cwd=work_dir, dagster_home=work_dir / "dagster_home"),
        "SOURCE_S3_BUCKET",
    )


def test_wrong_credentials(database_url, rclone_source, rclone_destination, work_dir):
    environment = make_migration(database_url, rclone_source, rclone_destination).environment()
    environment["DESTINATION_AWS_SECRET_ACCESS_KEY"] = "not-the-secret-key-at-all"
    result = run_cli("verify", environment=environment, cwd=work_dir, dagster_home=work_dir / "dagster_home")
    assert_one_line_error(result, "DESTINATION_AWS_ACCESS_KEY_ID", "DESTINATION_AWS_SECRET_ACCESS_KEY")
    assert "not-the-secret-key-at-all" not in result.stderr


def test_unreachable_database(database_url, rclone_source, rclone_destination, work_dir):
    environment = make_migration(database_url, rclone_source, rclone_destination).environment()
    del environment["DATABASE_URL"]
    environment.update({"DB_HOST": "127.0.0.1", "DB_PORT": "1", "DB_PASS": "hunter2-secret"})
    result = run_cli("sync", "accounts", environment=environment, cwd=work_dir, dagster_home=work_dir / "dagster_home")
    assert_one_line_error(result, "cannot connect to the Mastodon database at 127.0.0.1:1/")
    assert "hunter2-secret" not in result.stderr


def test_malformed_number(work_dir):
    result = run_cli(
        "sync",
        environment={"DB_PORT": "five", "SOURCE_S3_BUCKET": "a", "DESTINATION_S3_BUCKET": "b"},
        cwd=work_dir,
        dagster_home=work_dir / "dagster_home",
    )
    assert_one_line_error(result, "DB_PORT")


def test_dagster_run_names_the_problem_and_keeps_secrets_out(
    database_url, rclone_source, rclone_destination, dagster_instance, environment, sync_once
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    variables = migration.environment()
    variables["SOURCE_AWS_SECRET_ACCESS_KEY"] = "wrong-secret-value-1234567890"
    environment(variables)
    definitions = build_definitions()
    source_resource = definitions.resources["source_s3"]
    assert source_resource.aws_secret_access_key == EnvVar("SOURCE_AWS_SECRET_ACCESS_KEY")
    assert definitions.resources["mastodon_db"].database_url == EnvVar("DATABASE_URL")

    [result] = sync_once("custom_emojis", definitions=definitions)
    [message] = set(result.failed.values())
    assert "SOURCE_AWS_ACCESS_KEY_ID / SOURCE_AWS_SECRET_ACCESS_KEY" in message
    logged = " ".join(
        str(entry) for run in dagster_instance.get_runs() for entry in dagster_instance.all_logs(run.run_id)
    )
    assert "SOURCE_AWS_SECRET_ACCESS_KEY" in logged
    assert "wrong-secret-value-1234567890" not in logged
    assert migration.source.secret_key not in logged
    assert migration.destination.secret_key not in logged


def test_dagster_run_without_bucket_variable_names_it(
    database_url, rclone_source, rclone_destination, environment, sync_once
):
    variables = make_migration(database_url, rclone_source, rclone_destination).environment()
    del variables["DESTINATION_S3_BUCKET"]
    environment(variables)
    [result] = sync_once("backups")  # the database and tuning need no bucket: the run does
    [message] = set(result.failed.values())
    assert "DESTINATION_S3_BUCKET" in message
