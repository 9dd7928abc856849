"""``mastodon-s3-sync demo``: a whole migration on a machine with nothing running.

Starts an embedded PostgreSQL and two ``rclone serve s3`` servers, seeds the
hand-written fake instance (every layout rule, orphans, missing objects) plus
some bulk media, then runs ``sync`` and ``verify`` through Dagster exactly as
an admin would, and checks the destination holds exactly the referenced
objects. ``--ui`` opens the Dagster UI on the same environment instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from mastodon_s3_sync_demo.fake_instance import FakeInstance, seed, seed_bulk
from mastodon_s3_sync_demo.servers import (
    S3Server,
    embedded_postgres_server,
    free_port,
    fresh_database,
    rclone_s3_server,
)

SOURCE_BUCKET = "mastodon-media"
DESTINATION_BUCKET = "mastodon-media-new"
DESTINATION_PREFIX = "media"
BULK_ROWS = 1000


def demo_environment(database_url: str, source: S3Server, destination: S3Server, dagster_home: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SOURCE_S3_BUCKET": SOURCE_BUCKET,
        "SOURCE_S3_ENDPOINT": source.endpoint_url,
        "SOURCE_AWS_ACCESS_KEY_ID": source.access_key,
        "SOURCE_AWS_SECRET_ACCESS_KEY": source.secret_key,
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


def run_demo(*, ui: bool = False) -> int:
    from mastodon_s3_sync.cli.main import main as cli_main

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mastodon-s3-sync-demo-")))
        print("Starting an embedded PostgreSQL and two rclone S3 servers...", flush=True)
        database_url = stack.enter_context(fresh_database(stack.enter_context(embedded_postgres_server()), "mastodon"))
        source = stack.enter_context(rclone_s3_server(work / "source"))
        destination = stack.enter_context(rclone_s3_server(work / "destination"))
        source.create_bucket(SOURCE_BUCKET)
        destination.create_bucket(DESTINATION_BUCKET)
        instance = seed(database_url, source.client(), SOURCE_BUCKET)
        bulk_keys = seed_bulk(database_url, source.client(), SOURCE_BUCKET, rows=BULK_ROWS)
        print(
            f"Seeded a fake instance: {sum(instance.row_counts.values()) + BULK_ROWS} rows, "
            f"{len(instance.expected) + len(bulk_keys)} referenced objects, {len(instance.missing)} referenced but "
            f"missing, {len(instance.orphans)} orphans in the source bucket.",
            flush=True,
        )
        dagster_home = work / "dagster_home"
        dagster_home.mkdir()
        os.environ.update(demo_environment(database_url, source, destination, dagster_home))
        if ui:
            return _serve_ui(cli_main)
        cli_main(["plan"])
        sync_status = cli_main(["sync"])
        verify_status = cli_main(["verify"])
        exact, report = destination_is_exact(destination, instance, bulk_keys)
        print(report)
        ok = sync_status == 0 and verify_status == 0 and exact
        print("DEMO OK: a verified, complete sync of exactly the referenced objects." if ok else "DEMO FAILED")
        return 0 if ok else 1


def _serve_ui(cli_main) -> int:
    """Plan and cut every partition, sync the small custom_emojis table so one synced asset
    shows its metadata, and leave the rest for a backfill from the UI."""
    cli_main(["plan"])
    cli_main(["sync", "custom_emojis"])
    _cut_partitions()
    port = int(os.environ.get("DEMO_UI_PORT") or free_port())
    print(f"Dagster UI: http://127.0.0.1:{port} (Ctrl-C stops the demo and removes everything)", flush=True)
    command = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)]
    command += ["-m", "mastodon_s3_sync.orchestration.definitions"]
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
    from mastodon_s3_sync.orchestration.partitions import add_new_partitions

    resources = configured(only=("mastodon_db", "sync_tuning"))
    with DagsterInstance.get() as instance:
        for table in TABLES:
            add_new_partitions(
                instance, resources["mastodon_db"], table, resources["sync_tuning"].partition_rows, include_tail=True
            )
