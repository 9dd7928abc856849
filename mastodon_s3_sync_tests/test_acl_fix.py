"""A destination filled by another tool (a plain copy, every object public-read): `sync` skips
what is there and makes private what must be (suspended accounts' and deleted statuses' media,
backups), and `sync --fix-acls` sets every object's ACL, both ways."""

from __future__ import annotations

import subprocess

import pytest
from mastodon_s3_sync_demo.fake_instance.tables import TABLE_NAMES

from mastodon_s3_sync_tests.support.acl import is_public
from mastodon_s3_sync_tests.support.cli import run_cli
from mastodon_s3_sync_tests.support.migration import make_migration

pytestmark = pytest.mark.integration


def cli_sync(dagster_instance, *arguments: str) -> subprocess.CompletedProcess:
    return run_cli("sync", *arguments, dagster_home=dagster_instance.root_directory, timeout=600)


def test_sync_makes_skipped_objects_private_and_fix_acls_sets_every_acl(
    database_url, rclone_source, moto, dagster_instance, environment
):
    migration = make_migration(database_url, rclone_source, moto)
    environment(migration.environment())
    client = migration.destination.client()
    bucket = migration.destination_bucket
    expected = migration.instance.expected
    for obj in expected:  # another tool's copy: the bytes right, every ACL public-read
        client.put_object(Bucket=bucket, Key=obj.key, Body=obj.body, ContentType=obj.content_type, ACL="public-read")
    private = {obj.key for obj in expected if obj.acl_kind == "private"}
    assert private and {obj.table for obj in expected if obj.acl_kind == "private"} == {"media_attachments", "backups"}

    synced = cli_sync(dagster_instance)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert {key for key in private if is_public(client, bucket, key)} == set()
    assert all(is_public(client, bucket, obj.key) for obj in expected if obj.acl_kind != "private")
    made_private = {}
    for line in synced.stdout.splitlines():
        table = line.split(":")[0]
        if table in TABLE_NAMES:
            assert " 0 objects copied" in line, line
            made_private[table] = int(line.split(" of them made private")[0].rsplit("(", 1)[1]) if "made" in line else 0
    assert made_private == {
        table: sum(1 for obj in expected if obj.table == table and obj.acl_kind == "private") for table in TABLE_NAMES
    }

    # Objects that neither the partition sync (synced, unchanged rows) nor the ACL refresh looks at again.
    should_be_private = next(obj.key for obj in expected if obj.table == "backups")
    should_be_public = next(obj.key for obj in expected if obj.table == "accounts")
    client.put_object_acl(Bucket=bucket, Key=should_be_private, ACL="public-read")
    client.put_object_acl(Bucket=bucket, Key=should_be_public, ACL="private")
    plain = cli_sync(dagster_instance)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert is_public(client, bucket, should_be_private) and not is_public(client, bucket, should_be_public)

    fixed = cli_sync(dagster_instance, "--fix-acls")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert not is_public(client, bucket, should_be_private)
    assert is_public(client, bucket, should_be_public)
    fixed_lines = [line for line in fixed.stdout.splitlines() if line.startswith("ACLs of ")]
    assert len(fixed_lines) == len(TABLE_NAMES)
    for table in TABLE_NAMES:
        present = sum(1 for obj in expected if obj.table == table)
        [line] = [line for line in fixed_lines if line.startswith(f"ACLs of {table}: ")]
        assert line.startswith(f"ACLs of {table}: {present} of "), line
        assert line.endswith(", 0 failed"), line
