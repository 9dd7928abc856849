"""End to end on an instance with all seven media tables: `sync`, a UI backfill and rclone, on the same objects.

Seeds ``seed_bulk_all_tables`` once (rows in all seven media tables of a fresh
PostgreSQL database on Mastodon's schema, and exactly the objects they
reference, at a realistic size mix) into an ``rclone serve s3`` source, then,
in interleaved rounds (a new order each round), each run between freshly
started servers in /dev/shm after the machine has settled:

- ``rclone`` and ``rclone --no-traverse``: ``rclone copy --files-from-raw KEYS``
  with bench_copy.py's flags; the faster of the two is rclone's number;
- ``sync``: ``python -m mastodon_s3_sync sync`` (every table) in a fresh
  DAGSTER_HOME, as a new user runs it; its whole process tree's CPU and peak
  RSS from wait4; ``--sync-baseline DIR`` adds the same for the code of an
  earlier checkout (a before/after in the same rounds);
- ``backfill`` (``--backfill``): the UI's path. A fresh DAGSTER_HOME with the
  repository's dagster.yaml; the partitions cut first (``add_new_partitions``
  for every table at ``--partition-rows`` rows, as the sensor or `sync` cut
  them); a ``dagster-daemon run`` over workspace.yaml, started and left to
  settle; then the backfill launched with the UI's GraphQL mutation
  (``launchPartitionBackfill``, executed in-process by dagster-graphql against
  the same workspace, as the webserver would), and timed until every backfill
  has a final status. ``--backfill-from asset`` (default) is the asset graph's
  *Materialize all* over the seven assets with all partitions (one backfill of
  Dagster's __ASSET_JOB runs, what the README's runbook points at); ``job`` is
  the *Backfill* dialog of each ``sync_<table>`` job page with every partition
  (seven backfills of the sync jobs' runs). The CPU is the daemon's process
  tree (daemon, its code server, every run worker) from the launch to the
  end, read from /proc; the daemon runs under a subreaper wrapper that also
  reports the whole tree's CPU from start-up to shutdown.

Every run is verified: the destination must hold exactly the seeded keys, each
with the source's size. ``--breakdown`` adds one instrumented `sync` (a driver
that does what `sync` does, with timers around each phase, per Dagster run
and per copy step) and the interpreter's start-up and imports.

    .venv/bin/python benchmarks/bench_end_to_end.py --objects 10000 --repeat 2 --backfill --partition-rows 26
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

from bench_common import (
    MB,
    REPOSITORY,
    MiB,
    Run,
    Setup,
    best_runs,
    bucket_listing,
    dagster_environment,
    fresh_servers,
    measured,
    process_tree,
    rclone_command,
    rclone_environment,
    run_measured,
    server_cpu,
    settle,
    tree_cpu_seconds,
    verified,
    work_directory,
)
from mastodon_s3_sync_demo.ui import LAUNCH_BACKFILL

BIN = Path(sys.executable).parent
WORKSPACE = REPOSITORY / "workspace.yaml"
DESTINATION_BUCKET = "bench-destination"
SOURCE_BUCKET = "bench-source"
REPOSITORY_SELECTOR = {"repositoryLocationName": "mastodon_s3_sync", "repositoryName": "__repository__"}
BACKFILL_TIMEOUT = 3600


# Seeding ---------------------------------------------------------------------------------------


def seed(stack: ExitStack, arguments: argparse.Namespace, work: Path) -> Setup:
    from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk_all_tables
    from mastodon_s3_sync_demo.fake_instance.seeding import create_schema
    from mastodon_s3_sync_demo.servers import fresh_database, postgres_server, rclone_s3_server

    database_url = stack.enter_context(fresh_database(stack.enter_context(postgres_server()), prefix="bench"))
    with rclone_s3_server(work / "source") as source:
        create_schema(database_url)
        source.create_bucket(SOURCE_BUCKET)
        started = time.monotonic()
        keys = seed_bulk_all_tables(
            database_url, source.client(), SOURCE_BUCKET, arguments.objects, size_scale=arguments.size_scale
        )
        sizes = bucket_listing(source, SOURCE_BUCKET)
        if set(sizes) != set(keys):
            raise SystemExit("the source does not hold exactly the seeded keys")
        setup = Setup(source, SOURCE_BUCKET, keys, database_url, work, sum(sizes.values()), expected_sizes=sizes)
    seconds = time.monotonic() - started
    counts = row_counts(database_url)
    per_table: dict[str, int] = {}
    for key in keys:
        table = key.removeprefix("cache/").split("/")[0]
        per_table[table] = per_table.get(table, 0) + 1
    print(
        f"seeded {len(keys)} objects, {setup.expected_bytes / MB:.0f} MB "
        f"(mean {setup.expected_bytes / len(keys) / 1000:.0f} kB) in {seconds:.0f} s",
        flush=True,
    )
    print(
        "  rows (objects): "
        + ", ".join(f"{table} {counts[table]} ({per_table.get(table, 0)})" for table in counts if table != "statuses")
        + f"; statuses {counts['statuses']}",
        flush=True,
    )
    setup.row_counts = counts
    return setup


def row_counts(database_url: str) -> dict[str, int]:
    import psycopg2

    from mastodon_s3_sync.core.mastodon.tables import TABLES

    counts = {}
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        for table in [*TABLES, "statuses"]:
            cursor.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cursor.fetchone()[0]
    connection.close()
    return counts


def partitions_for(row_counts: dict[str, int], partition_rows: int) -> int:
    """How many partitions ``add_new_partitions`` cuts for these tables (full ones and a tail)."""
    from mastodon_s3_sync.core.mastodon.tables import TABLES

    return sum(-(-row_counts[table] // partition_rows) for table in TABLES if row_counts[table])


def rows_for(row_counts: dict[str, int], partitions: int) -> int:
    """The fewest rows per partition that cut at most ``partitions`` partitions."""
    rows = 1
    while partitions_for(row_counts, rows) > partitions:
        rows += 1
    return rows


# The UI backfill -------------------------------------------------------------------------------


class TreeSampler(threading.Thread):
    """Reads /proc every ``interval`` s: per process of the tree under ``root``, its command and last CPU."""

    def __init__(self, root: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.processes: dict[int, dict] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            _, members = process_tree(self.root)
            now = time.monotonic()
            for pid in members:
                record = self.processes.get(pid)
                if record is None:
                    try:
                        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                    except OSError:
                        continue
                    record = self.processes[pid] = {"command": command, "first": now}
                try:
                    text = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                fields = text[text.rindex(")") + 2 :].split()
                record["own_cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                record["last"] = now
            self.stopping.wait(self.interval)


def run_backfill(setup: Setup, arguments: argparse.Namespace, sync_extra: dict[str, str], name: str) -> Run:
    """One UI backfill in a fresh DAGSTER_HOME between the current servers (see the module's docstring)."""
    home = Path(tempfile.mkdtemp(prefix="dagster-home-backfill-", dir=setup.work))
    shutil.copy(REPOSITORY / "dagster.yaml", home / "dagster.yaml")
    environment = dagster_environment(
        setup, DESTINATION_BUCKET, {**sync_extra, "SYNC_PARTITION_ROWS": str(arguments.partition_rows)}, home
    )
    logs = setup.work / f"backfill-{len(os.listdir(setup.work))}"
    logs.mkdir()
    # 1. Partitions, cut as `sync` or the partitions sensor cuts them (this also creates the storage, so the
    #    daemon and the launcher never race to create it).
    cut_measurement = logs / "cut.json"
    with open(logs / "cut.log", "wb") as output:
        subprocess.run(
            measured(cut_measurement, [sys.executable, __file__, "cut-partitions"]),
            env=environment, cwd=REPOSITORY, stdout=output, stderr=subprocess.STDOUT, check=True,
        )  # fmt: skip
    partitions = json.loads((logs / "cut.log").read_text().strip().splitlines()[-1])
    cut = json.loads(cut_measurement.read_text())
    # 2. The daemon, under a subreaper wrapper (its whole tree's CPU at the end).
    daemon_measurement = logs / "daemon.json"
    daemon_log = open(logs / "daemon.log", "wb")
    daemon = subprocess.Popen(
        measured(daemon_measurement, [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)], subreaper=True),
        env=environment, cwd=REPOSITORY, stdout=daemon_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    daemon_started = time.monotonic()
    launcher = None
    try:
        # 3. The launcher loads the workspace (as the webserver has it loaded) and waits for the daemon.
        spec = {"mode": arguments.backfill_from, "partitions": partitions}
        launcher = subprocess.Popen(
            [sys.executable, __file__, "launch-backfill", json.dumps(spec)],
            env=environment, cwd=REPOSITORY, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(logs / "launcher.log", "wb"), text=True,
        )  # fmt: skip
        line = protocol_line(launcher)
        if line != "ready":
            raise SystemExit(f"backfill launcher: {line!r}; see {logs / 'launcher.log'}")
        daemon_ready = time.monotonic() - daemon_started
        busy = settle(arguments.settle)
        servers = setup.servers()
        sampler = TreeSampler(daemon.pid)
        sampler.start()
        servers_before = server_cpu(servers)
        cpu_before, _ = tree_cpu_seconds(daemon.pid)
        started = time.monotonic()
        launcher.stdin.write("go\n")
        launcher.stdin.flush()
        result_line = protocol_line(launcher)
        finished = time.monotonic()
        cpu_after, _ = tree_cpu_seconds(daemon.pid)
        servers_spent = server_cpu(servers) - servers_before
        sampler.stopping.set()
        launcher.wait(60)
        if not result_line:
            raise SystemExit(f"backfill launcher exited ({launcher.returncode}); see {logs / 'launcher.log'}")
        result = json.loads(result_line)
    finally:
        if launcher is not None and launcher.poll() is None:
            launcher.kill()
        daemon.terminate()  # the wrapper passes SIGTERM on to the daemon's process group
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, 9)
            daemon.wait()
        daemon_log.close()
    whole = json.loads(daemon_measurement.read_text()) if daemon_measurement.exists() else {}
    workers = [
        record
        for record in sampler.processes.values()
        if "spawn_main" in record["command"] and record["first"] >= started - 1
    ]
    runs = result["runs"]
    extra = {
        "partitions": sum(partitions.values()),
        "runs": len(runs),
        "statuses": result["statuses"],
        "run_statuses": sorted({run["status"] for run in runs}),
        "daemon_ready_s": daemon_ready,
        "cut_s": cut["seconds"],
        "cut_cpu_s": cut["cpu_seconds"],
        "launch_s": result["launched_at"] - result["go_at"],
        "first_run_created_s": min(run["created"] for run in runs) - result["go_at"],
        "first_run_started_s": min(run["start"] for run in runs) - result["go_at"],
        "last_run_ended_s": max(run["end"] for run in runs) - result["go_at"],
        "completed_s": result["done_at"] - result["go_at"],
        "run_wall_s": statistics.mean(run["end"] - run["start"] for run in runs),
        "run_queue_s": statistics.mean(run["start"] - run["created"] for run in runs),
        "most_runs_at_once": most_at_once(runs),
        "run_cycle_s": (max(run["end"] for run in runs) - min(run["start"] for run in runs)) / len(runs),
        "worker_cpu_s": statistics.mean(record["own_cpu"] for record in workers) if workers else None,
        "workers_seen": len(workers),
        "daemon_tree_total_cpu_s": whole.get("cpu_seconds"),
        "daemon_tree_total_wall_s": whole.get("seconds"),
        "launcher_cpu_s": result["launcher_cpu_s"],
    }
    return Run(
        name,
        len(setup.keys),
        setup.expected_bytes,
        finished - started,
        cpu_after - cpu_before,
        whole.get("peak_rss", 0),
        servers_spent,
        verified(setup, DESTINATION_BUCKET) and set(extra["run_statuses"]) == {"SUCCESS"},
        busy,
        extra=extra,
    )


PROTOCOL = "BENCH "
"""The launcher's own lines on its stdout start with it (the code server it starts writes there too)."""


def protocol_line(launcher: subprocess.Popen) -> str:
    """The launcher's next line of its own ("" at its end)."""
    for line in launcher.stdout:
        if line.startswith(PROTOCOL):
            return line[len(PROTOCOL) :].strip()
    return ""


def most_at_once(runs: list[dict]) -> int:
    edges = sorted([(run["start"], 1) for run in runs] + [(run["end"], -1) for run in runs])
    at_once = most = 0
    for _, change in edges:
        at_once += change
        most = max(most, at_once)
    return most


def cut_partitions() -> None:
    """Helper process: cut every table's partitions at SYNC_PARTITION_ROWS; print {table: count} as JSON."""
    from dagster import DagsterInstance

    from mastodon_s3_sync.core.configured import configured
    from mastodon_s3_sync.core.mastodon.tables import TABLES
    from mastodon_s3_sync.definitions.partitions import add_new_partitions

    resources = configured(only=("mastodon_db", "sync_tuning"))
    with DagsterInstance.get() as instance:
        counts = {
            table: len(
                add_new_partitions(
                    instance,
                    resources["mastodon_db"],
                    table,
                    resources["sync_tuning"].partition_rows,
                    include_tail=True,
                )
            )
            for table in TABLES
        }
    print(json.dumps(counts), flush=True)


def launch_backfill(spec_text: str) -> None:
    """Helper process, the UI's side: load the workspace, wait for the daemon, print ``ready``; on a line from
    stdin launch the backfill(s) with the UI's GraphQL mutation; print one JSON line when all are final."""
    from dagster import DagsterInstance
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.cli import execute_query

    spec = json.loads(spec_text)
    with (
        DagsterInstance.get() as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(WORKSPACE)])) as context,
    ):
        result = _launch_and_wait(spec, instance, context, execute_query)
    print(PROTOCOL + json.dumps(result), flush=True)


def _launch_and_wait(spec: dict, instance, context, execute_query) -> dict:
    import resource

    from dagster import RunsFilter
    from dagster._core.execution.backfill import BulkActionStatus

    from mastodon_s3_sync.definitions.partitions import partitions_name

    deadline = time.monotonic() + 300
    while not {"BACKFILL", "QUEUED_RUN_COORDINATOR"} <= set(instance.get_daemon_heartbeats()):
        if time.monotonic() > deadline:
            raise SystemExit("the daemon sent no heartbeats in 300 s")
        time.sleep(0.5)
    print(PROTOCOL + "ready", flush=True)
    sys.stdin.readline()
    go_at = time.time()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    tables = [table for table, count in spec["partitions"].items() if count]
    if spec["mode"] == "asset":  # the asset graph: select all, Materialize, all partitions
        params = [{"assetSelection": [{"path": [table]} for table in tables], "allPartitions": True}]
    else:  # each sync_<table> job page's Backfill dialog, every partition selected
        params = [
            {
                "selector": {
                    "partitionSetName": f"sync_{table}_partition_set",
                    "repositorySelector": REPOSITORY_SELECTOR,
                },
                "assetSelection": [{"path": [table]}],
                "partitionNames": list(instance.get_dynamic_partitions(partitions_name(table))),
            }
            for table in tables
        ]
    backfill_ids = []
    for backfill_params in params:
        answer = execute_query(context, LAUNCH_BACKFILL, {"backfillParams": backfill_params})
        launched = (answer.get("data") or {}).get("launchPartitionBackfill") or {}
        if launched.get("__typename") != "LaunchBackfillSuccess":
            raise SystemExit(f"launchPartitionBackfill: {answer}")
        backfill_ids.append(launched["backfillId"])
    launched_at = time.time()
    unfinished = {BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING}
    deadline = time.monotonic() + BACKFILL_TIMEOUT
    while True:
        statuses = [instance.get_backfill(backfill_id).status for backfill_id in backfill_ids]
        if not unfinished & set(statuses):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"backfills not finished after {BACKFILL_TIMEOUT} s: {statuses}")
        time.sleep(0.5)
    done_at = time.time()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    runs = []
    for backfill_id in backfill_ids:
        for record in instance.get_run_records(RunsFilter.for_backfill(backfill_id)):
            runs.append(
                {
                    "status": record.dagster_run.status.value,
                    "created": record.create_timestamp.timestamp(),
                    "start": record.start_time or done_at,
                    "end": record.end_time or done_at,
                }
            )
    return {
        "backfills": backfill_ids,
        "statuses": [status.value for status in statuses],
        "go_at": go_at,
        "launched_at": launched_at,
        "done_at": done_at,
        "runs": runs,
        "launcher_cpu_s": cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime,
    }


# The breakdown of `sync` -----------------------------------------------------------------------


def timed_command(command: list[str], work: Path, repeat: int = 3) -> dict:
    """The fastest of ``repeat`` runs of ``command`` under the measure wrapper: wall and CPU seconds."""
    best = None
    for _ in range(repeat):
        output = work / "timed.json"
        subprocess.run(measured(output, command), check=True, cwd=REPOSITORY, stdout=subprocess.DEVNULL)
        measurement = json.loads(output.read_text())
        if best is None or measurement["seconds"] < best["seconds"]:
            best = measurement
    return best


def breakdown_worker() -> None:
    """Helper process: what `sync` does (cli.main.command_sync, runs.sync_tables), with timers around each phase,
    one table at a time (SYNC_TABLES_AT_ONCE=1) so that each run's figures are its own.

    Prints one JSON line: phases (wall, CPU), every run (wall, CPU, steps' wall from
    their events, events), every copy step (copy_objects' wall and CPU, objects), and
    runs of an empty partition (the fixed cost of one Dagster run)."""
    import resource

    clock = {"wall": time.monotonic(), "cpu": time.process_time()}
    phases: dict[str, dict] = {}

    def phase(name: str) -> None:
        now, cpu = time.monotonic(), time.process_time()
        phases[name] = {"wall": now - clock["wall"], "cpu": cpu - clock["cpu"]}
        clock.update(wall=now, cpu=cpu)

    import mastodon_s3_sync.definitions.assets as assets
    from mastodon_s3_sync.cli.main import checked_resources
    from mastodon_s3_sync.core import settings
    from mastodon_s3_sync.core.id_ranges import IdRange
    from mastodon_s3_sync.core.mastodon.tables import TABLES
    from mastodon_s3_sync.core.settings import load_environment
    from mastodon_s3_sync.definitions.definitions import build_definitions
    from mastodon_s3_sync.definitions.jobs import sync_job_name
    from mastodon_s3_sync.definitions.partitions import (
        add_new_partitions,
        partitions_name,
        stale_partitions,
        unsynced_partitions,
    )
    from mastodon_s3_sync.execution.instance import ensure_dagster_home, in_process_instance
    from mastodon_s3_sync.execution.runs import _execute, contiguous_groups, refresh_acls_in_process

    phase("imports (in process, after interpreter start)")
    copy_steps: list[dict] = []
    original_copy_objects = assets.copy_objects

    def timed_copy_objects(objects, *args, **kwargs):
        wall, cpu = time.monotonic(), time.process_time()
        report = original_copy_objects(objects, *args, **kwargs)
        copy_steps.append({"objects": len(objects), "wall": time.monotonic() - wall, "cpu": time.process_time() - cpu})
        return report

    assets.copy_objects = timed_copy_objects  # the copy op looks it up in its module at call time

    load_environment()
    tables = list(TABLES)
    resources = checked_resources(tables)
    home = ensure_dagster_home()
    phase("pre-flight checks (configuration, database, both buckets)")
    resources["destination_s3"].abort_stale_uploads()
    phase("abort stale multipart uploads")
    definitions = build_definitions()
    phase("build definitions")
    instance = in_process_instance()
    phase("instance creation (fresh DAGSTER_HOME)")
    runs: list[dict] = []
    cut = {"wall": 0.0, "cpu": 0.0}
    for table in tables:
        add_new_partitions(instance, resources["mastodon_db"], table, resources["sync_tuning"].partition_rows,
                           include_tail=True)  # fmt: skip
        with resources["mastodon_db"].connection() as connection:
            overlap = timedelta(minutes=resources["sync_tuning"].change_overlap_minutes)
            stale = stale_partitions(instance, connection, TABLES[table], overlap)
        pending = unsynced_partitions(instance, table) + sorted(stale)
        job = definitions.resolve_job_def(sync_job_name(table))
        now, cpu = time.monotonic(), time.process_time()
        cut["wall"] += now - clock["wall"]
        cut["cpu"] += cpu - clock["cpu"]
        clock.update(wall=now, cpu=cpu)
        every_key = instance.get_dynamic_partitions(partitions_name(table))
        for keys in contiguous_groups(every_key, pending, settings.value("SYNC_PARTITIONS_PER_RUN")):
            steps_before = len(copy_steps)
            run, error = _execute(job, instance, partition_keys=keys)
            if error is not None:
                raise SystemExit(f"{table} {keys[0]}..{keys[-1]}: {error}")
            now, cpu = time.monotonic(), time.process_time()
            runs.append(
                run_figures(instance, table, run, now - clock["wall"], cpu - clock["cpu"], copy_steps[steps_before:])
            )
            clock.update(wall=now, cpu=cpu)
    phases["partition cutting and pending partitions (all tables)"] = cut
    phases["Dagster runs (all partitions)"] = {
        "wall": sum(run["wall"] for run in runs),
        "cpu": sum(run["cpu"] for run in runs),
    }
    refresh_acls_in_process(definitions, instance)
    phase("ACL refresh run")
    # The fixed cost of a run: partitions with no rows (past every table's last id).
    empty = []
    for table in ("preview_card_providers", "media_attachments", "backups"):
        key = IdRange(2**62, 2**62 + 1000 + len(empty)).key
        instance.add_dynamic_partitions(partitions_name(table), [key])
        job = definitions.resolve_job_def(sync_job_name(table))
        for _ in range(2):
            wall, cpu = time.monotonic(), time.process_time()
            run, error = _execute(job, instance, partition_keys=[key])
            empty.append(
                run_figures(instance, table, run, time.monotonic() - wall, time.process_time() - cpu, [])
                | {"error": error}
            )
    clock.update(wall=time.monotonic(), cpu=time.process_time())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "home": str(home),
                "phases": phases,
                "runs": runs,
                "empty_runs": empty,
                "process_cpu": usage.ru_utime + usage.ru_stime,
                "peak_rss": usage.ru_maxrss * 1024,
            }
        ),
        flush=True,
    )


def run_figures(instance, table: str, run, wall: float, cpu: float, copy_steps: list[dict]) -> dict:
    """One run's wall and CPU, its steps' wall from their events, its event log entries, and its copy steps."""
    starts, steps = {}, {}
    records = instance.all_logs(run.run_id)
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = record.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            steps[event.step_key] = record.timestamp - starts[event.step_key]
    objects = 0
    for event in run.get_asset_materialization_events():
        metadata = event.materialization.metadata
        objects += metadata["objects_copied"].value + metadata["objects_skipped"].value
    return {
        "table": table,
        "wall": wall,
        "cpu": cpu,
        "objects": objects,
        "events": len(records),
        "steps": steps,
        "copy_steps": copy_steps,
    }


def breakdown(setup: Setup, arguments: argparse.Namespace, sync_extra: dict[str, str]) -> dict:
    """Interpreter start and imports, then one instrumented sync between fresh servers (machine settled first)."""
    figures = {}
    settle(arguments.settle)
    figures["python -c pass"] = timed_command([sys.executable, "-c", "pass"], setup.work)
    for module in (
        "mastodon_s3_sync.cli.main",
        "dagster",
        "mastodon_s3_sync.definitions.definitions",
        "mastodon_s3_sync.core.transfer.engine",
    ):
        figures[f"import {module}"] = timed_command([sys.executable, "-c", f"import {module}"], setup.work)
    settle(arguments.settle)
    with fresh_servers(setup, DESTINATION_BUCKET, setup.work / "destination-breakdown"):
        environment = dagster_environment(setup, DESTINATION_BUCKET, sync_extra)
        figures["sync --help"] = timed_command([sys.executable, "-m", "mastodon_s3_sync", "sync", "--help"], setup.work)
        settle(arguments.settle)
        output = setup.work / "breakdown.json"
        servers = setup.servers()
        before = server_cpu(servers)
        with open(setup.work / "breakdown.log", "wb") as log:
            returncode = subprocess.run(
                measured(output, [sys.executable, __file__, "breakdown-worker"]),
                env=environment, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT,
            ).returncode  # fmt: skip
        if returncode:
            raise SystemExit(f"breakdown worker failed:\n{(setup.work / 'breakdown.log').read_text()[-3000:]}")
        figures["servers_cpu"] = server_cpu(servers) - before
        figures["worker"] = json.loads((setup.work / "breakdown.log").read_text().strip().splitlines()[-1])
        figures["worker_process"] = json.loads(output.read_text())
        figures["verified"] = verified(setup, DESTINATION_BUCKET)
        if arguments.profile:
            settle(arguments.settle)
    if arguments.profile:  # a pyinstrument profile of a whole `sync`, on fresh servers again
        with fresh_servers(setup, DESTINATION_BUCKET, setup.work / "destination-profile"):
            environment = dagster_environment(setup, DESTINATION_BUCKET, sync_extra)
            profile = Path(arguments.profile).resolve()
            subprocess.run(
                [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(profile),
                 "-m", "mastodon_s3_sync", "sync"],
                env=environment, cwd=REPOSITORY, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=True,
            )  # fmt: skip
            figures["profile"] = str(profile)
    return figures


def print_breakdown(figures: dict, objects: int) -> None:
    print("\nbreakdown of `sync` (one run, machine settled first)")
    print(f"  {'phase':<62} {'wall s':>8} {'CPU s':>8}")
    for name in ("python -c pass", *[name for name in figures if name.startswith("import ")], "sync --help"):
        print(f"  {'process: ' + name:<62} {figures[name]['seconds']:>8.3f} {figures[name]['cpu_seconds']:>8.3f}")
    worker = figures["worker"]
    for name, value in worker["phases"].items():
        print(f"  {name:<62} {value['wall']:>8.3f} {value['cpu']:>8.3f}")
    process = figures["worker_process"]
    print(
        f"  {'whole driver process (interpreter start to exit)':<62} {process['seconds']:>8.3f} "
        f"{process['cpu_seconds']:>8.3f}   peak RSS {process['peak_rss'] / MiB:.0f} MB"
    )
    runs = worker["runs"]
    copy_steps = [step for run in runs for step in run["copy_steps"]]
    print(f"\n  {len(runs)} runs:")
    print(f"  {'table':<24} {'objects':>7} {'run wall':>8} {'run CPU':>8} {'events':>6} {'copy steps':>10} "
          f"{'copy wall':>9} {'copy CPU':>8} {'outside copy wall/CPU':>22}")  # fmt: skip
    for run in runs:
        copy_wall = sum(step["wall"] for step in run["copy_steps"])
        copy_cpu = sum(step["cpu"] for step in run["copy_steps"])
        print(
            f"  {run['table']:<24} {run['objects']:>7} {run['wall']:>8.3f} {run['cpu']:>8.3f} {run['events']:>6} "
            f"{len(run['copy_steps']):>10} {copy_wall:>9.3f} {copy_cpu:>8.3f} "
            f"{run['wall'] - copy_wall:>11.3f} / {run['cpu'] - copy_cpu:.3f}"
        )
    copied = sum(step["objects"] for step in copy_steps)
    if copied:
        print(
            f"  copy steps: {len(copy_steps)}, {copied} objects; copy_objects "
            f"{1000 * sum(s['wall'] for s in copy_steps) / copied:.3f} ms wall and "
            f"{1000 * sum(s['cpu'] for s in copy_steps) / copied:.3f} ms CPU per object"
        )
    for run in runs[:1]:
        print(
            f"  steps of the first run (wall s from events): {json.dumps({k: round(v, 3) for k, v in run['steps'].items()})}"
        )
    empty = worker["empty_runs"]
    print(
        f"  an empty partition's run (fixed cost of a Dagster run), {len(empty)} runs: "
        f"wall {statistics.median(run['wall'] for run in empty):.3f} s, "
        f"CPU {statistics.median(run['cpu'] for run in empty):.3f} s (medians), "
        f"{statistics.median(run['events'] for run in empty):.0f} events"
    )
    print(
        f"  per object over the whole sync: {1000 * process['seconds'] / objects:.3f} ms wall, "
        f"{1000 * process['cpu_seconds'] / objects:.3f} ms CPU; servers {1000 * figures['servers_cpu'] / objects:.3f} ms "
        f"CPU; verified: {figures['verified']}"
    )
    if figures.get("profile"):
        print(f"  pyinstrument profile of a whole `sync`: {figures['profile']}")


# Report ----------------------------------------------------------------------------------------


def report(runs: list[Run], arguments: argparse.Namespace) -> None:
    cores = os.cpu_count()
    best = best_runs(runs)
    rclones = [run for name, run in best.items() if name.startswith("rclone")]
    if not rclones:  # --only without rclone: the runs as they are
        for run in runs:
            print(f"{run.contender}: {run.objects_per_second:.1f} objects/s, {run.seconds:.2f} s, "
                  f"{run.cpu_ms_per_object:.3f} ms CPU/object, {run.server_ms_per_object:.3f} servers ms/object, "
                  f"verified {run.verified}; {json.dumps(run.extra)}")  # fmt: skip
        return
    rclone = min(rclones, key=lambda run: run.seconds)
    print(f"\nbest run of each contender; rclone's best: {rclone.contender}")
    print(
        f"{'contender':<24} {'objects/s':>9} {'vs rclone':>9} {'tree CPU ms/obj':>15} {'vs rclone':>9} "
        f"{'servers ms/obj':>14} {'CPU cap/s':>9} {'% of cap':>8} {'wall s':>7} {'peak RSS MB':>11}  ok   all runs (objects/s)"
    )
    for name, run in best.items():
        all_runs = ", ".join(f"{other.objects_per_second:.0f}" for other in runs if other.contender == name)
        print(
            f"{name:<24} {run.objects_per_second:>9.1f} {run.objects_per_second / rclone.objects_per_second:>8.2f}x "
            f"{run.cpu_ms_per_object:>15.3f} {run.cpu_ms_per_object / rclone.cpu_ms_per_object:>8.2f}x "
            f"{run.server_ms_per_object:>14.3f} {run.cpu_ceiling:>9.0f} {100 * run.objects_per_second / run.cpu_ceiling:>7.0f}% "
            f"{run.seconds:>7.2f} {run.peak_rss / MiB:>11.0f}  {'yes' if run.verified else 'NO':<4} {all_runs}"
        )
    print(
        f"(CPU cap/s: {cores} cores / (tree CPU + servers' CPU) per object, the most this run's own costs allow; "
        "% of cap: how close the run came to it)"
    )
    sync = best.get("sync")
    if sync is not None:
        # The ceiling any client has here: one that spends no CPU, against the servers' cost per object of our run.
        ceiling = cores * 1000 / sync.server_ms_per_object
        ceiling_ratio = ceiling / rclone.objects_per_second
        ratio = sync.objects_per_second / rclone.objects_per_second
        cpu_ratio = sync.cpu_ms_per_object / rclone.cpu_ms_per_object
        target = 1.25 if arguments.objects >= 50_000 else 1.2
        print(
            f"\nsync objects/s vs rclone's best: {ratio:.2f}x (target >= {target}x); "
            f"per round: {', '.join(per_round(runs, 'sync'))}"
        )
        print(
            f"  cap on this machine: a client spending no CPU would reach {cores} cores / "
            f"{sync.server_ms_per_object:.3f} servers' ms per object = {ceiling:.0f} objects/s = {ceiling_ratio:.2f}x "
            f"rclone; the sync's {ratio:.2f}x is {100 * ratio / ceiling_ratio:.0f}% of that cap "
            f"(the target {target}x would be {100 * target / ceiling_ratio:.0f}% of it)"
        )
        print(
            f"  sync's CPU cap vs rclone's: {sync.cpu_ceiling / rclone.cpu_ceiling:.2f}x "
            f"(the most its own CPU allows against rclone's; it reached {ratio:.2f}x)"
        )
        print(f"sync tree CPU per object vs rclone: {cpu_ratio:.2f}x (target <= 0.6x)")
    backfill = next((run for name, run in best.items() if name.startswith("backfill")), None)
    if backfill is not None and sync is not None:
        print(
            f"backfill time vs sync's: {backfill.seconds / sync.seconds:.2f}x (target <= 1.2x), "
            f"{backfill.extra['partitions']} partitions; per round: "
            + ", ".join(
                f"{b.seconds / s.seconds:.2f}x"
                for b, s in zip(
                    [run for run in runs if run.contender == backfill.contender],
                    [run for run in runs if run.contender == "sync"],
                )
            )
        )
    for run in runs:
        if run.extra:
            figures = {
                name: round(value, 3) if isinstance(value, float) else value for name, value in run.extra.items()
            }
            print(f"  {run.contender} (CPUs {run.busy:.0f}% busy before): {json.dumps(figures)}")
    if not all(run.verified for run in runs):
        raise SystemExit("some runs left the destination incomplete")


def per_round(runs: list[Run], name: str) -> list[str]:
    ours = [run for run in runs if run.contender == name]
    rclones = [run for run in runs if run.contender.startswith("rclone")]
    rounds = []
    for position, run in enumerate(ours):
        same_round = rclones[2 * position : 2 * position + 2]
        if same_round:
            fastest = min(same_round, key=lambda other: other.seconds)
            rounds.append(f"{run.objects_per_second / fastest.objects_per_second:.2f}x")
    return rounds


# Entry points ----------------------------------------------------------------------------------


def contenders(setup: Setup, arguments: argparse.Namespace, sync_extra: dict[str, str]):
    """(name, run) pairs: ``run(busy)`` runs the contender once, between the servers already started."""

    def rclone(no_traverse: bool):
        def run(name: str, busy: float) -> Run:
            command = rclone_command(setup, DESTINATION_BUCKET, 64, no_traverse)
            return run_measured(name, setup, command, rclone_environment(setup), DESTINATION_BUCKET, busy)

        return run

    def sync(extra: dict[str, str], checkout: Path | None = None):
        def run(name: str, busy: float) -> Run:
            command = [sys.executable, "-m", "mastodon_s3_sync", "sync"]
            if checkout is not None:  # that checkout's package first on the path, this venv's dependencies
                command = [sys.executable, "-c", RUN_SYNC_OF_CHECKOUT, str(checkout)]
            environment = dagster_environment(setup, DESTINATION_BUCKET, extra)
            return run_measured(name, setup, command, environment, DESTINATION_BUCKET, busy)

        return run

    yield "rclone", rclone(False)
    yield "rclone --no-traverse", rclone(True)
    yield "sync", sync(sync_extra)
    if arguments.sync_baseline:
        baseline = Path(arguments.sync_baseline).resolve()
        yield f"sync at {checkout_commit(baseline)}", sync(sync_extra, baseline)
    if arguments.sync_one_table_at_a_time:
        yield "sync, one table at a time", sync({**sync_extra, "SYNC_TABLES_AT_ONCE": "1"})
    if arguments.sync_at_backfill_partitions:
        yield (
            f"sync, {arguments.partition_rows} rows/partition",
            sync({**sync_extra, "SYNC_PARTITION_ROWS": str(arguments.partition_rows)}),
        )
    if arguments.backfill:
        yield (
            f"backfill ({arguments.backfill_from} page)",
            lambda name, busy: run_backfill(setup, arguments, sync_extra, name),
        )


RUN_SYNC_OF_CHECKOUT = (
    "import runpy, sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['mastodon-s3-sync', 'sync']; "
    "runpy.run_module('mastodon_s3_sync', run_name='__main__')"
)


def checkout_commit(checkout: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def code_version() -> str:
    """The checkout's commit and whether the package differs from it, or what CODE_VERSION says (a snapshot)."""
    if os.environ.get("CODE_VERSION"):
        return os.environ["CODE_VERSION"]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "mastodon_s3_sync", "dagster.yaml", "workspace.yaml"],
            cwd=REPOSITORY, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {commit}" + (", package with uncommitted changes" if dirty else "")


def main() -> None:
    helpers = {
        "cut-partitions": lambda: cut_partitions(),
        "launch-backfill": lambda: launch_backfill(sys.argv[2]),
        "breakdown-worker": lambda: breakdown_worker(),
    }
    if sys.argv[1:2] and sys.argv[1] in helpers:
        return helpers[sys.argv[1]]()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000, help="objects to seed over the seven tables")
    parser.add_argument("--size-scale", type=float, default=1.0, help="seed_bulk_all_tables' size scale")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; contenders take turns, the fastest run counts")
    parser.add_argument(
        "--partition-rows", type=int, default=20_000, help="SYNC_PARTITION_ROWS of the backfill (sync: its default)"
    )
    parser.add_argument(
        "--backfill-partitions",
        type=int,
        help="instead of --partition-rows: the fewest rows per partition that give at most this many partitions",
    )
    parser.add_argument("--backfill", action="store_true", help="include the UI backfill")
    parser.add_argument(
        "--from-disk",
        action="store_true",
        help="copy from the seeded files as a disk instance's public/system (SOURCE_PAPERCLIP_ROOT_PATH; rclone "
        "from the same directory)",
    )
    parser.add_argument(
        "--backfill-from",
        choices=("asset", "job"),
        default="asset",
        help="asset: the asset graph's Materialize all (one backfill); job: each sync_<table> job page's Backfill",
    )
    parser.add_argument(
        "--sync-at-backfill-partitions",
        action="store_true",
        help="also run `sync` with the backfill's SYNC_PARTITION_ROWS (the same partitions)",
    )
    parser.add_argument(
        "--sync-one-table-at-a-time",
        action="store_true",
        help="also run `sync` with SYNC_TABLES_AT_ONCE=1 (the tables in turn, as before it was 2)",
    )
    parser.add_argument(
        "--sync-baseline",
        metavar="DIR",
        help="a checkout of an earlier commit (`git worktree add DIR COMMIT`): its `sync` joins the rounds as "
        "another contender, for a before/after measured on the same machine at the same time",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only contenders whose name starts so"
    )
    parser.add_argument("--breakdown", action="store_true", help="after the rounds, one instrumented sync")
    parser.add_argument("--profile", metavar="FILE", help="with --breakdown: a pyinstrument text profile of a sync")
    parser.add_argument("--settle", type=float, default=60, help="seconds to wait for a quiet machine before a run")
    parser.add_argument(
        "--work-dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None, help="where the servers keep files"
    )
    parser.add_argument(
        "--sync-env", action="append", default=[], metavar="NAME=VALUE", help="for sync and the backfill's runs"
    )
    arguments = parser.parse_args()
    sync_extra = dict(item.split("=", 1) for item in arguments.sync_env)

    import mastodon_s3_sync

    print(f"code under test: {Path(mastodon_s3_sync.__file__).parent} ({code_version()})", flush=True)
    began = time.monotonic()
    runs: list[Run] = []
    with ExitStack() as stack:
        work = work_directory(stack, "bench-e2e-", arguments.work_dir)
        setup = seed(stack, arguments, work)
        setup.from_disk = arguments.from_disk
        if arguments.backfill_partitions:
            arguments.partition_rows = rows_for(setup.row_counts, arguments.backfill_partitions)
        if arguments.backfill:
            print(
                f"  the backfill's partitions at {arguments.partition_rows} rows each: "
                f"{partitions_for(setup.row_counts, arguments.partition_rows)} "
                f"(200 partitions would take {rows_for(setup.row_counts, 200)} rows each)",
                flush=True,
            )
        factories = [
            (name, factory)
            for name, factory in contenders(setup, arguments, sync_extra)
            if not arguments.only or any(name.startswith(prefix) for prefix in arguments.only)
        ]
        for repeat in range(arguments.repeat if factories else 0):
            shift = repeat % len(factories)
            for name, factory in factories[shift:] + factories[:shift]:
                busy = settle(arguments.settle)
                with fresh_servers(setup, DESTINATION_BUCKET, work / f"destination-{len(runs)}"):
                    run = factory(name, busy)
                runs.append(run)
                print(
                    f"{name}: {run.objects_per_second:.0f} objects/s in {run.seconds:.1f} s, "
                    f"{run.cpu_ms_per_object:.3f} ms CPU/object, peak RSS {run.peak_rss / MiB:.0f} MB, "
                    f"CPUs {run.busy:.0f}% busy before it{'' if run.verified else ', INCOMPLETE'} "
                    f"[{time.monotonic() - began:.0f} s]",
                    flush=True,
                )
        figures = breakdown(setup, arguments, sync_extra) if arguments.breakdown else None
    if runs:
        report(runs, arguments)
    if figures is not None:
        print_breakdown(figures, len(setup.keys))
        breakdown_file = Path(tempfile.gettempdir()) / "bench_end_to_end_breakdown.json"
        breakdown_file.write_text(json.dumps(figures, indent=1))
        print(f"  (all figures: {breakdown_file})")
    print(f"\ntotal time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
