"""The moves to and from a disk, end to end against real PostgreSQL, real servers and real files:
a disk instance (its ``.env.production`` without ``S3_ENABLED``) to a bucket that keeps ACLs
(moto), through the command line, and a bucket to a directory, through the Dagster runs; both
end with ``verify`` complete, and a repeated ``sync`` copies nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from mastodon_s3_sync_demo.fake_instance.seeding import CACHE_CONTROL, seed_disk

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.transfer.disk import mastodon_file_mode, process_umask
from mastodon_s3_sync.core.transfer.s3 import Bucket
from mastodon_s3_sync.core.tuning import MiB
from mastodon_s3_sync.core.verification import verify_table
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync.execution.runs import refresh_acls_in_process
from mastodon_s3_sync_tests.support.acl import public_read
from mastodon_s3_sync_tests.support.buckets import boto, upload_in_parts
from mastodon_s3_sync_tests.support.cli import run_cli
from mastodon_s3_sync_tests.support.migration import make_migration, unique_bucket
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy

pytestmark = pytest.mark.integration  # real servers or Dagster processes


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
    database_url, moto, rclone_destination, environment, sync_once, dagster_instance, tmp_path
):
    migration = make_migration(database_url, moto, rclone_destination)  # moto keeps multipart ETags
    video = next(obj for obj in migration.instance.expected if obj.key.endswith(".mp4") and not obj.computed_key)
    video_body = os.urandom(16 * MiB + 7)  # above Mastodon's 15 MB: uploaded in aws-sdk's 5 MiB parts
    upload_in_parts(moto, Bucket(migration.source_bucket), video.key, video_body, 5 * MiB)
    root = tmp_path / "system"
    root.mkdir()
    variables = {name: value for name, value in migration.environment().items() if not name.startswith("DESTINATION_")}
    environment({**variables, "DESTINATION_PAPERCLIP_ROOT_PATH": str(root), "SYNC_PARTITION_ROWS": "25"})

    results = sync_once(*TABLES)

    assert all(not result.failed for result in results), [result.failed for result in results]
    files = {path.relative_to(root).as_posix(): path for path in root.rglob("*") if path.is_file()}
    assert set(files) == {obj.key for obj in migration.instance.expected}, "exactly the referenced files"
    mode = mastodon_file_mode(process_umask())
    for obj in migration.instance.expected:
        assert files[obj.key].read_bytes() == (video_body if obj is video else obj.body), obj.key
        assert stat.S_IMODE(files[obj.key].stat().st_mode) == mode, obj.key

    resources = configured()
    for table in TABLES:
        verification = verify_table(
            resources["mastodon_db"], TABLES[table], resources["source_s3"], resources["destination_s3"]
        )
        assert verification.complete, (verification.findings, verification.unproven())
        assert not verification.acl_applicable, "a file has no ACL: not applicable, not unchecked"
        assert verification.counts.get("missing_at_source", 0) == len(migration.instance.missing_for(table))

    definitions = build_definitions()
    checks = definitions.resolve_job_def("verify_destination").execute_in_process(
        instance=dagster_instance, raise_on_error=False
    )
    evaluations = [e.event_specific_data for e in checks.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(evaluations) == len(TABLES) and all(evaluation.passed for evaluation in evaluations)
    assert all(evaluation.metadata["acl_applicable"].value is False for evaluation in evaluations)

    refresh = refresh_acls_in_process(definitions, dagster_instance)
    assert refresh.error is None and refresh.metadata == {}, "a directory: no ACL to refresh, and no failure"
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
