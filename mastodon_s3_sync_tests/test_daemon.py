"""The README's production path, for real: `dagster-daemon run` over the repo's workspace.yaml
and dagster.yaml (queued run coordinator, run retries), fed by `dagster job launch`, a backfill
launched the way the UI launches one (GraphQL `launchPartitionBackfill` on `dagster-webserver`),
`dagster job backfill`, and a run whose worker is SIGKILLed mid-partition.

One daemon and one webserver serve the whole module (each costs seconds of start-up on a
2-core machine); every test works on its own table, so the tests stay independent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus

from mastodon_s3_sync.demo.servers import _tail, free_port, fresh_database
from mastodon_s3_sync.jobs import SYNC_RUN_TAG
from mastodon_s3_sync.mastodon.tables import TABLES
from mastodon_s3_sync.partitions import add_new_partitions, parse_partition_key, partitions_name
from mastodon_s3_sync.resources import build_resources
from mastodon_s3_sync_tests.conftest import Migration, make_migration

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PARTITION_ROWS = 5
"""Small partitions, so each table has several."""
RUN_TIMEOUT = 90
"""Seconds a run may take from submission to success here (queue, start-up, copy)."""

OUR_VARIABLES = ("SOURCE_", "DESTINATION_", "DB_", "SYNC_", "DAGSTER_")
TEST_SPEED = {
    # The production values, only quicker to react: the daemon dequeues every second instead of
    # every 5, and notices a failed run (to retry it) within a second instead of 5.
    "dequeue_interval_seconds": 1,
    "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",
}
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@dataclass
class Deployment:
    """A DAGSTER_HOME with the repo's dagster.yaml, a running daemon and webserver, a seeded migration."""

    home: Path
    env: dict[str, str]
    migration: Migration
    instance: DagsterInstance
    daemon: subprocess.Popen
    daemon_log: Path
    webserver: subprocess.Popen
    webserver_log: Path
    webserver_url: str

    def dagster(self, *arguments: str, timeout: float = 120) -> str:
        """Run the `dagster` CLI from the repo root in the deployment's environment; its stdout."""
        done = subprocess.run(
            [str(BIN / "dagster"), *arguments],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"dagster {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def wait_for(self, what: str, condition: Callable[[], object], timeout: float = RUN_TIMEOUT) -> object:
        """Poll ``condition`` until it returns something truthy; fail with the daemon's log otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            for name, process, log in (
                ("dagster-daemon", self.daemon, self.daemon_log),
                ("dagster-webserver", self.webserver, self.webserver_log),
            ):
                if process.poll() is not None:
                    pytest.fail(f"{name} exited with code {process.returncode} waiting for {what}:\n{_tail(log, 60)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout}s; dagster-daemon log:\n{_tail(self.daemon_log, 60)}")
            time.sleep(0.2)

    def wait_for_runs(self, runs_filter: RunsFilter, count: int) -> list:
        """Wait until ``count`` runs match and all have finished; fail if any did not succeed."""

        def finished():
            runs = self.instance.get_runs(runs_filter)
            return runs if len(runs) >= count and all(run.status in FINISHED for run in runs) else None

        runs = self.wait_for(f"{count} finished runs matching {runs_filter}", finished)
        failed = [run for run in runs if run.status != DagsterRunStatus.SUCCESS]
        assert not failed, "\n".join(f"{run.run_id}: {run.status} {self.run_errors(run.run_id)}" for run in failed)
        return runs

    def run_errors(self, run_id: str) -> str:
        records = self.instance.all_logs(run_id)
        return "\n".join(
            record.message or "" for record in records if record.is_dagster_event and record.dagster_event.is_failure
        )

    def partitions(self, table: str) -> list[str]:
        return list(self.instance.get_dynamic_partitions(partitions_name(table)))


def _dagster_yaml_for_test(home: Path) -> dict:
    """The repo's dagster.yaml, unchanged but for TEST_SPEED, written into ``home``."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_coordinator"]["config"]["dequeue_interval_seconds"] = TEST_SPEED["dequeue_interval_seconds"]
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return config


def _subprocess_environment(migration: Migration, home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(OUR_VARIABLES)}
    env.pop("DATABASE_URL", None)
    env.pop("MASTODON_ENV_FILE", None)
    return {
        **env,
        **migration.environment(),
        "DAGSTER_HOME": str(home),
        "SYNC_PARTITION_ROWS": str(PARTITION_ROWS),
        "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": TEST_SPEED[
            "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS"
        ],
    }


@contextmanager
def background(command: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """``command`` from the repo root in its own process group (its code servers and run workers
    too); on exit SIGTERM to that group, then SIGKILL to whatever is left of it."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait)
            except subprocess.TimeoutExpired:
                pass
            if sig == signal.SIGTERM:
                time.sleep(0.5)  # let the group's children exit after their leader


def _graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture(scope="module")
def deployment(postgres_admin_url, rclone_source, rclone_destination, tmp_path_factory) -> Iterator[Deployment]:
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_database(postgres_admin_url))
        migration = make_migration(database_url, rclone_source, rclone_destination)
        home = tmp_path_factory.mktemp("dagster_home")
        _dagster_yaml_for_test(home)
        env = _subprocess_environment(migration, home)
        logs = tmp_path_factory.mktemp("logs")

        daemon_log = logs / "dagster-daemon.log"
        daemon = stack.enter_context(
            background([str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")], daemon_log, env)
        )
        port = free_port()
        webserver_log = logs / "dagster-webserver.log"
        webserver = stack.enter_context(
            background(
                [
                    str(BIN / "dagster-webserver"),
                    "-w",
                    str(REPO / "workspace.yaml"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                webserver_log,
                env,
            )
        )
        instance = stack.enter_context(DagsterInstance.from_config(str(home)))
        database = build_resources(env, as_env_vars=False)["mastodon_db"]
        for table in TABLES:  # what the partitions sensor and `mastodon-s3-sync sync` do
            add_new_partitions(instance, database, table, PARTITION_ROWS, include_tail=True)
        yield Deployment(
            home, env, migration, instance, daemon, daemon_log, webserver, webserver_log, f"http://127.0.0.1:{port}"
        )


def expected_keys(migration: Migration, table: str, keys: list[str] | None = None) -> set[str]:
    ranges = [parse_partition_key(key) for key in keys] if keys is not None else None
    return {
        obj.key
        for obj in migration.instance.expected_for(table)
        if ranges is None or any(obj.row_id in id_range for id_range in ranges)
    }


def materialized(deployment: Deployment, table: str) -> set[str]:
    return set(deployment.instance.get_materialized_partitions(AssetKey(table)))


def test_job_launch_runs_one_partition_through_the_daemon(deployment):
    key = deployment.partitions("custom_emojis")[0]
    output = deployment.dagster(
        "job", "launch", "-m", "mastodon_s3_sync", "-j", "sync_custom_emojis",
        "--tags", json.dumps({"dagster/partition": key}),
    )  # fmt: skip
    run_id = re.search(r"Launched run ([0-9a-f-]{36})", output)
    runs_filter = RunsFilter(run_ids=[run_id.group(1)]) if run_id else RunsFilter(job_name="sync_custom_emojis")
    [run] = deployment.wait_for_runs(runs_filter, 1)

    assert run.tags["dagster/partition"] == key
    assert run.tags[SYNC_RUN_TAG] == "true"
    assert materialized(deployment, "custom_emojis") == {key}
    wanted = expected_keys(deployment.migration, "custom_emojis", [key])
    assert wanted and wanted <= deployment.migration.destination_keys()
    others = expected_keys(deployment.migration, "custom_emojis") - wanted
    assert not others & deployment.migration.destination_keys(), "only the launched partition is copied"


LOCATION_STATUS = """
query {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus } }
  }
}
"""
LAUNCH_BACKFILL = """
mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def webserver_ready(deployment: Deployment) -> bool:
    try:
        data = _graphql(deployment.webserver_url, LOCATION_STATUS, {})
    except OSError:  # not listening yet
        return False
    entries = data["workspaceOrError"].get("locationEntries", [])
    return any(entry["name"] == "mastodon_s3_sync" and entry["loadStatus"] == "LOADED" for entry in entries)


def test_backfill_launched_like_the_ui_completes(deployment):
    keys = deployment.partitions("accounts")
    assert len(keys) >= 3
    deployment.wait_for("the webserver to load the code location", lambda: webserver_ready(deployment))

    # The asset page's "Materialize..." -> partitions dialog sends this mutation.
    data = _graphql(
        deployment.webserver_url,
        LAUNCH_BACKFILL,
        {"backfillParams": {"assetSelection": [{"path": ["accounts"]}], "partitionNames": keys}},
    )
    result = data["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill_id = result["backfillId"]

    highest_parallel = 0

    def backfill_done():
        nonlocal highest_parallel
        running = deployment.instance.get_runs(
            RunsFilter(tags={SYNC_RUN_TAG: "true"}, statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED])
        )
        highest_parallel = max(highest_parallel, len(running))
        backfill = deployment.instance.get_backfill(backfill_id)
        return backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING) and backfill

    backfill = deployment.wait_for(f"backfill {backfill_id} to finish", backfill_done, timeout=150)
    runs = deployment.wait_for_runs(RunsFilter.for_backfill(backfill_id), len(keys))
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, backfill
    assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(keys)
    assert materialized(deployment, "accounts") == set(keys)
    assert expected_keys(deployment.migration, "accounts") <= deployment.migration.destination_keys()
    limit = next(
        rule["limit"]
        for rule in yaml.safe_load((REPO / "dagster.yaml").read_text())["run_coordinator"]["config"][
            "tag_concurrency_limits"
        ]
        if rule["key"] == SYNC_RUN_TAG
    )
    assert highest_parallel <= limit, "the queue keeps sync runs within the tag limit"


def test_backfill_from_the_cli_completes(deployment):
    keys = deployment.partitions("preview_cards")
    assert len(keys) >= 2
    output = deployment.dagster(
        "job", "backfill", "-w", str(REPO / "workspace.yaml"), "-j", "sync_preview_cards", "--all", "--noprompt"
    )
    backfill_id = re.search(r"Launched backfill job `(\w+)`", output).group(1)
    runs = deployment.wait_for_runs(RunsFilter.for_backfill(backfill_id), len(keys))
    assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(keys)
    assert materialized(deployment, "preview_cards") == set(keys)
    assert expected_keys(deployment.migration, "preview_cards") <= deployment.migration.destination_keys()
