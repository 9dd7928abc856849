"""The moves to and from a disk, end to end against real PostgreSQL, real servers and real files:
a disk instance (its ``.env.production`` without ``S3_ENABLED``) to a bucket that keeps ACLs
(moto), through the command line, and a bucket to a directory, through the Dagster runs; both
end with ``verify`` complete, and a repeated ``sync`` copies nothing. On the directory, what Mastodon
keeps private is a file mode, as Mastodon's filesystem storage chmods it: private media 0600,
everything else (backups too) 0644 under umask 022, kept so by the ACL refresh, ``--fix-acls`` and a
``sync`` over files already there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from mastodon_s3_sync_demo.fake_instance.seeding import CACHE_CONTROL, seed_disk

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.transfer.s3 import Bucket
from mastodon_s3_sync.core.tuning import MiB
from mastodon_s3_sync.core.verification import Problem, verify_table
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync.execution.runs import refresh_acls_in_process
from mastodon_s3_sync_tests.support.acl import moderate, public_read
from mastodon_s3_sync_tests.support.buckets import boto, upload_in_parts
from mastodon_s3_sync_tests.support.cli import run_cli
from mastodon_s3_sync_tests.support.migration import make_migration, unique_bucket
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy

pytestmark = pytest.mark.integration  # real servers or Dagster processes

PUBLIC_MODE, PRIVATE_MODE = 0o644, 0o600
"""Under umask 022: Paperclip's ``0666 & ~umask``, and Mastodon's chmod ``0600 & ~umask`` of private media."""


@pytest.fixture
def umask_022():
    """The usual umask, in this process and the command-line runs it starts."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def disk_mode(obj) -> int:
    """The mode Mastodon gives the object's file: backups are private on S3 only, never chmodded on disk."""
    return PRIVATE_MODE if obj.acl_kind == "private" and obj.table != "backups" else PUBLIC_MODE


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wrong_acls(resources, table: str = "media_attachments") -> set[str]:
    """The keys whose file mode ``verify`` reports as the wrong ACL (the rest of it must be right)."""
    result = verify_table(resources["mastodon_db"], TABLES[table], resources["source_s3"], resources["destination_s3"])
    assert result.acl_checked, "a directory keeps ACLs as file modes"
    wrong = {finding.key for finding in result.findings if finding.problem is Problem.WRONG_ACL}
    assert {f.problem for f in result.findings} <= {Problem.WRONG_ACL, Problem.MISSING_AT_SOURCE}, result.findings
    return wrong


def directory_migration(database_url, moto, rclone_destination, environment, root: Path):
    """The fake instance in a bucket (moto), going to the directory ``root``."""
    migration = make_migration(database_url, moto, rclone_destination)  # moto keeps multipart ETags
    root.mkdir()
    variables = {name: value for name, value in migration.environment().items() if not name.startswith("DESTINATION_")}
    environment({**variables, "DESTINATION_PAPERCLIP_ROOT_PATH": str(root), "SYNC_PARTITION_ROWS": "25"})
    return migration


def test_disk_instance_to_a_bucket_through_the_command_line(database_url, moto, tmp_path):
    rails_root = tmp_path / "live"
    instance = seed_disk(database_url, rails_root / "public" / "system")
    env_file = rails_root / ".env.production"
    env_file.write_text(f"LOCAL_DOMAIN=mastodon.example\nDATABASE_URL={database_url}\nS3_ENABLED=false\n")
    bucket = unique_bucket("from-disk")
    boto(moto).create_bucket(Bucket=bucket)
    environment = {
        "MASTODON_ENV_FILE": str(env_file),
        "DESTINATION_S3_BUCKET": bucket,
        "DESTINATION_S3_ENDPOINT": moto.endpoint_url,
        "DESTINATION_S3_REGION": moto.region,
        "DESTINATION_AWS_ACCESS_KEY_ID": moto.access_key,
        "DESTINATION_AWS_SECRET_ACCESS_KEY": moto.secret_key,
        "SYNC_PARTITION_ROWS": "25",
    }

    synced = run_cli("sync", environment=environment, cwd=tmp_path, dagster_home=tmp_path / "home")
    assert synced.returncode == 0, synced.stdout + synced.stderr

    client = boto(moto)
    listed = client.list_objects_v2(Bucket=bucket, MaxKeys=1000)["Contents"]
    assert {item["Key"] for item in listed} == {obj.key for obj in instance.expected}, "no orphan, no probe"
    for obj in instance.expected:
        got = client.get_object(Bucket=bucket, Key=obj.key)
        assert got["Body"].read() == obj.body, obj.key
        assert (got["ContentType"], got["CacheControl"]) == (obj.content_type, CACHE_CONTROL), obj.key
        grants = client.get_object_acl(Bucket=bucket, Key=obj.key)["Grants"]
        assert public_read(grants) == (obj.acl_kind == "permission"), obj.key

    planned = run_cli("plan", environment=environment, cwd=tmp_path, dagster_home=tmp_path / "home")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert f"Media URLs WILL CHANGE: https://mastodon.example/system/... -> {moto.endpoint_url}/{bucket}/..." in (
        planned.stdout.replace("\n", " ")
    )
    assert "location /system/" in planned.stdout, "the nginx rule that keeps the old URLs working"

    verified = run_cli("verify", environment=environment, cwd=tmp_path, dagster_home=tmp_path / "home")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verified: complete" in verified.stdout

    with S3Proxy(moto.endpoint_url) as proxy:  # every partition again, in a Dagster home that never ran one
        again = run_cli(
            "sync",
            environment={**environment, "DESTINATION_S3_ENDPOINT": proxy.endpoint_url},
            cwd=tmp_path,
            dagster_home=tmp_path / "fresh-home",
        )
    assert again.returncode == 0, again.stdout + again.stderr
    assert proxy.completed_puts() == [], "a listing and local reads decide: nothing uploaded again"
    assert not [e for e in proxy.exchanges if e.method == "POST"], "no multipart upload either"


def test_bucket_to_a_directory_through_the_dagster_runs(
    database_url, moto, rclone_destination, environment, sync_once, dagster_instance, tmp_path, umask_022
):
    root = tmp_path / "system"
    migration = directory_migration(database_url, moto, rclone_destination, environment, root)
    video = next(obj for obj in migration.instance.expected if obj.key.endswith(".mp4") and not obj.computed_key)
    video_body = os.urandom(16 * MiB + 7)  # above Mastodon's 15 MB: uploaded in aws-sdk's 5 MiB parts
    upload_in_parts(moto, Bucket(migration.source_bucket), video.key, video_body, 5 * MiB)

    results = sync_once(*TABLES)

    assert all(not result.failed for result in results), [result.failed for result in results]
    files = {path.relative_to(root).as_posix(): path for path in root.rglob("*") if path.is_file()}
    assert set(files) == {obj.key for obj in migration.instance.expected}, "exactly the referenced files"
    for obj in migration.instance.expected:
        assert files[obj.key].read_bytes() == (video_body if obj is video else obj.body), obj.key
    modes = {obj.key: mode_of(files[obj.key]) for obj in migration.instance.expected}
    assert modes == {obj.key: disk_mode(obj) for obj in migration.instance.expected}
    assert {obj.table for obj in migration.instance.expected if modes[obj.key] == PRIVATE_MODE} == {
        "media_attachments"
    }, "suspended accounts' and deleted statuses' media are 0600, as Mastodon chmods them on disk"
    assert any(obj.table == "backups" and modes[obj.key] == PUBLIC_MODE for obj in migration.instance.expected)

    resources = configured()
    for table in TABLES:
        verification = verify_table(
            resources["mastodon_db"], TABLES[table], resources["source_s3"], resources["destination_s3"]
        )
        assert verification.complete, (verification.findings, verification.unproven())
        assert verification.acl_checked, "file modes checked as ACLs"
        assert verification.counts.get("missing_at_source", 0) == len(migration.instance.missing_for(table))

    definitions = build_definitions()
    checks = definitions.resolve_job_def("verify_destination").execute_in_process(
        instance=dagster_instance, raise_on_error=False
    )
    evaluations = [e.event_specific_data for e in checks.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(evaluations) == len(TABLES) and all(evaluation.passed for evaluation in evaluations)
    assert all(evaluation.metadata["acl_checked"].value is True for evaluation in evaluations)

    refresh = refresh_acls_in_process(definitions, dagster_instance)
    assert refresh.error is None and refresh.metadata["destination_keeps_acls"] is True, refresh
    assert {key: mode_of(files[key]) for key in modes} == modes, "the first refresh agrees with the copy"
    checked = run_cli("check", cwd=tmp_path, dagster_home=tmp_path / "home")
    assert checked.returncode == 2 and "DESTINATION_PAPERCLIP_ROOT_PATH names a directory" in checked.stderr

    some = Path(files[migration.instance.expected[0].key])
    some.write_bytes(bytes(some.stat().st_size))  # same size, other content
    broken = verify_table(
        resources["mastodon_db"],
        TABLES[migration.instance.expected[0].table],
        resources["source_s3"],
        resources["destination_s3"],
    )
    wrong = [(finding.key, finding.problem) for finding in broken.findings if finding.problem != "missing_at_source"]
    assert wrong == [(migration.instance.expected[0].key, "wrong_content")], "the local MD5 against the source's"


def test_moderation_reaches_the_file_modes_and_fix_acls_sets_every_one(
    database_url, moto, rclone_destination, environment, sync_once, dagster_instance, tmp_path, umask_022
):
    """A suspension and a moderator deletion after the copy: the ACL refresh chmods their media to
    0600 (nothing copied again) and ``verify`` agrees; modes changed by hand are reported, and
    ``sync --fix-acls`` sets them back."""
    root = tmp_path / "system"
    migration = directory_migration(database_url, moto, rclone_destination, environment, root)
    definitions = build_definitions()
    assert all(not result.failed for result in sync_once(*TABLES, definitions=definitions))
    assert refresh_acls_in_process(definitions, dagster_instance).error is None
    resources = configured()
    assert wrong_acls(resources) == set()

    private = moderate(migration, suspend=1, delete=1)
    assert private and all(mode_of(root / key) == PUBLIC_MODE for key in private)
    assert wrong_acls(resources) == private, "verify reads the modes against the database"
    written = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    refresh = refresh_acls_in_process(definitions, dagster_instance)
    assert refresh.error is None, refresh.error
    assert (refresh.metadata["accounts_suspended_or_unsuspended"], refresh.metadata["statuses_deleted"]) == (1, 1)
    assert all(mode_of(root / key) == PRIVATE_MODE for key in private)
    assert {path: path.stat().st_mtime_ns for path in written} == written, "a chmod: no file written again"
    assert wrong_acls(resources) == set()

    # Objects that neither a partition sync (unchanged rows) nor the ACL refresh looks at again.
    expected = migration.instance.expected
    should_be_private = next(obj.key for obj in expected if disk_mode(obj) == PRIVATE_MODE)
    should_be_public = next(obj.key for obj in expected if obj.table == "media_attachments" and obj.key not in private
                            and disk_mode(obj) == PUBLIC_MODE)  # fmt: skip
    (root / should_be_private).chmod(0o644)
    (root / should_be_public).chmod(0o600)
    assert wrong_acls(resources) == {should_be_private, should_be_public}

    fixed = run_cli("sync", "--fix-acls", dagster_home=dagster_instance.root_directory, cwd=tmp_path, timeout=600)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (mode_of(root / should_be_private), mode_of(root / should_be_public)) == (PRIVATE_MODE, PUBLIC_MODE)
    assert wrong_acls(resources) == set()
    assert all(mode_of(root / obj.key) == PRIVATE_MODE for obj in expected if obj.key in private)
    assert not [line for line in fixed.stdout.splitlines() if line.startswith("ACLs of ") and ", 0 failed" not in line]


def test_a_sync_over_files_already_there_makes_private_what_must_be(
    database_url, moto, rclone_destination, environment, sync_once, tmp_path, umask_022
):
    """Another tool's copy (every file 0644): ``sync`` copies nothing and chmods what Mastodon keeps
    private to 0600 (the copier's make-private path), backups and the rest staying 0644."""
    root = tmp_path / "system"
    migration = directory_migration(database_url, moto, rclone_destination, environment, root)
    expected = migration.instance.expected
    for obj in expected:
        path = root / obj.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(obj.body)
        path.chmod(PUBLIC_MODE)

    results = sync_once(*TABLES)

    assert all(not result.failed and result.copied == 0 for result in results), results
    assert {obj.key: mode_of(root / obj.key) for obj in expected} == {obj.key: disk_mode(obj) for obj in expected}
    assert any(disk_mode(obj) == PRIVATE_MODE for obj in expected)
    assert wrong_acls(configured()) == set()
