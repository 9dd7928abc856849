"""Runs on several hosts, for real on one machine: dagster-celery.yaml in the daemon's and the
webserver's DAGSTER_HOME (PostgreSQL storage, the queued run coordinator, the Celery run launcher,
compute logs in a bucket), Redis (this machine's, in a database index of the test's own, else a
private server), and two `mastodon-s3-sync worker` processes with different names: `alpha` with a
DAGSTER_HOME of its own, `beta` in its own mount namespace with a tmpfs over /tmp, so it shares no
disk with the daemon, the webserver or alpha (its DAGSTER_HOME and staged logs are on that tmpfs).

A backfill launched as the UI launches it spreads over both workers and copies exactly its
partitions; the UI reads the compute logs of beta's runs from the bucket; a run pinned to a queue
goes to the worker serving it. Then a second backfill's run is SIGKILLed mid-copy with its whole
worker (the host is gone): its heartbeat expires after CELERY_WORKER_LOST_SECONDS (20 s here, 120
in production), the daemon's run monitoring (every 2 s here, 30 in production) marks it failed, run
retries launch it again on the other worker, which skips what was copied, and the backfill completes
with the destination exact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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
import redis
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.execution.backfill import BulkActionStatus
from mastodon_s3_sync_demo.fake_instance.bulk import BULK_START_ID, seed_bulk
from mastodon_s3_sync_demo.run import private_redis_server
from mastodon_s3_sync_demo.servers import _tail, free_port, fresh_database
from mastodon_s3_sync_demo.ui import LAUNCH_BACKFILL
from psycopg2.extensions import parse_dsn

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.id_ranges import parse_partition_key
from mastodon_s3_sync.definitions.partitions import add_new_partitions
from mastodon_s3_sync.hosts.workers import WORKER_TAG, make_celery_app, read_heartbeat, redis_client
from mastodon_s3_sync_tests.support.migration import Migration, make_migration

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "mastodon_s3_sync"
REPOSITORY = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
TABLE = "media_attachments"
JOB = f"sync_{TABLE}"
PARTITION_SET = f"{JOB}_partition_set"

PARTITION_ROWS = 5
KILL_ROWS = 40
"""Bulk rows (2 objects each) in the partition whose worker is killed."""
SLOW = {"resources": {"sync_tuning": {"config": {"concurrency": 1, "requests_per_second": 10}}}}
"""That backfill's run config: one object at a time, 10 requests/s, so the kill lands mid-copy."""
LOST_AFTER = 20
"""CELERY_WORKER_LOST_SECONDS for the test's workers (production: 120)."""
MONITOR_EVERY = 2
"""run_monitoring.poll_interval_seconds in the test's daemon (production: 30)."""
DETECTION_BOUND = LOST_AFTER + MONITOR_EVERY + 10
"""Seconds from the kill to the run marked failed: heartbeat expiry, one monitoring poll, slack for a busy box."""
BACKFILL_TIMEOUT = 150
"""The backfill daemon looks at backfills every 30 s; then the runs, two at a time."""
OUR_VARIABLES = ("SOURCE_", "DESTINATION_", "DB_", "SYNC_", "DAGSTER_", "CELERY_", "DATABASE_URL", "MASTODON_ENV_FILE")
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
COMPUTE_LOGS_BUCKET = "dagster-compute-logs"
CLAIM_KEY = "mastodon_s3_sync_tests:claimed-by"

LAUNCH_RUN = """
mutation($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
LOCATION_STATUS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus } } } }
"""
TERMINATE_RUNS = """
mutation($runIds: [String!]!) {
  terminateRuns(runIds: $runIds, terminatePolicy: SAFE_TERMINATE) {
    __typename
    ... on TerminateRunsResult {
      terminateRunResults { __typename ... on TerminateRunFailure { message } ... on PythonError { message } }
    }
    ... on PythonError { message }
  }
}
"""
"""The run page's Terminate button (the UI's default policy: ask the run to stop)."""
CANCEL_BOUND = 30
"""Seconds from Terminate to the run CANCELED."""
CAPTURED_LOGS = """
query($logKey: [String!]!) { capturedLogs(logKey: $logKey) { stdout stderr } }
"""


@contextmanager
def redis_database(tmp_path: Path) -> Iterator[str]:
    """A Redis URL of the test's own: an empty database index on this machine's Redis (claimed with a
    key, flushed afterwards: that index only), else (none answers, or every index is in use) a
    private server."""
    index = claim_empty_index()
    if index is None:
        with private_redis_server(tmp_path) as url:
            yield url
        return
    client = redis.Redis(host="127.0.0.1", port=6379, db=index)
    try:
        yield f"redis://127.0.0.1:6379/{index}"
    finally:
        client.flushdb()


def claim_empty_index() -> int | None:
    """An empty database index of the Redis at 127.0.0.1:6379, claimed with a key; None without one."""
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return None
    for index in range(15, 0, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=index)
        if client.dbsize() == 0 and client.set(CLAIM_KEY, os.getpid(), nx=True, ex=3600):
            if client.dbsize() == 1:
                return index
            client.delete(CLAIM_KEY)
    return None


class Processes:
    """Commands from the repo root, each in its own process group, stopped together."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.services: set[str] = set()

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None, *, service: bool = True
    ) -> subprocess.Popen:
        with open(self.log(name), "wb") as out:
            self.processes[name] = subprocess.Popen(
                command, cwd=REPO, env=env or self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        if service:
            self.services.add(name)
        return self.processes[name]

    def output(self, name: str, timeout: float) -> tuple[int, str]:
        """A command's exit code and output, once it has exited."""
        try:
            code = self.processes[name].wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{name}` still running after {timeout:g}s:\n{self.logs(name, 'dagster-daemon')}")
        return code, self.log(name).read_text(errors="replace")

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def logs(self, *names: str, lines: int = 40) -> str:
        return "\n".join(f"--- {name}:\n{_tail(self.log(name), lines)}" for name in names or self.processes)

    def check_alive(self, waiting_for: str, *, except_: set[str] = frozenset()) -> None:
        for name, process in self.processes.items():
            if name in self.services and name not in except_ and process.poll() is not None:
                pytest.fail(f"{name} exited ({process.returncode}) before {waiting_for}:\n{_tail(self.log(name), 60)}")

    def kill(self, name: str) -> None:
        """SIGKILL to the whole group: the worker, its run's process, the namespace's tmpfs goes with them."""
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(10)

    def stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            for process in self.processes.values():
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            for process in self.processes.values():
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass


@dataclass
class Hosts:
    env: dict[str, str]
    migration: Migration
    instance: DagsterInstance
    processes: Processes
    webserver_url: str
    flower_url: str
    broker: str
    workers: dict[str, str]
    """Short name (alpha, beta) -> Celery node name (alpha@host)."""
    small_keys: list[str]
    kill_key: str
    bulk_keys: list[str]
    pinned_key: str
    """A custom_emojis partition, run on beta's queue."""
    cancel_key: str
    cancel_keys: list[str]
    """A partition of KILL_ROWS more bulk rows, and its objects: the run canceled from the UI."""
    timings: dict[str, float]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.webserver_url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        assert "errors" not in body, body
        return body["data"]

    def wait_for(self, what: str, condition: Callable[[], object], timeout: float, *, dead: set[str] = frozenset()):
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            self.processes.check_alive(what, except_=dead)
            if time.monotonic() > deadline:
                unfinished = [
                    f"{run.run_id} {run.job_name} {run.status.value} {dict(run.tags)}"
                    for run in self.runs(RunsFilter(statuses=[s for s in DagsterRunStatus if s not in FINISHED]))
                ]
                failed = [
                    f"{run.run_id} {run.job_name}: {self.run_errors(run.run_id)}"
                    for run in self.runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
                ]
                pytest.fail(
                    f"no {what} after {timeout:g}s; unfinished runs: {unfinished}; failed runs: {failed}\n"
                    f"{self.processes.logs()}"
                )
            time.sleep(0.25)

    def runs(self, runs_filter: RunsFilter) -> list:
        return self.instance.get_runs(runs_filter)

    def backfill(self, keys: list[str], run_config: dict | None = None, *, from_asset_page: bool = False) -> str:
        """The backfill dialog of the job's page (runs of sync_<table>), or of the asset's page (an asset
        backfill: Dagster's __ASSET_JOB; it counts a partition done when a retry of a failed run succeeds)."""
        params = {"assetSelection": [{"path": [TABLE]}], "partitionNames": keys}
        if not from_asset_page:
            params["selector"] = {"partitionSetName": PARTITION_SET, "repositorySelector": REPOSITORY}
        if run_config:
            params["runConfigData"] = run_config
        result = self.graphql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        return result["backfillId"]

    def backfill_runs_done(self, backfill_id: str, count: int) -> list | None:
        runs = self.runs(RunsFilter.for_backfill(backfill_id))
        return runs if len(runs) >= count and all(run.status in FINISHED for run in runs) else None

    def webserver_ready(self) -> bool:
        try:
            entries = self.graphql(LOCATION_STATUS)["workspaceOrError"].get("locationEntries", [])
        except OSError:
            return False
        return any(entry["name"] == LOCATION and entry["loadStatus"] == "LOADED" for entry in entries)

    def workers_online(self) -> set[str]:
        app = make_celery_app(self.broker, self.broker)
        try:
            replies = app.control.ping(timeout=1.0) or []
        finally:
            app.close()
        return {name for reply in replies for name in reply}

    def run_errors(self, run_id: str) -> str:
        """The run's failures, and the errors of its engine events (code that did not load...)."""
        lines = []
        for record in self.instance.all_logs(run_id):
            event = record.dagster_event
            if event is None:
                continue
            error = (
                getattr(event.engine_event_data, "error", None) if event.event_type_value == "ENGINE_EVENT" else None
            )
            if event.is_failure or error is not None:
                lines.append(f"{record.message or ''} {error.message if error else ''}".strip())
        return "\n".join(lines)


def partition_of(run) -> str:
    """The run's one partition (a run of a one-partition range says it with the range's tags)."""
    key = run.tags.get("dagster/partition")
    if key is None:
        start, end = run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]
        assert start == end, f"a run of several partitions: {start}..{end}"
        key = start
    return key


def bucket_listing(server, bucket: str, keys=None) -> dict[str, tuple[int, str]]:
    """Key -> (size, ETag); rclone's ETags are MD5s, so equal ETags mean equal bodies."""
    listing = {}
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        listing.update({item["Key"]: (item["Size"], item["ETag"]) for item in page.get("Contents", [])})
    return listing if keys is None else {key: listing.get(key) for key in keys}


def expected_keys(migration: Migration, keys: list[str]) -> set[str]:
    ranges = [parse_partition_key(key) for key in keys]
    return {obj.key for obj in migration.instance.expected_for(TABLE) if any(obj.row_id in r for r in ranges)}


def other_tables_keys(migration: Migration) -> set[str]:
    """What the module's runs of other tables copy (the pinned run, `sync accounts`)."""
    return {obj.key for table in ("custom_emojis", "accounts") for obj in migration.instance.expected_for(table)}


def dagster_pg_variables(url: str) -> dict[str, str]:
    params = parse_dsn(url)
    return {
        "DAGSTER_PG_HOST": params.get("host", ""),
        "DAGSTER_PG_PORT": params.get("port", "5432"),
        "DAGSTER_PG_USER": params.get("user", ""),
        "DAGSTER_PG_PASSWORD": params.get("password", ""),
        "DAGSTER_PG_DB": params["dbname"],
    }


def daemon_instance_settings(home: Path) -> None:
    """The repo's dagster-celery.yaml, only quicker to react: dequeue every second, monitor every
    MONITOR_EVERY seconds. The worker hosts get the repo's file unchanged (the CLI copies it)."""
    config = yaml.safe_load((REPO / "dagster-celery.yaml").read_text())
    config["run_coordinator"]["config"].update(
        {"dequeue_interval_seconds": 1, "dequeue_use_threads": True, "dequeue_num_workers": 2}
    )
    config["run_monitoring"]["poll_interval_seconds"] = MONITOR_EVERY
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def own_tmp(*command: str) -> list[str]:
    """``command`` in a mount namespace of its own with a tmpfs over /tmp (where every DAGSTER_HOME,
    staged compute log and pytest file of this machine lives): nothing on disk in common with the
    other hosts. The checkout and the virtualenv, when under /tmp themselves (a clone there), are
    bind-mounted back at their paths from the old /tmp (held at /mnt meanwhile, in this namespace
    only), and nothing else of it."""
    keep = sorted({str(path) for path in (REPO, Path(sys.prefix)) if path.is_relative_to("/tmp")})
    script = (
        "set -e; mount --rbind /tmp /mnt; mount -t tmpfs -o size=512m tmpfs /tmp; "
        'printf "%s\\n" "$KEEP" | while read -r path; do '
        '[ -z "$path" ] || { mkdir -p "$path"; mount --rbind "/mnt${path#/tmp}" "$path"; }; done; '
        'umount -l /mnt; mkdir /tmp/beta_home; cd "$HERE"; exec "$@"'
    )
    return ["env", f"KEEP={chr(10).join(keep)}", f"HERE={REPO}", "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script, "sh", *command]  # fmt: skip


@pytest.fixture(scope="module")
def hosts(postgres_admin_url, rclone_source, rclone_destination, tmp_path_factory) -> Iterator[Hosts]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail(
            "beta's own mount namespace needs root and unshare(1): run these tests as root "
            "(`sudo make test`), or deselect them with `-m 'not integration'`"
        )
    timings: dict[str, float] = {}
    started = time.monotonic()
    with ExitStack() as stack:
        dagster_url = stack.enter_context(fresh_database(postgres_admin_url, prefix="dagster_celery_test"))
        pg = dagster_pg_variables(dagster_url)
        database_url = stack.enter_context(fresh_database(postgres_admin_url))
        migration = make_migration(database_url, rclone_source, rclone_destination)
        rclone_destination.create_bucket(COMPUTE_LOGS_BUCKET)
        broker = stack.enter_context(redis_database(tmp_path_factory.mktemp("redis")))
        home = tmp_path_factory.mktemp("daemon_home")
        daemon_instance_settings(home)
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith(OUR_VARIABLES)},
            **migration.environment(),
            **pg,
            "CELERY_BROKER_URL": broker,
            "CELERY_WORKER_LOST_SECONDS": str(LOST_AFTER),
            "DAGSTER_COMPUTE_LOGS_BUCKET": COMPUTE_LOGS_BUCKET,
            "DAGSTER_HOME": str(home),
            "SYNC_PARTITION_ROWS": str(PARTITION_ROWS),
            # A run per partition, so that a backfill of a few spreads over the workers.
            "SYNC_PARTITIONS_PER_RUN": "1",
            "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",  # retries launched within a second
            "FLOWER_UNAUTHENTICATED_API": "true",
        }
        # This process opens the same instance first (it creates Dagster's tables), then cuts the
        # partitions as the sensor or `sync` does: five small ones, then one of KILL_ROWS bulk rows.
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        for name in ("CELERY_BROKER_URL", "DAGSTER_COMPUTE_LOGS_BUCKET", *pg, *migration.environment()):
            patch.setenv(name, env[name])  # the instance's launcher and log manager read them here too
        instance = stack.enter_context(DagsterInstance.from_config(str(home)))
        database = configured(env)["mastodon_db"]
        small_keys = add_new_partitions(instance, database, TABLE, PARTITION_ROWS, include_tail=True)
        bulk_keys = seed_bulk(database_url, rclone_source.client(), migration.source_bucket, rows=KILL_ROWS)
        [kill_key] = add_new_partitions(instance, database, TABLE, KILL_ROWS, include_tail=True)
        [pinned_key, *_] = add_new_partitions(instance, database, "custom_emojis", PARTITION_ROWS, include_tail=True)
        cancel_keys = seed_bulk(
            database_url, rclone_source.client(), migration.source_bucket, rows=KILL_ROWS,
            start_id=BULK_START_ID + KILL_ROWS, seed=1,
        )  # fmt: skip
        [cancel_key] = add_new_partitions(instance, database, TABLE, KILL_ROWS, include_tail=True)

        processes = Processes(env, tmp_path_factory.mktemp("logs"))
        stack.callback(processes.stop)
        workspace = str(REPO / "workspace.yaml")
        processes.start("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace])
        port, flower_port = free_port(), free_port()
        processes.start(
            "dagster-webserver", [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(port)]
        )
        cli = [sys.executable, "-m", "mastodon_s3_sync", "worker"]
        alpha_home = tmp_path_factory.mktemp("alpha_home")
        processes.start("alpha", [*cli, "--name", "alpha", "--queue", "dagster", "--queue", "alpha"],
                        env={**env, "DAGSTER_HOME": str(alpha_home)})  # fmt: skip
        processes.start(
            "beta", own_tmp(*cli, "--name", "beta", "--queue", "dagster", "--queue", "beta"),
            env={**env, "DAGSTER_HOME": "/tmp/beta_home"},
        )  # fmt: skip
        # `sync` of a table with no partitions yet, started now like an admin would: it cuts them,
        # submits their runs to the queue and follows them while the module's backfills start.
        processes.start("sync accounts", [sys.executable, "-m", "mastodon_s3_sync", "sync", "accounts"], service=False)
        processes.start(
            "flower",
            [sys.executable, "-m", "celery", "-A", "mastodon_s3_sync.hosts.workers", "flower",
             "--address=127.0.0.1", f"--port={flower_port}"],
        )  # fmt: skip
        hosts = Hosts(
            env, migration, instance, processes, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{flower_port}",
            broker, {}, small_keys, kill_key, bulk_keys, pinned_key, cancel_key, cancel_keys, timings,
        )  # fmt: skip
        online = hosts.wait_for(
            "both workers to answer a ping",
            lambda: (lambda found: len(found) >= 2 and found)(hosts.workers_online()),
            90,
        )
        hosts.workers.update({node.split("@")[0]: node for node in online})
        assert set(hosts.workers) == {"alpha", "beta"}, online
        hosts.wait_for("the webserver to load the code location", hosts.webserver_ready, 120)
        timings["start-up (daemon, webserver, 2 workers, flower)"] = time.monotonic() - started
        yield hosts
    print("\ntimings: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items()))


def test_a_ui_backfill_spreads_over_both_workers_and_copies_exactly(hosts):
    """Five partitions backfilled from the job page (GraphQL launchPartitionBackfill, as the UI does),
    and meanwhile a run pinned to beta's queue (dagster-celery/queue) from the launchpad."""
    instance, migration = hosts.instance, hosts.migration
    started = time.monotonic()
    backfill_id = hosts.backfill(hosts.small_keys)
    pinned_key = hosts.pinned_key
    params = {
        "selector": {**REPOSITORY, "jobName": "sync_custom_emojis"},
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": pinned_key},
                {"key": "dagster-celery/queue", "value": "beta"},
            ]
        },
    }
    launched = hosts.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    pinned_id = launched["run"]["runId"]

    runs = hosts.wait_for(
        "the backfill's runs to finish",
        lambda: hosts.backfill_runs_done(backfill_id, len(hosts.small_keys)),
        BACKFILL_TIMEOUT,
    )
    hosts.timings["first backfill's runs"] = time.monotonic() - started
    failed = [
        f"{run.run_id}: {run.status} {hosts.run_errors(run.run_id)}"
        for run in runs
        if run.status != DagsterRunStatus.SUCCESS
    ]
    assert not failed, "\n".join(failed) + hosts.processes.logs("alpha", "beta", "dagster-daemon")
    assert sorted(partition_of(run) for run in runs) == sorted(hosts.small_keys)
    by_worker = {}
    for run in runs:
        by_worker.setdefault(run.tags[WORKER_TAG], []).append(run.run_id)
    assert set(by_worker) == set(hosts.workers.values()), f"runs per worker: {by_worker}"
    assert all(run.tags["dagster/retry_strategy"] == "ALL_STEPS" for run in runs)

    assert set(hosts.small_keys) <= set(instance.get_materialized_partitions(AssetKey(TABLE)))
    wanted = expected_keys(migration, hosts.small_keys)
    assert wanted
    source = bucket_listing(migration.source, migration.source_bucket, wanted)
    assert bucket_listing(migration.destination, migration.destination_bucket, wanted) == source
    others = migration.destination_keys() - wanted - other_tables_keys(migration)
    assert not others, f"only the backfilled partitions are copied: {sorted(others)[:10]}"

    # The UI shows the compute logs of a run beta ran (beta's disk is gone for everyone else): from the bucket.
    [beta_run, *_] = by_worker[hosts.workers["beta"]]
    [captured, *_] = [
        record.dagster_event.logs_captured_data
        for record in instance.all_logs(beta_run, of_type=DagsterEventType.LOGS_CAPTURED)
    ]
    log_key = [beta_run, "compute_logs", captured.file_key]
    logs = hosts.wait_for(
        "beta's compute logs in the UI",
        lambda: hosts.graphql(CAPTURED_LOGS, {"logKey": log_key})["capturedLogs"]["stderr"] or "",
        30,
    )
    assert f"{TABLE}_plan" in logs, logs[:2000]
    stored = bucket_listing(hosts.migration.destination, COMPUTE_LOGS_BUCKET)
    assert any(beta_run in key for key in stored), sorted(stored)[:20]

    [pinned] = hosts.wait_for(
        "the pinned run to finish",
        lambda: [run for run in hosts.runs(RunsFilter(run_ids=[pinned_id])) if run.status in FINISHED],
        60,
    )
    assert pinned.status == DagsterRunStatus.SUCCESS, hosts.run_errors(pinned_id)
    assert pinned.tags[WORKER_TAG] == hosts.workers["beta"]

    # flower watches both workers.
    with urllib.request.urlopen(f"{hosts.flower_url}/api/workers?refresh=1", timeout=30) as response:
        assert set(hosts.workers.values()) <= set(json.load(response))


def test_a_lost_worker_s_run_is_retried_on_the_other_and_the_backfill_completes_exactly(hosts):
    instance, migration = hosts.instance, hosts.migration
    started = time.monotonic()
    backfill_id = hosts.backfill([hosts.kill_key], SLOW, from_asset_page=True)
    [run] = hosts.wait_for(
        "the backfill's run to start on a worker",
        lambda: [
            run
            for run in hosts.runs(RunsFilter.for_backfill(backfill_id))
            if run.status == DagsterRunStatus.STARTED and WORKER_TAG in run.tags
        ],
        BACKFILL_TIMEOUT,
    )
    victim = next(name for name, node in hosts.workers.items() if node == run.tags[WORKER_TAG])
    survivor = next(node for name, node in hosts.workers.items() if name != victim)

    def copying() -> int:
        present = len(set(hosts.bulk_keys) & migration.destination_keys())
        assert present < len(hosts.bulk_keys), "the copy finished before the kill: make SLOW slower"
        return present if present >= 5 else 0

    copied_before_kill = hosts.wait_for("the run to copy its first objects", copying, 60)
    hosts.processes.kill(victim)  # the worker and its run's process: the host is gone
    killed_at = time.monotonic()
    hosts.timings["second backfill until the kill"] = killed_at - started

    [failed] = hosts.wait_for(
        "the lost worker's run to be marked failed",
        lambda: [r for r in hosts.runs(RunsFilter(run_ids=[run.run_id])) if r.status in FINISHED],
        DETECTION_BOUND + 30,
        dead={victim},
    )
    detected = time.monotonic() - killed_at
    hosts.timings["kill -> run failed"] = detected
    assert failed.status == DagsterRunStatus.FAILURE
    assert "stopped sending this run's heartbeat" in hosts.run_errors(run.run_id)
    assert detected <= DETECTION_BOUND, f"detected after {detected:.1f}s"

    def retried():
        runs = hosts.runs(RunsFilter(tags={"dagster/parent_run_id": run.run_id}))
        return runs if runs and runs[0].status in FINISHED else None

    [retry] = hosts.wait_for("the retry to finish", retried, 120, dead={victim})
    hosts.timings["kill -> retry succeeded"] = time.monotonic() - killed_at
    assert retry.status == DagsterRunStatus.SUCCESS, hosts.run_errors(retry.run_id)
    assert retry.tags[WORKER_TAG] == survivor
    assert partition_of(retry) == hosts.kill_key
    [materialization] = [
        record.asset_materialization
        for record in instance.all_logs(retry.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    ]
    metadata = {name: value.value for name, value in materialization.metadata.items()}
    assert metadata["objects_copied"] + metadata["objects_skipped"] == len(hosts.bulk_keys)
    assert metadata["objects_skipped"] >= copied_before_kill, "what the lost run copied is not copied again"

    source = bucket_listing(migration.source, migration.source_bucket, hosts.bulk_keys)
    assert bucket_listing(migration.destination, migration.destination_bucket, hosts.bulk_keys) == source
    others = migration.destination_keys() - set(hosts.bulk_keys) - expected_keys(migration, hosts.small_keys)
    assert not others - other_tables_keys(migration), "nothing else at the destination"

    hosts.wait_for(
        "the backfill to complete",
        lambda: instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS,
        60,
        dead={victim},
    )
    hosts.timings["second backfill"] = time.monotonic() - started


def test_sync_submits_its_runs_to_the_queue_and_follows_them(hosts):
    """`mastodon-s3-sync sync` on dagster-celery.yaml: the runs go to the workers, the command shows
    their progress and their outcome, and a second `sync` finds everything done."""
    code, output = hosts.processes.output("sync accounts", 180)
    assert code == 0, output
    assert "Runs are submitted to the run queue" in output
    [summary] = [line for line in output.splitlines() if line.startswith("accounts: ") and "synced" in line]
    expected = {obj.key for obj in hosts.migration.instance.expected_for("accounts")}
    runs = hosts.runs(RunsFilter(job_name="sync_accounts"))
    assert runs and all(run.status == DagsterRunStatus.SUCCESS and WORKER_TAG in run.tags for run in runs)
    assert f"{len(runs)} new partitions, 0 with changed rows, {len(runs)} synced, 0 failed" in summary, summary
    copied, missing = (int(re.search(rf"(\d+) {what}", summary).group(1)) for what in ("objects copied", "missing"))
    assert copied == len(expected), summary
    total = copied + missing
    assert f"accounts: {total}/{total} objects" in output, output  # the progress line, from the workers' heartbeats
    assert expected <= hosts.migration.destination_keys()

    again = subprocess.run(
        [sys.executable, "-m", "mastodon_s3_sync", "sync", "accounts"],
        cwd=REPO, env=hosts.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "accounts: 0 new partitions, 0 with changed rows, 0 synced, 0 failed" in again.stdout
    assert len(hosts.runs(RunsFilter(job_name="sync_accounts"))) == len(runs), "nothing submitted twice"


def test_a_run_terminated_from_the_ui_stops_copying_ends_canceled_and_the_next_sync_finishes_it(hosts):
    """The run page's Terminate on a run a worker is copying: the copy stops, the run ends CANCELED
    (not failed and retried), and `sync` copies the rest of the partition."""
    instance, migration = hosts.instance, hosts.migration
    keys = set(hosts.cancel_keys)
    dead = {name for name in hosts.workers if hosts.processes.processes[name].poll() is not None}  # killed above
    params = {
        "selector": {**REPOSITORY, "jobName": JOB},
        "runConfigData": SLOW,
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": hosts.cancel_key}]},
    }
    launched = hosts.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def copying() -> int:
        present = len(keys & migration.destination_keys())
        assert present < len(keys), "the copy finished before the cancel: make SLOW slower"
        return present if present >= 5 else 0

    hosts.wait_for("the run to copy its first objects", copying, BACKFILL_TIMEOUT, dead=dead)
    heartbeat = read_heartbeat(redis_client(hosts.broker), run_id)
    assert heartbeat, "the run's worker sends its heartbeat"
    terminated = hosts.graphql(TERMINATE_RUNS, {"runIds": [run_id]})["terminateRuns"]
    asked = time.monotonic()
    assert [result["__typename"] for result in terminated["terminateRunResults"]] == ["TerminateRunSuccess"], terminated

    [ended] = hosts.wait_for(
        "the terminated run to end",
        lambda: [run for run in hosts.runs(RunsFilter(run_ids=[run_id])) if run.status in FINISHED],
        CANCEL_BOUND + LOST_AFTER + MONITOR_EVERY + 10,  # long enough to see it failed instead
        dead=dead,
    )
    took = time.monotonic() - asked
    at_cancel = keys & migration.destination_keys()
    hosts.timings["terminate -> run canceled"] = took
    assert ended.status == DagsterRunStatus.CANCELED, f"{ended.status}: {hosts.run_errors(run_id)}"
    assert took <= CANCEL_BOUND, f"canceled after {took:.1f}s"

    def process_gone() -> bool:
        try:
            os.kill(heartbeat["pid"], 0)
        except ProcessLookupError:
            return True
        return False

    hosts.wait_for("the run's process to exit", process_gone, 30, dead=dead)
    assert keys & migration.destination_keys() == at_cancel, "objects were stored after the run was CANCELED"
    assert len(at_cancel) < len(keys), "the copy stopped short of the partition"
    assert not hosts.runs(RunsFilter(tags={"dagster/parent_run_id": run_id})), "a canceled run is not retried"

    synced = subprocess.run(
        [sys.executable, "-m", "mastodon_s3_sync", "sync", TABLE],
        cwd=REPO, env=hosts.env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert f"{TABLE}: " in synced.stdout and ", 0 failed" in synced.stdout, synced.stdout
    assert hosts.cancel_key in instance.get_materialized_partitions(AssetKey(TABLE))
    source = bucket_listing(migration.source, migration.source_bucket, hosts.cancel_keys)
    assert bucket_listing(migration.destination, migration.destination_bucket, hosts.cancel_keys) == source
