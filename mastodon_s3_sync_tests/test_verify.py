"""``verify`` finds each kind of damage on a destination broken on purpose (moto: ACLs are real)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

from dagster import AssetCheckKey, AssetKey

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.verification import Problem, verify_table
from mastodon_s3_sync.definitions.checks import CHECK_NAME
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync_tests.support.migration import make_migration


def damage(migration):
    """Break four public media objects, one way each; return {problem: key}."""
    client = migration.destination.client()
    bucket = migration.destination_bucket
    public = [
        o
        for o in migration.instance.expected_for("media_attachments")
        if o.acl_kind == "permission" and not o.computed_key
    ]
    deleted, retyped, unshared, truncated = (o.key for o in public[:4])
    client.delete_object(Bucket=bucket, Key=deleted)
    client.copy_object(
        Bucket=bucket, Key=retyped, CopySource={"Bucket": bucket, "Key": retyped}, MetadataDirective="REPLACE",
        ContentType="application/octet-stream", CacheControl="public, max-age=315576000, immutable", ACL="public-read",
    )  # fmt: skip
    client.put_object_acl(Bucket=bucket, Key=unshared, ACL="private")
    client.put_object(Bucket=bucket, Key=truncated, Body=b"short", ContentType="image/jpeg", ACL="public-read")
    return {
        Problem.MISSING_AT_DESTINATION: deleted,
        Problem.WRONG_HEADERS: retyped,
        Problem.WRONG_ACL: unshared,
        Problem.WRONG_SIZE: truncated,
    }


def test_verify_reports_each_kind_of_damage(
    database_url, rclone_source, moto, dagster_instance, environment, tmp_path, sync_once
):
    migration = make_migration(database_url, rclone_source, moto)
    environment({**migration.environment(), "SYNC_PARTITION_ROWS": "50"})
    resources = configured()
    definitions = build_definitions()
    [synced] = sync_once("media_attachments", definitions=definitions)
    assert not synced.failed

    clean = verify_table(
        resources["mastodon_db"], TABLES["media_attachments"], resources["source_s3"], resources["destination_s3"]
    )
    assert clean.complete and clean.acl_checked

    broken = damage(migration)
    result = verify_table(
        resources["mastodon_db"], TABLES["media_attachments"], resources["source_s3"], resources["destination_s3"]
    )
    found = {
        finding.problem: finding.key for finding in result.findings if finding.problem is not Problem.MISSING_AT_SOURCE
    }
    assert found == broken
    assert result.counts[Problem.MISSING_AT_SOURCE] == len(migration.instance.missing_for("media_attachments"))
    assert not result.complete

    # the CLI: a report, a non-zero exit, and every problem key in the output file
    for output in (tmp_path / "problems.csv", tmp_path / "problems.jsonl"):
        cli = subprocess.run(
            [sys.executable, "-m", "mastodon_s3_sync", "verify", "media_attachments", "--output", str(output)],
            env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}, cwd=tmp_path,
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert cli.returncode == 1, cli.stderr
        assert "verified: INCOMPLETE" in cli.stdout
        if output.suffix == ".csv":
            rows = list(csv.DictReader(output.open()))
        else:
            rows = [json.loads(line) for line in output.read_text().splitlines()]
        exported = {Problem(row["problem"]): row["key"] for row in rows if row["problem"] != "missing_at_source"}
        assert exported == broken

    # the asset check turns red the same way
    check = definitions.resolve_job_def("verify_destination").execute_in_process(
        instance=dagster_instance, raise_on_error=False
    )
    evaluations = {
        event.asset_check_evaluation_data.asset_check_key: event.asset_check_evaluation_data
        for event in check.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    media_check = evaluations[AssetCheckKey(asset_key=AssetKey("media_attachments"), name=CHECK_NAME)]
    assert not media_check.passed
    assert media_check.metadata["wrong_acl"].value == 1
