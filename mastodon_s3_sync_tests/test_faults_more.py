"""Fault matrix, the rest: the SSH tunnel's sshd killed mid-scan, rows with garbage, and
secrets nowhere in what Dagster stores."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import psycopg2
import pytest
from dagster import DagsterInstance
from mastodon_s3_sync_demo import servers
from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync_tests.support.cli import run_cli
from mastodon_s3_sync_tests.support.faults import assert_destination_exact, expected_media
from mastodon_s3_sync_tests.support.migration import make_migration
from mastodon_s3_sync_tests.support.sync import sync_into
from mastodon_s3_sync_tests.support.tunnel import tunnel_variables

pytestmark = pytest.mark.integration


def sshd_pid(config: Path) -> int:
    """The sshd this test started, found by its own config file's path."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command_line = (entry / "cmdline").read_bytes()  # sshd rewrites its title: one string
            except OSError:
                continue
            if (
                str(config).encode() in command_line
                and b"sshd" in command_line
                and os.getpgid(int(entry.name)) == int(entry.name)
            ):
                return int(entry.name)
    raise AssertionError("the test's sshd is not running")


def with_descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (sshd's sessions call setsid: not in its group)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        found.append(parent)
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            queue += [int(child) for child in task.read_text().split()]
    return found


def test_sshd_killed_mid_scan_names_the_tunnel_and_the_next_run_reconnects(
    tmp_path, database_url, rclone_source, moto, sync_once, environment, monkeypatch
):
    with servers.sshd_server(tmp_path / "sshd") as sshd:
        migration = make_migration(database_url, rclone_source, moto)
        bulk = seed_bulk(database_url, rclone_source.client(), migration.source_bucket, rows=150)
        variables = {**migration.environment(), **tunnel_variables(sshd, database_url), "SYNC_PARTITION_ROWS": "100000"}
        del variables["DATABASE_URL"]
        environment(variables)
        config = tmp_path / "sshd" / "sshd_config"
        killed = []
        original_stream = MastodonDatabase.stream

        def stream(self, sql, parameters=(), connection=None):
            small = dataclasses.replace(self, fetch_rows=50)
            for count, row in enumerate(original_stream(small, sql, parameters, connection), start=1):
                yield row
                if count == 60 and not killed and "media_attachments" in sql:
                    for pid in with_descendants(sshd_pid(config)):  # the daemon and its sessions: the tunnel
                        os.kill(pid, signal.SIGKILL)
                    killed.append(True)

        monkeypatch.setattr(MastodonDatabase, "stream", stream)
        [first] = sync_once("media_attachments")
        assert killed, (first.failed, first.succeeded, first.copied)
        [message] = first.failed.values()
        assert f"{sshd.host}]:{sshd.port}" in message or f"{sshd.host}:{sshd.port}" in message, message
        assert "SSH" in message and "\n" not in message, message
        assert migration.destination_keys() == set()

        log = tmp_path / "sshd" / "sshd-restarted.log"
        with servers._process([str(servers.SSHD), "-D", "-e", "-f", str(config)], log) as process:
            database = configured()["mastodon_db"]
            servers._wait_ready("sshd", lambda: database.query("SELECT 1"), process, log, timeout=20)
            [second] = sync_once("media_attachments")
    assert not second.failed and second.succeeded
    expected = expected_media(migration, "media_attachments", bulk)
    assert second.copied == len(expected)
    assert_destination_exact(migration, expected, acls=True)


GARBAGE = [
    # (id, file name, size, copied?)
    (-7, "negative-id.png", 1234, True),
    (0, "zero-id.png", None, True),
    (9_000_000_000_000_000, "huge-id.png", -5, True),
    (31, "ünïcødé 写真 ☃.png", None, True),
    (32, "100%+plus?q=1&x#frag.png", 77, True),
    (33, "a%2Fb+c.png", -1, True),
    (34, "", 10, False),
    (35, "   ", 10, False),
    (36, "\t", 10, False),
    (37, "a/b.png", 10, False),
]


def test_rows_with_garbage_are_reported_or_copied_and_the_rest_goes_on(
    database_url, rclone_source, moto, dagster_instance, environment, sync_once
):
    migration = make_migration(database_url, rclone_source, moto)
    table = TABLES["preview_card_providers"]
    source = rclone_source.client()
    copied_keys = []
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'preview_card_providers'")
        for record_id, name, size, copied in GARBAGE:
            cursor.execute(
                "INSERT INTO preview_card_providers (id, domain, icon_file_name, icon_content_type, icon_file_size,"
                " icon_updated_at, created_at, updated_at) VALUES (%s, %s, %s, 'image/png', %s, now(), now(), now())",
                (record_id, f"garbage{record_id}.example", name, size),
            )
            if copied:
                row = {
                    "id": record_id,
                    "icon_file_name": name,
                    "icon_content_type": "image/png",
                    "icon_file_size": size,
                    "icon_updated_at": None,
                }
                for media_object in table.objects_for_row(row, "public-read"):
                    body = f"{record_id}:{media_object.style}".encode()
                    source.put_object(
                        Bucket=migration.source_bucket,
                        Key=media_object.key,
                        Body=body,
                        ContentType="image/png",
                        CacheControl="public, max-age=315576000, immutable",
                    )
                    copied_keys.append(media_object.key)
    connection.close()
    environment(migration.environment())
    [result] = sync_once("preview_card_providers")

    assert not result.failed, result.failed
    expected = expected_media(migration, "preview_card_providers", copied_keys)
    assert result.copied == len(expected)
    assert_destination_exact(migration, expected, acls=True)
    [run] = dagster_instance.get_runs()
    logged = "\n".join(str(entry) for entry in dagster_instance.all_logs(run.run_id))
    invalid = sum(1 for _, _, _, copied in GARBAGE if not copied)
    assert f"{invalid} invalid rows" in logged


def test_secrets_appear_nowhere_dagster_stores(database_url, rclone_source, rclone_destination, tmp_path, environment):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    password = "db-pass-Zq81xLw0"
    parameters = psycopg2.extensions.parse_dsn(database_url)
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW password_encryption")
    connection.close()
    url = servers.database_url(database_url, parameters["dbname"]).replace(
        f"{parameters.get('user', 'postgres')}@", f"{parameters.get('user', 'postgres')}:{password}@", 1
    )
    assert password in url, f"the test database URL has no user to attach a password to: {database_url}"
    # postgres_server()'s servers (127.0.0.1:5432 reached without one, or an embedded one) trust any
    # password: the URL carries one the server ignores.
    psycopg2.connect(url).close()
    variables = {**migration.environment(), "DATABASE_URL": url}
    home = tmp_path / "dagster_home"
    synced = run_cli("sync", "custom_emojis", environment=variables, cwd=tmp_path, dagster_home=home)
    assert synced.returncode == 0, synced.stderr

    wrong_secret = "wrong-secret-Kq7uVb3n9"
    environment({**variables, "DESTINATION_AWS_SECRET_ACCESS_KEY": wrong_secret, "DAGSTER_HOME": str(home)})
    with DagsterInstance.get() as instance:
        [failed] = sync_into(instance, ["accounts"])
        assert failed.failed, "the wrong secret fails the run"
        entries = "\n".join(repr(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id))
    secrets = {
        password,
        wrong_secret,
        migration.source.access_key,
        migration.source.secret_key,
        migration.destination.access_key,
        migration.destination.secret_key,
    }
    stored = [path for path in home.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in stored), stored
    for secret in secrets:
        assert secret not in entries
        for path in stored:
            assert secret.encode() not in path.read_bytes(), (secret, path)
    assert "DESTINATION_AWS_SECRET_ACCESS_KEY" in "\n".join(failed.failed.values())
