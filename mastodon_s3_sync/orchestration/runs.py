"""Headless sync: what ``mastodon-s3-sync sync`` does, through Dagster, recorded in DAGSTER_HOME."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dagster import DagsterInstance, DagsterInvalidConfigError, Definitions

from mastodon_s3_sync.core.copying import MOSTLY_MISSING, mostly_missing_error
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.settings import ConfigError
from mastodon_s3_sync.core.tuning import Tuning
from mastodon_s3_sync.orchestration.acl_refresh import refresh_destination_acls
from mastodon_s3_sync.orchestration.jobs import sync_job_name
from mastodon_s3_sync.orchestration.partitions import add_new_partitions, stale_partitions, unsynced_partitions


@dataclass
class TableSyncResult:
    table: str
    new_partitions: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    """Synced partitions re-run because rows changed after their last sync."""
    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Partition key -> the error that failed its run."""
    copied: int = 0
    skipped: int = 0
    missing: int = 0


QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
"""The runs' events still go to DAGSTER_HOME (the UI shows them); the terminal gets our summary."""


def sync_tables(
    definitions: Definitions,
    instance: DagsterInstance,
    tables: Sequence[str],
    database: MastodonDatabase,
    tuning: Tuning,
) -> list[TableSyncResult]:
    """Cut new partitions, then materialize every partition not yet synced or with changed rows, one run each.

    ``database`` and ``tuning`` are the resolved resources (the definitions'
    own hold EnvVars, which only a run resolves).
    """
    results = []
    for table in tables:
        result = TableSyncResult(table)
        result.new_partitions = add_new_partitions(instance, database, table, tuning.partition_rows, include_tail=True)
        with database.connection() as connection:
            stale = stale_partitions(instance, connection, TABLES[table])
        result.changed = sorted(stale)
        pending = unsynced_partitions(instance, table) + result.changed
        job = definitions.resolve_job_def(sync_job_name(table))
        for key in pending:
            run, error = _execute(job, instance, partition_key=key)
            if error is not None:
                result.failed[key] = error
                if MOSTLY_MISSING in error:
                    raise ConfigError(error)  # stop early: every other partition would say the same
                continue
            result.succeeded.append(key)
            for event in run.get_asset_materialization_events():
                metadata = event.materialization.metadata
                result.copied += metadata["objects_copied"].value
                result.skipped += metadata["objects_skipped"].value
                result.missing += metadata["objects_missing"].value
            mostly_missing = mostly_missing_error(result.missing, result.copied + result.skipped + result.missing)
            if mostly_missing and not tuning.accept_missing:
                raise ConfigError(mostly_missing)
        results.append(result)
    return results


@dataclass
class AclRefreshResult:
    metadata: dict[str, int] = field(default_factory=dict)
    """``acls_set`` and the other figures of ``orchestration.acl_refresh.acl_metadata``."""
    error: str | None = None


def refresh_acls_in_process(definitions: Definitions, instance: DagsterInstance) -> AclRefreshResult:
    """Run ``refresh_destination_acls`` here, recorded in the instance like the partitions' runs."""
    run, error = _execute(definitions.resolve_job_def(refresh_destination_acls.name), instance)
    result = AclRefreshResult(error=error)
    for event in run.all_events if run is not None else ():
        if event.event_type_value == "ASSET_OBSERVATION":
            metadata = event.event_specific_data.asset_observation.metadata
            result.metadata = {name: value.value for name, value in metadata.items()}
    return result


def _execute(job, instance: DagsterInstance, partition_key: str | None = None):
    """(the run, None) on success; (the run or None, the error in one line) otherwise."""
    try:
        run = job.execute_in_process(
            run_config=QUIET_CONSOLE, instance=instance, partition_key=partition_key, raise_on_error=False
        )
    except DagsterInvalidConfigError as error:  # e.g. an EnvVar that is not set
        return None, " ".join(problem.message.splitlines()[0] for problem in error.errors)
    return run, None if run.success else _failure_message(run)


def _failure_message(run) -> str:
    """The first failed step's own description (a ``Failure``) or its error's first line."""
    for event in run.all_events:
        failure = event.step_failure_data if event.is_step_failure else None
        if failure is None:
            continue
        if failure.user_failure_data and failure.user_failure_data.description:
            return failure.user_failure_data.description
        error = failure.error
        while error is not None and error.cause is not None and "max_retries" in error.message:
            error = error.cause  # "Exceeded max_retries of 3": the cause is the news
        if error is not None:
            return error.message.strip().splitlines()[0]
    return "the run failed"
