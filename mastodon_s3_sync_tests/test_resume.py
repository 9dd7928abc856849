"""A sync killed mid-partition (SIGKILL) loses nothing, and the next ``sync`` completes it
without copying again what was already copied: the destination's PUTs are counted."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading

import pytest
from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk

from mastodon_s3_sync.core.mastodon.layout import with_key_prefix
from mastodon_s3_sync_tests.support.migration import make_migration
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy

pytestmark = pytest.mark.integration  # real servers or Dagster processes

BULK_ROWS = 800
KILL_AFTER_PUTS = 300


def sync_command(environment: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mastodon_s3_sync", "sync", "media_attachments"],
        env={**os.environ, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_killed_sync_resumes_without_copying_twice(database_url, rclone_source, rclone_destination, tmp_path):
    enough_copied = threading.Event()

    def watch(exchange) -> None:
        if exchange.method == "PUT" and len(proxy.completed_puts()) >= KILL_AFTER_PUTS:
            enough_copied.set()

    with S3Proxy(rclone_destination.endpoint_url, on_response=watch) as proxy:
        destination = dataclasses.replace(rclone_destination, endpoint_url=proxy.endpoint_url)
        migration = make_migration(database_url, rclone_source, destination, destination_prefix="media")
        bulk_keys = seed_bulk(database_url, rclone_source.client(), migration.source_bucket, rows=BULK_ROWS)
        environment = {
            **migration.environment(),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            "SYNC_PARTITION_ROWS": "5000",  # one partition holds everything: the kill lands mid-partition
            "SYNC_BATCH_OBJECTS": "500",
            "SYNC_CONCURRENCY": "4",
        }

        first = sync_command(environment)
        try:
            assert enough_copied.wait(180), "the first sync never got going"
            os.killpg(first.pid, signal.SIGKILL)
        finally:
            first.wait(30)
        assert first.returncode == -signal.SIGKILL
        copied_before_kill = set(proxy.completed_puts())
        puts_before = len(proxy.exchanges)
        media = [o.key for o in migration.instance.expected_for("media_attachments")] + bulk_keys
        expected = {with_key_prefix("media", key) for key in media}
        assert KILL_AFTER_PUTS <= len(copied_before_kill) < len(expected), "killed mid-partition"

        second = sync_command(environment)
        output, _ = second.communicate(timeout=600)
        assert second.returncode == 0, output

        recopied = [e.key for e in proxy.exchanges[puts_before:] if e.method == "PUT" and e.key in copied_before_kill]
        assert recopied == [], "objects copied before the kill are not copied again"
        assert migration.destination_keys() == expected
