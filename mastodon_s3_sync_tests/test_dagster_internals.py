"""The upgrade check: each of Dagster's internals that ``dagster_internals.py`` uses, on the
installed Dagster. ``make dagster-upgrade-check`` runs this module on the newest Dagster release; a
failure here names what the upgrade breaks. Fast: no server, no subprocess."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    StaticPartitionsDefinition,
    asset,
    define_asset_job,
    instance_for_test,
    job,
    op,
    reconstructable,
)
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

from mastodon_s3_sync import dagster_internals as door
from mastodon_s3_sync.definitions.partitions import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG, UNFINISHED_STATUSES

REPO = Path(__file__).resolve().parents[1]


@asset(partitions_def=StaticPartitionsDefinition(["a", "b"]))
def letters() -> None:
    pass


@op
def hello() -> None:
    pass


@job
def plain_job() -> None:
    hello()


defs = Definitions(assets=[letters], jobs=[define_asset_job("letters_job", [letters]), plain_job])
"""What ``code_location`` loads from this module."""


def test_every_name_the_door_imports_exists() -> None:
    """Each ``from dagster... import name`` in the door, those inside its functions too."""
    missing = []
    for node in ast.walk(ast.parse(Path(door.__file__).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0].startswith("dagster"):
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{alias.name}" for alias in node.names if not hasattr(module, alias.name)]
    assert missing == []


def parameters(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(
    ("cls", "overridden"),
    [
        (door.ReusingSqliteEventLogStorage, {"_connect", "_initdb"}),
        (door.queue_routed_celery_launcher(), {"_launch_celery_task_run"}),
    ],
    ids=["event log storage", "celery launcher"],
)
def test_overridden_methods_still_exist_with_the_same_parameters(cls, overridden) -> None:
    [base] = cls.__bases__
    own = {
        name
        for name, value in vars(cls).items()
        if callable(value) and name.startswith("_") and not name.endswith("__") and hasattr(base, name)
    }
    assert own == overridden
    for name in overridden:
        assert parameters(getattr(cls, name)) == parameters(getattr(base, name)), name


def test_the_base_classes_still_call_the_overridden_methods() -> None:
    """An override nobody calls any more would silently stop working."""
    storage = door.SqliteEventLogStorage
    assert "self._connect(" in inspect.getsource(storage) and "self._initdb(" in inspect.getsource(storage)
    launcher = door.queue_routed_celery_launcher().__bases__[0]
    for method in (launcher.launch_run, launcher.resume_run):
        assert "self._launch_celery_task_run(" in inspect.getsource(method)


def test_syncs_instance_runs_with_its_overrides_in_dagsters_files(tmp_path) -> None:
    """``instance_from_dir``, ``event_logs_directory``, ``NO_OUTPUT_CAPTURE``/``captures_output`` and the
    event log storage: a run through them is read back by Dagster's own instance of the same home."""
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    home = str(tmp_path)
    overrides = {
        **door.NO_OUTPUT_CAPTURE,
        "event_log_storage": {
            **door.REUSING_EVENT_LOG_STORAGE,
            "config": {"base_dir": door.event_logs_directory(home)},
        },
    }
    with door.instance_from_dir(home, overrides) as instance:
        assert type(instance.event_log_storage) is door.ReusingSqliteEventLogStorage
        assert not door.captures_output(instance)
        assert door.runs_stored_in_sqlite(instance)
        job_def = defs.resolve_job_def("letters_job")
        result = job_def.execute_in_process(instance=instance, partition_key="b")
        assert result.success
        run_id = result.run_id
        assert instance.get_run_by_id(run_id).tags[door.PARTITION_NAME_TAG] == "b"
    assert door.event_logs_directory(home) == f"{home}/history/runs/"
    assert (tmp_path / "history" / "runs" / f"{run_id}.db").is_file()
    with DagsterInstance.from_config(home) as dagsters_own:
        assert door.captures_output(dagsters_own)
        assert type(dagsters_own.event_log_storage) is door.SqliteEventLogStorage
        events = [
            record.dagster_event.event_type for record in dagsters_own.all_logs(run_id) if record.is_dagster_event
        ]
        assert DagsterEventType.ASSET_MATERIALIZATION in events and events[-1] == DagsterEventType.RUN_SUCCESS


def test_run_tags_and_statuses_are_dagsters() -> None:
    """Tags stored on runs: a new spelling would leave the runs recorded before unrecognized."""
    from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    assert door.PARTITION_NAME_TAG == PARTITION_TAG == "dagster/partition"
    assert door.RETRY_STRATEGY_TAG == "dagster/retry_strategy"
    assert door.WILL_RETRY_TAG == "dagster/will_retry"
    assert door.AUTO_RETRY_RUN_ID_TAG == "dagster/auto_retry_run_id"
    assert (RANGE_START_TAG, RANGE_END_TAG) == (ASSET_PARTITION_RANGE_START_TAG, ASSET_PARTITION_RANGE_END_TAG)
    assert set(UNFINISHED_STATUSES) == set(NOT_FINISHED_STATUSES), "the run statuses Dagster counts as in progress"


def test_a_partition_run_is_queued_as_the_launchpad_does() -> None:
    coordinator = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
    with instance_for_test(overrides={"run_coordinator": coordinator}) as instance:
        with door.code_location(instance, __name__, "upgrade_check") as workspace:
            run_id = door.submit_partition_run(instance, workspace, "letters_job", "a")
        run = instance.get_run_by_id(run_id)
        assert run.status == DagsterRunStatus.QUEUED
        assert run.tags[door.PARTITION_NAME_TAG] == "a"
        assert run.remote_job_origin.location_name == "upgrade_check"


def test_a_celery_worker_runs_what_the_launcher_sent_to_its_queue() -> None:
    """The launcher routes a run to the queue its tag names (Celery's in-memory broker); the task's
    packed arguments unpack and the run executes here, with an engine event's metadata recorded."""
    from dagster._core.launcher import LaunchRunContext

    launcher = door.queue_routed_celery_launcher()(
        default_queue="dagster", broker="memory://", backend="cache+memory://"
    )
    with instance_for_test() as instance:
        launcher.register_instance(instance)
        run = instance.create_run_for_job(
            plain_job,
            tags={"dagster-celery/queue": "host-a"},
            job_code_origin=reconstructable(plain_job).get_python_origin(),
        )
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        with launcher.celery.connection_for_read() as connection:
            message = connection.SimpleQueue("host-a").get(timeout=5)
            message.ack()
        args, kwargs, _ = message.payload
        unpacked = door.unpack_run_args(kwargs["execute_job_args_packed"], resume=False)
        assert unpacked.run_id == run.run_id
        instance.report_engine_event("worker here", run, door.EngineEventData({"Celery worker": "alpha@host"}))
        assert door.execute_run_here(instance, run.run_id, resume=False) == 0
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
        engine_events = [
            record.dagster_event.engine_event_data
            for record in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
            if record.dagster_event.message == "worker here"
        ]
        assert engine_events[0].metadata["Celery worker"].value == "alpha@host"
    health = door.CheckRunHealthResult(door.WorkerStatus.FAILED, "gone")
    assert (health.status, health.msg) == (door.WorkerStatus.FAILED, "gone")


def test_the_compute_log_manager_calls_the_client_it_is_given(tmp_path) -> None:
    manager = S3ComputeLogManager(bucket="logs", local_dir=str(tmp_path), region="us-east-1")
    client = boto3.session.Session(
        aws_access_key_id="key", aws_secret_access_key="secret", region_name="us-east-1"
    ).client(
        "s3",
        endpoint_url="http://127.0.0.1:9",  # discard: nothing listens
        config=botocore.config.Config(retries={"max_attempts": 0}, connect_timeout=1),
    )
    door.use_s3_client(manager, client)
    with pytest.raises(botocore.exceptions.EndpointConnectionError, match="127.0.0.1:9"):
        manager.delete_logs(log_key=["run", "step"])
