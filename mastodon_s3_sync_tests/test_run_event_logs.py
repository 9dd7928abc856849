"""``sync``'s event log storage (``dagster_internals.ReusingSqliteEventLogStorage``) writes Dagster's own format: the standard
SQLite storage, as the webserver and the daemon use it, reads every run it wrote, partition
materializations included, and both may create the same run's file."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    DynamicPartitionsDefinition,
    EventLogEntry,
    asset,
    define_asset_job,
)

from mastodon_s3_sync.dagster_internals import (
    ENGINES_KEPT,
    ReusingSqliteEventLogStorage,
    SqliteEventLogStorage,
)
from mastodon_s3_sync.execution.instance import _storage_configured, in_process_instance

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = DynamicPartitionsDefinition(name="ids")


@asset(partitions_def=PARTITIONS)
def table(context) -> None:
    context.log.info(f"partition {context.partition_key}")


JOB = Definitions(assets=[table], jobs=[define_asset_job("sync_table", [table])]).resolve_job_def("sync_table")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    return tmp_path


def dagsters_own(home: Path) -> DagsterInstance:
    """The instance as the webserver and the daemon open it: Dagster's SqliteEventLogStorage."""
    instance = DagsterInstance.from_config(str(home))
    assert type(instance.event_log_storage) is SqliteEventLogStorage
    return instance


def test_runs_written_by_sync_are_read_by_dagsters_storage(home):
    instance = in_process_instance()
    assert isinstance(instance.event_log_storage, ReusingSqliteEventLogStorage)
    keys = [f"{number}-{number + 9}" for number in range(0, 10 * (ENGINES_KEPT + 3), 10)]
    instance.add_dynamic_partitions("ids", keys)
    runs = [JOB.execute_in_process(instance=instance, partition_key=key) for key in keys]  # past ENGINES_KEPT
    assert all(run.success for run in runs)

    reader = dagsters_own(home)
    reader.event_log_storage.store_event(entry("a run of Dagster's own", "dagsters-own"))
    expected = schema_and_stamp(home / "history" / "runs" / "dagsters-own.db")
    assert expected[1] is not None
    for run in runs:  # the files as they are on disk: Dagster's storage would stamp an unstamped one
        assert schema_and_stamp(home / "history" / "runs" / f"{run.run_id}.db") == expected
    assert not list((home / "history" / "runs").glob("*.new"))  # no staged copy left behind

    assert reader.get_materialized_partitions(AssetKey("table")) == set(keys)
    for run in runs:
        written = [record.dagster_event_type for record in instance.all_logs(run.run_id)]
        read = [record.dagster_event_type for record in reader.all_logs(run.run_id)]
        assert read == written and DagsterEventType.RUN_SUCCESS in read
        assert reader.get_run_by_id(run.run_id).is_success


def entry(message: str, run_id: str, timestamp: float = 1.0) -> EventLogEntry:
    return EventLogEntry(error_info=None, level="INFO", user_message=message, run_id=run_id, timestamp=timestamp)


def schema_and_stamp(path: Path) -> tuple[list[str], str | None]:
    """A run file's tables and indexes, its journal mode and its alembic revision, read with sqlite3."""
    with closing(sqlite3.connect(path)) as connection:
        schema = sorted(sql for (sql,) in connection.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
        (journal,) = connection.execute("PRAGMA journal_mode").fetchone()
        stamp = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return [*schema, f"journal_mode={journal}"], stamp[0] if stamp else None


def test_a_run_file_that_dagster_created_first_is_kept(home):
    """The webserver may open a run's file before the run's first event: the run's events go on in it."""
    instance = in_process_instance()
    reader = dagsters_own(home)
    reader.event_log_storage.store_event(entry("first", "run-1"))
    instance.event_log_storage.store_event(entry("second", "run-1", timestamp=2.0))
    assert [entry.user_message for entry in reader.all_logs("run-1")] == ["first", "second"]
    assert [entry.user_message for entry in instance.all_logs("run-1")] == ["first", "second"]


def test_materializations_reported_without_a_run_reach_the_index(home):
    instance = in_process_instance()
    instance.add_dynamic_partitions("ids", ["0-9"])
    instance.report_runless_asset_event(AssetMaterialization(AssetKey("table"), partition="0-9"))
    assert dagsters_own(home).get_materialized_partitions(AssetKey("table")) == {"0-9"}


@pytest.mark.parametrize(
    ("instance_file", "configured"),
    [("dagster.yaml", False), ("dagster-postgres.yaml", True), ("dagster-celery.yaml", True)],
)
def test_only_the_sqlite_default_is_replaced(instance_file, configured):
    """An instance file that chooses its storage (PostgreSQL) keeps it."""
    assert _storage_configured(REPO / instance_file) is configured
