"""Headless sync: what ``mastodon-s3-sync sync`` does, through Dagster, recorded in DAGSTER_HOME.

With Dagster's default run launcher the partitions' runs execute here, each over up to
``SYNC_PARTITIONS_PER_RUN`` contiguous pending partitions: a table's runs one after another, and
up to ``SYNC_TABLES_AT_ONCE`` tables at the same time, one thread each, so that one table's
planning and per-run bookkeeping overlap another's copying. With another launcher
(dagster-celery.yaml: workers on other hosts) they are submitted to the instance's run queue and
followed (``queued_runs``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta

from dagster import DagsterInstance, DagsterInvalidConfigError, Definitions

from mastodon_s3_sync.core import settings
from mastodon_s3_sync.core.copying import MOSTLY_MISSING, mostly_missing_error
from mastodon_s3_sync.core.dagster_lock import DAGSTER_LOCK
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.progress import PROGRESS
from mastodon_s3_sync.core.tuning import Tuning
from mastodon_s3_sync.dagster_internals import captures_output, code_location, submit_partition_run
from mastodon_s3_sync.definitions.acl_refresh import FIX_ALL_PREFIX, refresh_acls_op, refresh_destination_acls
from mastodon_s3_sync.definitions.jobs import sync_job_name
from mastodon_s3_sync.definitions.partitions import (
    add_new_partitions,
    partitions_in_progress,
    partitions_name,
    range_tags,
    stale_partitions,
    unsynced_partitions,
)
from mastodon_s3_sync.execution.queued_runs import (
    DEFINITIONS_MODULE,
    LOCATION_NAME,
    Outcome,
    cancel_queued,
    follow_runs,
    heartbeat_progress,
    runs_execute_elsewhere,
)


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
    acls_fixed: int = 0
    """Skipped objects (already at the destination) that had to be private: PutObjectAcl(private) sent."""


QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
"""The runs' events still go to DAGSTER_HOME (the UI shows them); the terminal gets our summary."""


def sync_tables(
    definitions: Definitions,
    instance: DagsterInstance,
    tables: Sequence[str],
    database: MastodonDatabase,
    tuning: Tuning,
    *,
    tables_at_once: int = 1,
    table_progress: Callable[[str], AbstractContextManager] | None = None,
) -> list[TableSyncResult]:
    """Cut new partitions, then materialize every partition not yet synced or with changed rows.

    ``database`` and ``tuning`` are the resolved resources (the definitions' own hold EnvVars, which
    only a run resolves). ``table_progress(table)`` is entered around each table's runs, in the
    thread that executes them. With ``tables_at_once`` above 1 the instance must not capture the
    runs' output (``instance.in_process_instance``): Dagster's capture redirects the process's
    stdout and stderr, which concurrent runs cannot share.
    """

    def one_table(table: str, stop: threading.Event | None = None) -> TableSyncResult:
        with table_progress(table) if table_progress else nullcontext():
            return _sync_table(definitions, instance, table, database, tuning, stop)

    if tables_at_once <= 1 or len(tables) <= 1 or runs_execute_elsewhere(instance):
        return [one_table(table) for table in tables]
    if captures_output(instance):
        raise ValueError("tables_at_once > 1 needs an instance that does not capture the runs' output")
    return _in_threads(tables, tables_at_once, one_table)


class _StopRequested:
    """Heard in each table's thread: once set, the copy step there stops at its next progress
    report (a KeyboardInterrupt out of the engine, failed and not retried by
    ``assets.one_line_failures``: its partitions stay pending) and no new run starts."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def planned(self, objects: int) -> None:
        pass

    def advanced(self, objects: int, bytes_copied: int) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt


def _in_threads(
    tables: Sequence[str], at_once: int, one_table: Callable[[str, threading.Event], TableSyncResult]
) -> list[TableSyncResult]:
    """``one_table`` for each table, ``at_once`` at a time; Ctrl-C or a table's error (a
    misconfiguration) stops the others within a progress report and is raised here."""
    stop = _StopRequested()

    def in_thread(table: str) -> TableSyncResult:
        with PROGRESS.listening(stop, this_thread_only=True), DAGSTER_LOCK.held():
            return one_table(table, stop.event)

    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="sync") as pool:
        futures = [pool.submit(in_thread, table) for table in tables]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except KeyboardInterrupt:
            print("Stopping the runs in progress...", file=sys.stderr, flush=True)
            _stop_all(stop, futures)
            raise
        failed = [future for future in futures if future.done() and future.exception() is not None]
        if failed:
            _stop_all(stop, futures)
            raise failed[0].exception()
        return [future.result() for future in futures]


def _stop_all(stop: _StopRequested, futures) -> None:
    stop.event.set()
    for future in futures:
        future.cancel()
    wait(futures)


def _sync_table(
    definitions: Definitions,
    instance: DagsterInstance,
    table: str,
    database: MastodonDatabase,
    tuning: Tuning,
    stop: threading.Event | None,
) -> TableSyncResult:
    result = TableSyncResult(table)
    result.new_partitions = add_new_partitions(instance, database, table, tuning.partition_rows, include_tail=True)
    with database.connection() as connection:
        stale = stale_partitions(instance, connection, TABLES[table], timedelta(minutes=tuning.change_overlap_minutes))
    result.changed = sorted(stale)
    pending = unsynced_partitions(instance, table) + result.changed
    if runs_execute_elsewhere(instance):
        _submit_and_follow(instance, table, pending, result, tuning)
        return result
    job = definitions.resolve_job_def(sync_job_name(table))
    every_key = instance.get_dynamic_partitions(partitions_name(table))
    for keys in contiguous_groups(every_key, pending, settings.value("SYNC_PARTITIONS_PER_RUN")):
        if stop is not None and stop.is_set():
            break
        run, error = _execute(job, instance, partition_keys=keys)
        if error is not None:
            for key in keys:
                _record_failure(result, key, error)
            continue
        for event in run.get_asset_materialization_events():
            metadata = {name: value.value for name, value in event.materialization.metadata.items()}
            _record_success(result, event.materialization.partition, metadata, tuning)
    return result


def contiguous_groups(every_key: Sequence[str], pending: Sequence[str], limit: int) -> list[list[str]]:
    """The pending keys in the partitions' (id) order, cut into runs of at most ``limit`` keys that
    follow each other: a run covers one unbroken id span."""
    position = {key: index for index, key in enumerate(every_key)}
    groups: list[list[str]] = []
    for key in sorted(set(pending), key=position.__getitem__):
        last = groups[-1][-1] if groups else None
        if last is not None and position[key] == position[last] + 1 and len(groups[-1]) < limit:
            groups[-1].append(key)
        else:
            groups.append([key])
    return groups


def _record_failure(result: TableSyncResult, key: str, error: str) -> None:
    result.failed[key] = error
    if MOSTLY_MISSING in error:
        raise ConfigError(error)  # stop early: every other partition would say the same


def _record_success(result: TableSyncResult, key: str, metadata: dict, tuning: Tuning) -> None:
    result.succeeded.append(key)
    result.copied += metadata.get("objects_copied", 0)
    result.skipped += metadata.get("objects_skipped", 0)
    result.missing += metadata.get("objects_missing", 0)
    result.acls_fixed += metadata.get("acls_fixed", 0)
    mostly_missing = mostly_missing_error(result.missing, result.copied + result.skipped + result.missing)
    if mostly_missing and not tuning.accept_missing:
        raise ConfigError(mostly_missing)


def _submit_and_follow(
    instance: DagsterInstance, table: str, pending: list[str], result: TableSyncResult, tuning: Tuning
) -> None:
    """Queue a run per pending partition (following instead those with a run still in progress) and
    follow them all to the end, recording each outcome as the in-process path does."""
    job_name = sync_job_name(table)
    keys = list(dict.fromkeys(pending))
    runs = partitions_in_progress(instance, table, keys)
    to_submit = [key for key in keys if key not in runs]
    if to_submit:
        with code_location(instance, DEFINITIONS_MODULE, LOCATION_NAME) as workspace:
            for key in to_submit:
                runs[key] = submit_partition_run(instance, workspace, job_name, key)
    order = {key: index for index, key in enumerate(keys)}

    def on_outcome(outcome: Outcome) -> None:
        if outcome.error is not None:
            if MOSTLY_MISSING in outcome.error:
                cancel_queued(instance, list(runs.values()))
            _record_failure(result, outcome.partition, outcome.error)
        else:
            _record_success(result, outcome.partition, outcome.metadata, tuning)

    try:
        follow_runs(instance, runs, heartbeat_progress(instance), on_outcome, _run_failure_message)
    except KeyboardInterrupt:
        print(
            f"{table}: the submitted runs go on in the run queue; `sync` again follows them to the end",
            file=sys.stderr,
            flush=True,
        )
        raise
    result.succeeded.sort(key=order.__getitem__)


@dataclass
class AclRefreshResult:
    metadata: dict[str, int] = field(default_factory=dict)
    """``acls_set`` and the other figures of ``definitions.acl_refresh.acl_metadata``."""
    fixed: dict[str, dict[str, int]] = field(default_factory=dict)
    """With ``fix_all_tables``: table -> the figures of ``definitions.acl_refresh.fix_all_metadata``."""
    error: str | None = None


def refresh_acls_in_process(
    definitions: Definitions, instance: DagsterInstance, fix_all_tables: Sequence[str] = ()
) -> AclRefreshResult:
    """Run ``refresh_destination_acls`` here, recorded in the instance like the partitions' runs;
    with ``fix_all_tables``, it also sets every ACL of those tables (``sync --fix-acls``)."""
    config = {"fix_all": bool(fix_all_tables), "tables": list(fix_all_tables or TABLES)}
    run_config = {**QUIET_CONSOLE, "ops": {refresh_acls_op.name: {"config": config}}}
    run, error = _execute(definitions.resolve_job_def(refresh_destination_acls.name), instance, run_config=run_config)
    result = AclRefreshResult(error=error)
    for event in run.all_events if run is not None else ():
        if event.event_type_value == "ASSET_OBSERVATION":
            observation = event.event_specific_data.asset_observation
            metadata = {name: value.value for name, value in observation.metadata.items()}
            if any(name.startswith(FIX_ALL_PREFIX) for name in metadata):
                result.fixed[observation.asset_key.to_user_string()] = metadata
            else:
                result.metadata = metadata
    return result


def _execute(job, instance: DagsterInstance, partition_keys: Sequence[str] = (), run_config: dict | None = None):
    """(the run, None) on success; (the run or None, the error in one line) otherwise. A run over
    several partitions carries the range tags that backfills give their ranged runs."""
    single = partition_keys[0] if len(partition_keys) == 1 else None
    tags = range_tags(partition_keys) if len(partition_keys) > 1 else None
    try:
        run = job.execute_in_process(
            run_config=run_config or QUIET_CONSOLE,
            instance=instance,
            partition_key=single,
            tags=tags,
            raise_on_error=False,
        )
    except DagsterInvalidConfigError as error:  # e.g. an EnvVar that is not set
        return None, " ".join(problem.message.splitlines()[0] for problem in error.errors)
    return run, None if run.success else _failure_message(run)


def _failure_message(run) -> str:
    """The first failed step's own description (a ``Failure``) or its error's first line."""
    return _failure_in_events(run.all_events) or "the run failed"


def _run_failure_message(instance: DagsterInstance, run_id: str) -> str:
    """As ``_failure_message``, for a run recorded in the instance (it ran elsewhere); else the run's
    own failure (a lost worker, a run no worker took) or cancellation."""
    events = [record.dagster_event for record in instance.all_logs(run_id) if record.is_dagster_event]
    found = _failure_in_events(events)
    if found:
        return found
    for event in reversed(events):
        if event.event_type_value in ("PIPELINE_FAILURE", "PIPELINE_CANCELED") and event.message:
            return event.message.strip().splitlines()[0]
    return "the run failed"


def _failure_in_events(events) -> str | None:
    for event in events:
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
    return None
