"""The README's production path, for real: `dagster-daemon run` and `dagster-webserver` over the
repo's workspace.yaml, with the repo's dagster.yaml (queued run coordinator and its limits, run
retries) in a temporary DAGSTER_HOME, fed by `dagster job launch`, by backfills launched the way
the UI launches them (GraphQL `launchPartitionBackfill` over HTTP), by `dagster job backfill`, and
a run whose worker is SIGKILLed mid-partition.

One daemon and one webserver serve the whole module (each costs seconds of CPU to start on a
2-core machine), and the module's fixture starts the two CLI commands right away so that their
start-up overlaps the daemon's; each test works on its own table, so the tests stay independent.
The UI backfills go first: the backfill daemon looks at them every 30 s, and the runs the CLI
commands queued fill that wait.
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
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus
from mastodon_s3_sync_demo.fake_instance.bulk import BULK_START_ID, seed_bulk
from mastodon_s3_sync_demo.servers import _tail, free_port, fresh_database
from mastodon_s3_sync_demo.ui import LAUNCH_BACKFILL

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.id_ranges import IdRange, parse_partition_key
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.settings import value
from mastodon_s3_sync.definitions.jobs import SYNC_RUN_TAG
from mastodon_s3_sync.definitions.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    add_new_partitions,
    partitions_name,
)
from mastodon_s3_sync.execution.runs import contiguous_groups
from mastodon_s3_sync_tests.support.migration import Migration, make_migration

pytestmark = pytest.mark.integration  # real servers or Dagster processes

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKSPACE = str(REPO / "workspace.yaml")
LOCATION = "mastodon_s3_sync"
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}

PARTITION_ROWS = 5
"""Small partitions (SYNC_PARTITION_ROWS), so each table has several."""
RUN_TIMEOUT = 120
"""Seconds a run may take from submission to success (queue, worker start-up, copy) on a busy CI box."""
BACKFILL_TIMEOUT = 240
"""The backfill daemon looks at backfills every 30 s: one look to start the runs, one to see them done."""
TEST_SPEED_CONFIG = {"dequeue_interval_seconds": 1, "dequeue_use_threads": True, "dequeue_num_workers": 2}
"""Merged into dagster.yaml's run_coordinator config: dequeue every second instead of every 5, and
launch two runs at once (a launch waits for the run worker to start: seconds here). The limits stay."""
TEST_SPEED_ENV = {"DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1"}
"""The daemon sees a failed run (to retry it) within a second instead of 5."""
OUR_VARIABLES = ("SOURCE_", "DESTINATION_", "DB_", "SYNC_", "DAGSTER_", "DATABASE_URL", "MASTODON_ENV_FILE")
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


class Background:
    """Commands from the repo root, each in its own process group (with the code servers and run
    workers it starts): services that must keep running, and CLI commands that run to their end
    meanwhile. Stopped together: SIGTERM, then SIGKILL to whatever is left of each group."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.services: set[str] = set()

    def start(self, name: str, command: list[str], *, service: bool = True) -> subprocess.Popen:
        with open(self.log(name), "wb") as out:
            self.processes[name] = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        if service:
            self.services.add(name)
        return self.processes[name]

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def check_alive(self, waiting_for: str) -> None:
        for name in self.services:
            process = self.processes[name]
            if process.poll() is not None:
                pytest.fail(f"{name} exited ({process.returncode}) before {waiting_for}:\n{_tail(self.log(name), 60)}")

    def output(self, name: str, timeout: float = 180) -> str:
        """A command's output, once it has exited successfully."""
        try:
            code = self.processes[name].wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{name}` still running after {timeout:g}s:\n{_tail(self.log(name), 60)}")
        text = self.log(name).read_text(errors="replace")
        assert code == 0, f"`{name}` failed ({code}):\n{text}"
        return text

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # whatever a group leader left behind
        for process in self.processes.values():
            process.wait()

    def _signal(self, sig: signal.Signals) -> None:
        for process in self.processes.values():
            try:
                os.killpg(process.pid, sig)  # the group we created, by its leader's pid
            except ProcessLookupError:
                pass


@dataclass
class Deployment:
    """A DAGSTER_HOME with the repo's dagster.yaml, a running daemon and webserver, a seeded migration."""

    env: dict[str, str]
    migration: Migration
    instance: DagsterInstance
    background: Background
    webserver_url: str
    launched_run_id: str
    """The run `dagster job launch` created (started by the fixture, checked by its test)."""

    @property
    def daemon(self) -> subprocess.Popen:
        return self.background.processes["dagster-daemon"]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """POST to the webserver's /graphql, as the UI does."""
        request = urllib.request.Request(
            f"{self.webserver_url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        assert "errors" not in body, body
        return body["data"]

    def wait_for(self, what: str, condition: Callable[[], object], timeout: float = RUN_TIMEOUT):
        """Poll ``condition`` until it returns something truthy; fail with the daemon's log otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            self.background.check_alive(what)
            if time.monotonic() > deadline:
                log = _tail(self.background.log("dagster-daemon"), 60)
                pytest.fail(f"no {what} after {timeout:g}s; dagster-daemon log:\n{log}")
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

    def materialized(self, table: str) -> set[str]:
        return set(self.instance.get_materialized_partitions(AssetKey(table)))

    def webserver_ready(self) -> bool:
        try:
            data = self.graphql(LOCATION_STATUS)
        except OSError:  # not listening yet
            return False
        entries = data["workspaceOrError"].get("locationEntries", [])
        return any(entry["name"] == LOCATION and entry["loadStatus"] == "LOADED" for entry in entries)


LOCATION_STATUS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus } } } }
"""
LAUNCH_RUN = """
mutation($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def instance_settings(home: Path) -> None:
    """The repo's dagster.yaml in ``home``, only quicker to react (TEST_SPEED_CONFIG)."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_coordinator"]["config"].update(TEST_SPEED_CONFIG)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def deployment(postgres_admin_url, rclone_source, rclone_destination, tmp_path_factory) -> Iterator[Deployment]:
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_database(postgres_admin_url))
        migration = make_migration(database_url, rclone_source, rclone_destination)
        home = tmp_path_factory.mktemp("dagster_home")
        instance_settings(home)
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith(OUR_VARIABLES)},
            **migration.environment(),
            "DAGSTER_HOME": str(home),
            "SYNC_PARTITION_ROWS": str(PARTITION_ROWS),
            **TEST_SPEED_ENV,
        }
        # The same DAGSTER_HOME from this process: cut the partitions as the partitions sensor
        # (or `mastodon-s3-sync sync`) does, and watch the runs. Opened first, so its storage
        # exists before the daemon and webserver start: processes creating a fresh SQLite
        # storage at the same moment can each stamp its schema ("more than one head").
        instance = stack.enter_context(DagsterInstance.from_config(str(home)))
        background = Background(env, tmp_path_factory.mktemp("logs"))
        stack.callback(background.stop)
        background.start("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", WORKSPACE])
        port = free_port()
        background.start(
            "dagster-webserver", [str(BIN / "dagster-webserver"), "-w", WORKSPACE, "-h", "127.0.0.1", "-p", str(port)]
        )
        database = configured(env)["mastodon_db"]
        for table in TABLES:
            add_new_partitions(instance, database, table, PARTITION_ROWS, include_tail=True)
        # The CLI commands of the README, started at once: each spends seconds loading the code
        # location in a code server of its own, better spent while the daemon starts. Their tests
        # check what they did.
        launched_run_id = str(uuid.uuid4())
        launched_key = instance.get_dynamic_partitions(partitions_name("custom_emojis"))[0]
        dagster = str(BIN / "dagster")
        background.start(
            "dagster job launch",
            [
                dagster, "job", "launch", "-m", "mastodon_s3_sync", "-j", "sync_custom_emojis",
                "--tags", json.dumps({"dagster/partition": launched_key}),
                "--run-id", launched_run_id,
            ],
            service=False,
        )  # fmt: skip
        background.start(
            "dagster job backfill",
            [dagster, "job", "backfill", "-w", WORKSPACE, "-j", "sync_accounts", "--all", "--noprompt"],
            service=False,
        )
        yield Deployment(env, migration, instance, background, f"http://127.0.0.1:{port}", launched_run_id)


def expected_keys(migration: Migration, table: str, partition_keys: list[str] | None = None) -> set[str]:
    """The destination keys of ``table``'s objects (in those partitions only, if given)."""
    ranges = [parse_partition_key(key) for key in partition_keys] if partition_keys is not None else None
    return {
        obj.key
        for obj in migration.instance.expected_for(table)
        if ranges is None or any(obj.row_id in id_range for id_range in ranges)
    }


def most_runs_at_once(instance: DagsterInstance, run_ids: list[str]) -> int:
    """The most of these runs that were in progress at one moment (from their start and end times)."""
    records = instance.get_run_records(RunsFilter(run_ids=run_ids))
    edges = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records])  # ends first on ties
    at_once = most = 0
    for _, change in edges:
        at_once += change
        most = max(most, at_once)
    return most


def partition_run_limit() -> int:
    """dagster.yaml's limit on runs of any partition at once (the providers' protection)."""
    limits = yaml.safe_load((REPO / "dagster.yaml").read_text())["run_coordinator"]["config"]["tag_concurrency_limits"]
    return next(rule["limit"] for rule in limits if rule["key"] == "dagster/partition" and "value" not in rule)


@pytest.mark.timeout(480)  # the module's daemon and webserver start in its setup; BACKFILL_TIMEOUT on top
def test_backfills_launched_like_the_ui_complete(deployment):
    """Both of the UI's dialogs: "Materialize all" on an asset page (an asset backfill, which runs
    Dagster's own __ASSET_JOB), and the backfill dialog on a sync job's page (the job's partition
    set: the job's executor and tags)."""
    job_page_keys = deployment.partitions("media_attachments")[:2]
    # Over a one-partition table: until the code location sets an in-process executor for all
    # asset jobs, an __ASSET_JOB run starts a process per step (and runs the asset's check).
    from_asset_page = {"assetSelection": [{"path": ["preview_card_providers"]}], "allPartitions": True}
    from_job_page = {
        "selector": {"partitionSetName": "sync_media_attachments_partition_set", "repositorySelector": REPOSITORY},
        "assetSelection": [{"path": ["media_attachments"]}],
        "partitionNames": job_page_keys,
    }
    deployment.wait_for("the webserver to load the code location", deployment.webserver_ready)
    backfills = {}
    for table, params, keys in (
        ("preview_card_providers", from_asset_page, deployment.partitions("preview_card_providers")),
        ("media_attachments", from_job_page, job_page_keys),
    ):
        result = deployment.graphql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        assert keys
        backfills[result["backfillId"]] = (table, keys)

    def all_done() -> bool:
        states = [deployment.instance.get_backfill(backfill_id).status for backfill_id in backfills]
        return all(state not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING) for state in states)

    deployment.wait_for("both backfills to finish", all_done, timeout=BACKFILL_TIMEOUT)
    run_ids = []
    for backfill_id, (table, keys) in backfills.items():
        assert deployment.instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
        every_key = deployment.partitions(table)
        # A backfill from the UI follows the assets' BackfillPolicy: a run per unbroken group of keys.
        groups = contiguous_groups(every_key, keys, value("SYNC_PARTITIONS_PER_RUN"))
        runs = deployment.wait_for_runs(RunsFilter.for_backfill(backfill_id), len(groups))
        assert sorted(partitions_covered(every_key, runs)) == sorted(keys) and len(runs) == len(groups)
        assert set(keys) <= deployment.materialized(table)
        assert expected_keys(deployment.migration, table, keys) <= deployment.migration.destination_keys()
        run_ids += [run.run_id for run in runs]
    assert most_runs_at_once(deployment.instance, run_ids) <= partition_run_limit(), "dagster.yaml's limit holds"


def partitions_covered(every_key: list[str], runs) -> list[str]:
    """The partitions the runs covered: one each, or the range of a run over several."""
    covered = []
    for run in runs:
        start = run.tags.get("dagster/partition") or run.tags[RANGE_START_TAG]
        end = run.tags.get("dagster/partition") or run.tags[RANGE_END_TAG]
        covered += every_key[every_key.index(start) : every_key.index(end) + 1]
    return covered


def test_job_launch_runs_one_partition_through_the_daemon(deployment):
    key = deployment.partitions("custom_emojis")[0]
    deployment.background.output("dagster job launch")
    run_id = deployment.launched_run_id
    [run] = deployment.wait_for_runs(RunsFilter(run_ids=[run_id]), 1)

    assert run.tags["dagster/partition"] == key
    assert run.tags[SYNC_RUN_TAG] == "true"
    # Queued by the CLI, launched by the daemon: dagster.yaml's QueuedRunCoordinator is in charge.
    assert deployment.instance.all_logs(run_id, of_type=DagsterEventType.RUN_ENQUEUED)
    assert deployment.materialized("custom_emojis") == {key}
    wanted = expected_keys(deployment.migration, "custom_emojis", [key])
    assert wanted and wanted <= deployment.migration.destination_keys()
    others = expected_keys(deployment.migration, "custom_emojis") - wanted
    assert not others & deployment.migration.destination_keys(), "only the launched partition is copied"


def test_backfill_from_the_cli_completes(deployment):
    keys = deployment.partitions("accounts")
    assert len(keys) >= 3
    output = deployment.background.output("dagster job backfill")
    backfill_id = re.search(r"Launched backfill job `(\w+)`", output).group(1)
    runs = deployment.wait_for_runs(RunsFilter.for_backfill(backfill_id), len(keys))
    assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(keys)
    assert all(run.tags[SYNC_RUN_TAG] == "true" for run in runs)
    assert deployment.materialized("accounts") == set(keys)
    assert expected_keys(deployment.migration, "accounts") <= deployment.migration.destination_keys()
    assert most_runs_at_once(deployment.instance, [run.run_id for run in runs]) <= partition_run_limit()


KILL_ROWS = 40
"""Bulk media_attachments rows (2 objects each) in the partition whose run worker is killed."""
SLOW = {"resources": {"sync_tuning": {"config": {"concurrency": 1, "requests_per_second": 10}}}}
"""Run config for that run: one object at a time and 10 requests/s per endpoint, so its copy
takes at least 2 * KILL_ROWS / 10 seconds and the kill lands mid-copy, deterministically."""


def bucket_listing(server, bucket: str) -> dict[str, tuple[int, str]]:
    """Key -> (size, ETag); rclone's ETags are MD5s, so equal ETags mean equal bodies."""
    listing = {}
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        listing.update({item["Key"]: (item["Size"], item["ETag"]) for item in page.get("Contents", [])})
    return listing


def run_worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        found = re.match(r"Started process for run \(pid: (\d+)\)", record.message or "")
        if found:
            return int(found.group(1))
    return None


def test_run_killed_mid_partition_is_retried_and_loses_nothing(deployment):
    migration, instance, table = deployment.migration, deployment.instance, "media_attachments"
    covered = parse_partition_key(deployment.partitions(table)[-1]).hi
    bulk_keys = seed_bulk(migration.database_url, migration.source.client(), migration.source_bucket, rows=KILL_ROWS)
    database = configured(deployment.env)["mastodon_db"]
    [key] = add_new_partitions(instance, database, table, KILL_ROWS, include_tail=True)
    assert parse_partition_key(key) == IdRange(covered + 1, BULK_START_ID + KILL_ROWS - 1)

    # Launched as the UI's launchpad does (the webserver has the code location loaded already).
    deployment.wait_for("the webserver to load the code location", deployment.webserver_ready)
    params = {
        "selector": {**REPOSITORY, "jobName": "sync_media_attachments"},
        "runConfigData": SLOW,
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": key}]},
    }
    result = deployment.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    run_id = result["run"]["runId"]
    pid = deployment.wait_for("the run worker's pid", lambda: run_worker_pid(instance, run_id))

    def copying() -> int:
        present = len(set(bulk_keys) & migration.destination_keys())
        assert present < len(bulk_keys), "the copy finished before the kill: make SLOW slower"
        return present if present >= 5 else 0

    copied_before_kill = deployment.wait_for("the run to copy its first objects", copying)
    # The worker is a child of the daemon's code server, in the daemon's process group: never another process.
    assert os.getpgid(pid) == deployment.daemon.pid
    os.kill(pid, signal.SIGKILL)

    [killed] = deployment.wait_for(
        "the killed run to be marked failed",
        lambda: [run for run in instance.get_runs(RunsFilter(run_ids=[run_id])) if run.status in FINISHED],
    )
    assert killed.status == DagsterRunStatus.FAILURE
    engine_messages = [record.message for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)]
    assert any("signal 9" in (message or "") for message in engine_messages), engine_messages

    # dagster.yaml's run retries re-execute it from the failed step; the copy skips what is there.
    [retry] = deployment.wait_for_runs(RunsFilter(tags={"dagster/parent_run_id": run_id}), 1)
    assert retry.tags["dagster/partition"] == key
    assert retry.tags["dagster/retry_number"] == "1"
    assert key in deployment.materialized(table)
    [materialization] = [
        record.asset_materialization
        for record in instance.all_logs(retry.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    ]
    metadata = {name: value.value for name, value in materialization.metadata.items()}
    assert metadata["objects_copied"] + metadata["objects_skipped"] == len(bulk_keys)
    assert metadata["objects_skipped"] >= copied_before_kill, "what the killed run copied is not copied again"

    source = bucket_listing(migration.source, migration.source_bucket)
    destination = bucket_listing(migration.destination, migration.destination_bucket)
    assert {name: destination.get(name) for name in bulk_keys} == {name: source[name] for name in bulk_keys}
