"""Runs on several hosts, without servers: which instance file the variables select, the Celery
settings the launcher and the workers share, the heartbeat a worker keeps for its run, and how the
launcher's health check reads it (test_celery_workers.py runs it all for real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import DagsterRun

from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.dagster_internals import WorkerStatus
from mastodon_s3_sync.execution.instance import ensure_dagster_home
from mastodon_s3_sync.hosts import workers
from mastodon_s3_sync.hosts.workers import (
    VISIBILITY_TIMEOUT_SECONDS,
    WORKER_TAG,
    CeleryWorkerRunLauncher,
    RunHeartbeat,
    celery_settings,
    heartbeat_key,
    node_name,
    result_backend_url,
)

REPO = Path(__file__).resolve().parents[1]
PG = {
    "DAGSTER_PG_HOST": "db",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "u",
    "DAGSTER_PG_PASSWORD": "",
    "DAGSTER_PG_DB": "d",
}
OURS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_WORKER_LOST_SECONDS", "DAGSTER_COMPUTE_LOGS_BUCKET", *PG)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (*OURS, "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(REPO)  # where the instance files are, as for the CLI and `make dev`
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return monkeypatch


def test_the_broker_selects_the_celery_instance_file(clean_env, tmp_path):
    for name, value in {
        **PG,
        "CELERY_BROKER_URL": "redis://redis:6379/0",
        "DAGSTER_COMPUTE_LOGS_BUCKET": "logs",
    }.items():
        clean_env.setenv(name, value)
    home = ensure_dagster_home()
    assert (home / "dagster.yaml").read_text() == (REPO / "dagster-celery.yaml").read_text()


@pytest.mark.parametrize("missing", ["DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD", "DAGSTER_COMPUTE_LOGS_BUCKET"])
def test_the_celery_instance_names_what_it_lacks(clean_env, missing):
    for name, value in {
        **PG,
        "CELERY_BROKER_URL": "redis://redis:6379/0",
        "DAGSTER_COMPUTE_LOGS_BUCKET": "logs",
    }.items():
        if name != missing:
            clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=f"CELERY_BROKER_URL is set.*{missing}"):
        ensure_dagster_home()


def test_without_the_broker_the_other_files_are_selected_as_before(clean_env):
    assert (ensure_dagster_home() / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()


def test_make_dev_takes_the_instance_file_the_cli_takes(clean_env, tmp_path):
    """The Makefile names no instance file: ``make dev`` prepares DAGSTER_HOME with execution/instance.py."""
    dev_target = (REPO / "Makefile").read_text().split("\ndev:")[1].split("\n\n")[0]
    assert "-m mastodon_s3_sync.execution.instance" in dev_target and ".yaml" not in dev_target

    def prepare(**variables: str) -> subprocess.CompletedProcess:
        environ = {name: value for name, value in os.environ.items() if name not in OURS}
        environ["DAGSTER_HOME"] = str(tmp_path / "home")
        command = [sys.executable, "-m", "mastodon_s3_sync.execution.instance"]
        return subprocess.run(command, cwd=REPO, env={**environ, **variables}, capture_output=True, text=True)

    lacking = prepare(**PG, CELERY_BROKER_URL="redis://r/0")
    assert lacking.returncode == 2 and "set DAGSTER_COMPUTE_LOGS_BUCKET" in lacking.stderr, lacking.stderr
    assert not (tmp_path / "home" / "dagster.yaml").exists()
    done = prepare(**PG)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "home" / "dagster.yaml").read_text() == (REPO / "dagster-postgres.yaml").read_text()


def test_launcher_and_workers_share_the_learned_settings():
    config = celery_settings("redis://r:6379/0", "redis://r:6379/1")
    assert config["task_acks_late"] is True
    assert config["worker_prefetch_multiplier"] == 1 and config["worker_concurrency"] == 1
    assert config["result_backend"].startswith("redis://")
    assert config["worker_redirect_stdouts"] is False, "Dagster's compute log capture needs the real stdout/stderr"
    runtime = yaml.safe_load((REPO / "dagster-celery.yaml").read_text())["run_monitoring"]["max_runtime_seconds"]
    assert config["broker_transport_options"]["visibility_timeout"] == VISIBILITY_TIMEOUT_SECONDS > runtime
    assert config["result_expires"] > runtime


def test_the_result_backend_is_the_brokers_redis_unless_set(monkeypatch):
    assert result_backend_url({"CELERY_BROKER_URL": "redis://r:6379/3"}) == "redis://r:6379/3"
    with pytest.raises(ConfigError, match="CELERY_RESULT_BACKEND must be a Redis URL"):
        result_backend_url({"CELERY_BROKER_URL": "redis://r/0", "CELERY_RESULT_BACKEND": "rpc://"})
    with pytest.raises(ConfigError, match="CELERY_BROKER_URL must be a Redis URL"):
        result_backend_url({"CELERY_BROKER_URL": "amqp://guest@rabbit//"})
    with pytest.raises(ConfigError, match="CELERY_BROKER_URL is not set"):
        result_backend_url({})
    # The launcher's config (dagster-celery.yaml's broker, an explicit backend) goes through the same rule.
    assert result_backend_url({}, broker="redis://b:6379/0") == "redis://b:6379/0"
    assert result_backend_url({"CELERY_RESULT_BACKEND": "redis://e:6379/1"}, broker="redis://b:6379/0") == (
        "redis://e:6379/1"
    )
    assert result_backend_url({}, backend="redis://c:6379/2", broker="redis://b:6379/0") == "redis://c:6379/2"
    with pytest.raises(ConfigError, match="CELERY_RESULT_BACKEND must be a Redis URL"):
        result_backend_url({}, backend="rpc://", broker="redis://b:6379/0")


def test_worker_names():
    assert node_name(None) == "copy@%h"
    assert node_name("copy-2") == "copy-2@%h"
    assert node_name("a@b") == "a@b"


class FakeRedis:
    def __init__(self):
        self.values: dict[str, str] = {}
        self.expiries: dict[str, int] = {}

    def set(self, key, value, ex=None):
        self.values[key], self.expiries[key] = value, ex

    def get(self, key):
        return self.values.get(key)

    def delete(self, key):
        self.values.pop(key, None)


def test_a_run_s_heartbeat_carries_its_progress_and_ends_with_it():
    client = FakeRedis()
    key = heartbeat_key("run-1")
    with RunHeartbeat(client, "run-1", "alpha@host", "task-1", lost_after=20) as heartbeat:
        assert client.expiries[key] == 20 and heartbeat.interval == 5
        heartbeat.planned(10)
        heartbeat.advanced(4, 1000)
        heartbeat.beat()
        value = json.loads(client.get(key))
        assert (value["worker"], value["objects_planned"], value["objects_done"], value["bytes_copied"]) == (
            "alpha@host", 10, 4, 1000,
        )  # fmt: skip
    assert client.get(key) is None


class FakeResult:
    def __init__(self, state: str):
        self.state = state


@pytest.fixture
def launcher(monkeypatch):
    launcher = CeleryWorkerRunLauncher(broker="redis://127.0.0.1:1/0")  # never connected here
    launcher._redis = FakeRedis()
    states: dict[str, str] = {}
    monkeypatch.setattr(launcher.celery, "AsyncResult", lambda task_id: FakeResult(states.get(task_id, "PENDING")))
    launcher.states = states
    return launcher


def run_with(tags: dict[str, str]) -> DagsterRun:
    return DagsterRun(job_name="sync_accounts", run_id="run-1", tags={"dagster-celery/task_id": "task-1", **tags})


def test_a_live_heartbeat_means_running_whatever_the_task_state(launcher):
    launcher.states["task-1"] = "STARTED"
    RunHeartbeat(launcher._redis, "run-1", "alpha@host", "task-1", 20).beat()
    assert launcher.check_run_worker_health(run_with({WORKER_TAG: "alpha@host"})).status == WorkerStatus.RUNNING


def test_an_expired_heartbeat_means_the_worker_is_lost(launcher):
    launcher.states["task-1"] = "STARTED"  # what a killed worker leaves behind: dagster-celery would say RUNNING
    result = launcher.check_run_worker_health(run_with({WORKER_TAG: "alpha@host"}))
    assert result.status == WorkerStatus.FAILED
    assert "alpha@host stopped sending this run's heartbeat" in result.msg


def test_a_failed_task_fails_the_run_at_once(launcher):
    launcher.states["task-1"] = "FAILURE"  # the run's process died under a live worker (OOM)
    RunHeartbeat(launcher._redis, "run-1", "alpha@host", "task-1", 20).beat()  # not expired yet
    assert launcher.check_run_worker_health(run_with({WORKER_TAG: "alpha@host"})).status == WorkerStatus.FAILED


def test_a_run_without_our_worker_tag_gets_dagster_celerys_check(launcher):
    launcher.states["task-1"] = "STARTED"
    assert launcher.check_run_worker_health(run_with({})).status == WorkerStatus.RUNNING


def test_a_worker_refuses_a_sqlite_instance(clean_env, monkeypatch, tmp_path):
    home = tmp_path / "sqlite_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    clean_env.setenv("DAGSTER_HOME", str(home))
    clean_env.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(workers, "redis_client", lambda url: type("Answering", (), {"ping": lambda self: True})())
    with pytest.raises(ConfigError, match="keeps runs in SQLite"):
        workers.check_worker_environment()


def test_sync_follows_a_run_into_its_retry_and_shows_progress_once(monkeypatch):
    """A partition's run lost with its worker (failed, will retry) is followed into the retry the
    daemon launches; the progress a retry re-counts from zero is not shown twice."""
    from dagster import DagsterRunStatus, instance_for_test

    from mastodon_s3_sync.core.progress import PROGRESS
    from mastodon_s3_sync.dagster_internals import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG
    from mastodon_s3_sync.execution import queued_runs

    shown = {"planned": 0, "done": 0}

    class Counting:
        def planned(self, objects):
            shown["planned"] += objects

        def advanced(self, objects, bytes_copied):
            shown["done"] += objects

    with instance_for_test() as instance:
        lost = DagsterRun(job_name="sync_accounts", run_id="lost", status=DagsterRunStatus.STARTED)
        retry = DagsterRun(job_name="sync_accounts", run_id="retry", status=DagsterRunStatus.STARTED)
        instance.add_run(lost)
        beats = {"lost": {"objects_planned": 10, "objects_done": 6, "bytes_copied": 60}}
        outcomes = []
        calls = iter(range(1000))

        def progress(run_id):
            step = next(calls)
            if step == 1:  # the worker is lost; the daemon fails the run and launches its retry
                instance.add_run(retry)
                instance.add_run_tags("lost", {WILL_RETRY_TAG: "true", AUTO_RETRY_RUN_ID_TAG: "retry"})
                instance.report_run_failed(instance.get_run_by_id("lost"), "worker lost")
                beats["retry"] = {"objects_planned": 10, "objects_done": 3, "bytes_copied": 30}
            if step == 3:
                instance.handle_run_event("retry", _success_event())
            return beats.get(run_id)

        monkeypatch.setattr(queued_runs, "POLL_SECONDS", 0.01)
        monkeypatch.setattr(
            queued_runs,
            "materialization_numbers",
            lambda instance, run_id: {"objects_planned": 10, "objects_copied": 4, "objects_skipped": 6},
        )
        with PROGRESS.listening(Counting()):
            queued_runs.follow_runs(
                instance, {"p1": "lost"}, progress, outcomes.append, lambda instance, run_id: "failed"
            )
    [outcome] = outcomes
    assert (outcome.partition, outcome.run_id, outcome.error) == ("p1", "retry", None)
    assert shown == {"planned": 10, "done": 10}


def _success_event():
    from dagster import DagsterEvent, DagsterEventType

    return DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name="sync_accounts", message="done")
