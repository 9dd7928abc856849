"""The door to Dagster's internals: the only module of this product that imports ``dagster._*`` or
overrides a private method of a Dagster class. A Dagster upgrade breaks, if anything, what is here;
``make dagster-upgrade-check`` runs ``mastodon_s3_sync_tests/test_dagster_internals.py``, which
exercises each item, on the newest Dagster release. Everything else uses Dagster's public API.
Its users are ``execution/`` and ``hosts/``; ``definitions/`` (what ``dagster dev`` loads) never
imports it (test_architecture enforces both).

Checked against dagster 1.13.27 (dagster-aws, dagster-celery, dagster-postgres 0.29.27):

| item | from | why (what Dagster's public API lacks) |
| --- | --- | --- |
| ``instance_from_dir`` | ``_core.instance.ref.InstanceRef`` | ``sync``'s instance is DAGSTER_HOME's with two overrides; ``DagsterInstance.get``/``from_config`` take none |
| ``event_logs_directory`` | ``_core.storage.sqlite_storage`` | where Dagster's SQLite default keeps run event logs, not spelled again |
| ``NO_OUTPUT_CAPTURE``, ``captures_output`` | ``_core.storage.noop_compute_log_manager`` | ``sync`` runs tables in threads, which Dagster's capture of the process's stdout cannot share |
| ``ReusingSqliteEventLogStorage`` | ``_core.storage.event_log``, ``_core.storage.sql(ite)`` | overrides ``_connect``, ``_initdb``: 0.40 -> 0.23 s of CPU per run (benchmarks/README.md) |
| ``PARTITION_NAME_TAG`` and the retry tags | ``_core.storage.tags`` | run tags Dagster sets and reads; not exported |
| ``code_location``, ``submit_partition_run`` | ``_core.workspace``, ``_core.remote_origin``, ``_core.definitions.selector`` | queue a run as the UI's launchpad does, without a webserver |
| ``unpack_run_args``, ``execute_run_here`` | ``_cli.api``, ``_grpc.types``, ``_serdes`` | a Celery worker runs the run dagster-celery's launcher sent, as ``dagster api execute_run`` would |
| ``EngineEventData`` | ``_core.events`` | metadata on the engine events the worker and the launcher report |
| ``runs_stored_in_sqlite`` | ``_core.storage.runs.sqlite`` | a worker refuses a DAGSTER_HOME whose runs the daemon cannot see |
| ``CheckRunHealthResult``, ``WorkerStatus`` | ``_core.launcher`` | what a run launcher's public ``check_run_worker_health`` returns |
| ``queue_routed_celery_launcher`` | dagster-celery's ``_launch_celery_task_run``, ``_get_run_priority`` | routes a run by queue name alone (its routing keys reach no host queue on Redis) |
| ``use_s3_client`` | dagster-aws's ``S3ComputeLogManager._s3_session`` | its client takes credentials from boto3's chain only; ours come from DESTINATION_* |
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import DagsterInstance
from dagster._core.events import EngineEventData  # metadata of a reported engine event
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus  # check_run_worker_health's result
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage  # sync's event log's base
from dagster._core.storage.sql import create_engine  # Dagster's SQLAlchemy engine, as its event log makes it
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS  # its event log's busy timeout
from dagster._core.storage.tags import (
    AUTO_RETRY_RUN_ID_TAG,  # on a failed run: the run id of its retry
    PARTITION_NAME_TAG,  # a run of one partition
    RETRY_STRATEGY_TAG,  # FROM_FAILURE (Dagster's default) or ALL_STEPS
    WILL_RETRY_TAG,  # on a failed run that run retries will retry
)
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

__all__ = [
    "AUTO_RETRY_RUN_ID_TAG",
    "PARTITION_NAME_TAG",
    "RETRY_STRATEGY_TAG",
    "WILL_RETRY_TAG",
    "CheckRunHealthResult",
    "EngineEventData",
    "SqliteEventLogStorage",
    "WorkerStatus",
]

# --- sync's instance ------------------------------------------------------------------------------


def instance_from_dir(home: str, overrides: Mapping[str, Any]) -> DagsterInstance:
    """DAGSTER_HOME's instance with parts of its dagster.yaml replaced (1.13.27: ``InstanceRef.from_dir``'s
    ``overrides``; the public constructors read the file as it is)."""
    from dagster._core.instance.ref import InstanceRef

    return DagsterInstance.from_ref(InstanceRef.from_dir(home, overrides=overrides))


def event_logs_directory(home: str) -> str:
    """Where Dagster's SQLite default keeps the runs' event log files (1.13.27: ``history/runs/``)."""
    from dagster._core.storage.sqlite_storage import _event_logs_directory

    return _event_logs_directory(home)


NO_OUTPUT_CAPTURE = {
    "compute_logs": {
        "module": "dagster.core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
        "config": {},
    }
}
"""An instance override: the runs leave the process's stdout and stderr alone (1.13.27)."""


def captures_output(instance: DagsterInstance) -> bool:
    """Whether the instance's runs redirect the process's stdout and stderr (1.13.27: any compute log
    manager but the no-op one)."""
    from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager

    return not isinstance(instance.compute_log_manager, NoOpComputeLogManager)


# --- sync's event log storage ---------------------------------------------------------------------

ENGINES_KEPT = 8
"""Run files whose engine stays open (NullPool: an engine holds no connection between events)."""


class ReusingSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, minus two costs every run of ``sync`` pays again.

    Dagster's ``SqliteEventLogStorage`` keeps each run's events in a database file of its own
    (``DAGSTER_HOME/history/runs/<run id>.db``). For each new file it loads its alembic migration
    scripts twice (to find the head revision, then to stamp it), and for each event it creates and
    disposes a SQLAlchemy engine, whose compiled-statement cache goes with it. Measured on a run of
    an empty partition (35 events, ``benchmarks/bench_end_to_end.py --breakdown``): 0.40 s of CPU
    with Dagster's class, 0.23 s with this one.

    Here a new run's file is a copy of one that Dagster's own code initialized (same schema, same
    alembic stamp, same WAL mode), made once per process, and each file's engine is kept while its run
    goes on. What is stored is Dagster's format: the webserver, the daemon and the daemon's run
    workers read and write these same files with Dagster's class.

    Overrides ``_connect`` and ``_initdb`` (1.13.27: ``_connect(shard)`` holds ``_db_lock``, creates an
    engine, initializes the shard once through ``_initdb(engine, for_index_shard)`` and disposes the
    engine at the end).
    """

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._template: str | None = None
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None) or create_engine(
            self.conn_string_for_shard(shard),
            poolclass=NullPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        self._engines[shard] = engine  # the most recently used last
        while len(self._engines) > ENGINES_KEPT:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator:
        """Dagster's ``_connect``, with the shard's engine kept instead of created and disposed."""
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """A new run file starts as a copy of the template. It appears under its name at once
        (a hard link), so another process never opens it half written; if another process
        created the file first, Dagster's own check of its schema and stamp runs instead."""
        database = engine.url.database
        if for_index_shard or not database or os.path.exists(database):
            super()._initdb(engine, for_index_shard)
            return
        staged = f"{database}.{os.getpid()}.new"  # not *.db: Dagster's listing of run files skips it
        shutil.copyfile(self._run_template(), staged)
        try:
            os.link(staged, database)
        except FileExistsError:
            super()._initdb(engine)
        finally:
            os.unlink(staged)

    def _run_template(self) -> str:
        """An empty run file, initialized by Dagster's own ``_initdb`` (once per process)."""
        if self._template is None:
            directory = tempfile.mkdtemp(prefix="mastodon-s3-sync-run-events-")
            engine = create_engine(f"sqlite:///{directory}/template.db", poolclass=NullPool)
            super()._initdb(engine)
            engine.dispose()
            self._template = f"{directory}/template.db"
        return self._template

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        if self._template is not None:
            shutil.rmtree(os.path.dirname(self._template), ignore_errors=True)
            self._template = None
        super().dispose()


REUSING_EVENT_LOG_STORAGE = {"module": __name__, "class": ReusingSqliteEventLogStorage.__name__}
"""Where an instance override finds ``ReusingSqliteEventLogStorage`` (with its ``config``)."""

# --- queuing a run, as the UI's launchpad does ------------------------------------------------------


@contextmanager
def code_location(instance: DagsterInstance, module_name: str, location_name: str) -> Iterator[tuple]:
    """(request context, code location, repository): the definitions in ``module_name``, loaded in this
    process under the name the daemon knows the code location by (1.13.27: a workspace of one
    ``InProcessCodeLocationOrigin``)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=module_name, working_directory=os.getcwd()),
        location_name=location_name,
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        request = context.create_request_context()
        location = request.get_code_location(location_name)
        [repository] = location.get_repositories().values()
        yield request, location, repository


def submit_partition_run(instance: DagsterInstance, workspace: tuple, job_name: str, partition_key: str) -> str:
    """Create a run of ``job_name`` for one partition and queue it; its run id (1.13.27: the launchpad's
    ``create_run`` from the remote job's snapshots and origins, then ``submit_run``)."""
    from dagster._core.definitions.selector import JobSubsetSelector

    request, location, repository = workspace
    remote_job = location.get_job(
        JobSubsetSelector(
            location_name=location.name, repository_name=repository.name, job_name=job_name, op_selection=None
        )
    )
    plan = location.get_execution_plan(remote_job, {}, step_keys_to_execute=None, known_state=None, instance=instance)
    run = instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config={},
        status=None,
        tags={**remote_job.tags, PARTITION_NAME_TAG: partition_key},
        root_run_id=None,
        parent_run_id=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        job_snapshot=remote_job.job_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        asset_selection=None,
        asset_check_selection=None,
        resolved_op_selection=remote_job.resolved_op_selection,
        op_selection=None,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_graph=repository.asset_graph,
    )
    instance.submit_run(run.run_id, request)
    return run.run_id


# --- Celery: the worker and the launcher ----------------------------------------------------------


def unpack_run_args(packed: Mapping[str, Any], resume: bool):
    """The ``ExecuteRunArgs`` (or ``ResumeRunArgs``) dagster-celery's launcher packed into a task (1.13.27)."""
    from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
    from dagster._serdes import unpack_value

    return unpack_value(packed, as_type=ResumeRunArgs if resume else ExecuteRunArgs)


def execute_run_here(instance: DagsterInstance, run_id: str, resume: bool) -> int:
    """Execute (or resume) a launched run in this process, as ``dagster api execute_run`` does; its
    exit code, 1 if the run failed (1.13.27: ``_execute_run_command_body``, ``_resume_run_command_body``)."""
    from dagster._cli.api import _execute_run_command_body, _resume_run_command_body

    body = _resume_run_command_body if resume else _execute_run_command_body
    return body(run_id=run_id, instance=instance, write_stream_fn=lambda event: None, set_exit_code_on_failure=True)


def runs_stored_in_sqlite(instance: DagsterInstance) -> bool:
    """Whether the instance keeps its runs in SQLite on this host (1.13.27: ``SqliteRunStorage``)."""
    from dagster._core.storage.runs.sqlite import SqliteRunStorage

    return isinstance(instance.run_storage, SqliteRunStorage)


@functools.cache
def queue_routed_celery_launcher() -> type:
    """dagster-celery's ``CeleryRunLauncher`` with runs routed by queue name alone: its
    ``<queue>.<task>`` routing keys only reach its ``dagster`` queue on Redis, and a run pinned to a
    host's queue would be undeliverable. Built on first use: importing dagster-celery costs 0.1 s,
    which ``sync`` on a single host does not pay.

    Overrides ``_launch_celery_task_run(run, task_signature, routing_key)`` (1.13.27: called by
    ``launch_run`` and ``resume_run``) and uses ``dagster_celery.launcher._get_run_priority``."""
    from dagster_celery.launcher import CeleryRunLauncher, _get_run_priority
    from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG, DAGSTER_CELERY_TASK_ID_TAG

    class QueueRoutedCeleryRunLauncher(CeleryRunLauncher):
        def _launch_celery_task_run(self, run, task_signature, routing_key: str) -> None:
            queue = run.tags.get(DAGSTER_CELERY_QUEUE_TAG, self.default_queue)
            self._instance.report_engine_event("Creating Celery run worker job task", run, cls=self.__class__)
            result = task_signature.apply_async(priority=_get_run_priority(run), queue=queue)
            self._instance.add_run_tags(run.run_id, {DAGSTER_CELERY_TASK_ID_TAG: result.task_id})
            self._instance.report_engine_event(
                f"Celery task has been forwarded to the broker (queue {queue}).",
                run,
                EngineEventData({"Run ID": run.run_id, "Celery Task ID": result.task_id, "Celery Queue": queue}),
                cls=self.__class__,
            )

    return QueueRoutedCeleryRunLauncher


def use_s3_client(manager, client) -> None:
    """Make dagster-aws's ``S3ComputeLogManager`` upload and read through ``client`` (1.13.27: every
    call goes through its ``_s3_session``, a client it builds from boto3's credential chain)."""
    manager._s3_session = client
