"""``verify`` says complete only with proof: of every present object's content (ETags, a stored
whole-body MD5, or ``--deep``) and ACL, with what it could not prove shown; it stops on an empty
source as ``sync`` does, and looks fallback keys up by listing."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import time

from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey
from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk

from mastodon_s3_sync.cli.render import print_view, verify_table_view
from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.transfer.batch import CopyItem, Outcome, TransferSettings
from mastodon_s3_sync.core.transfer.engine import copy_batch
from mastodon_s3_sync.core.tuning import MiB
from mastodon_s3_sync.core.verification import PROVE_COMMAND, VERIFY_BATCH, Problem, verify_table
from mastodon_s3_sync.definitions.checks import CHECK_NAME
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync_tests.support.buckets import upload_in_parts
from mastodon_s3_sync_tests.support.migration import make_migration, unique_bucket
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy


def public_originals(migration, count: int) -> list[str]:
    public = [
        o.key
        for o in migration.instance.expected_for("media_attachments")
        if o.acl_kind == "permission" and not o.computed_key and "/original/" in o.key
    ]
    return public[:count]


def check_evaluation(definitions, instance):
    run = definitions.resolve_job_def("verify_destination").execute_in_process(instance=instance, raise_on_error=False)
    evaluations = {
        event.asset_check_evaluation_data.asset_check_key: event.asset_check_evaluation_data
        for event in run.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    return evaluations[AssetCheckKey(asset_key=AssetKey("media_attachments"), name=CHECK_NAME)]


def test_multipart_copies_are_proven_without_download_and_the_unproven_are_shown(
    database_url, moto, dagster_instance, environment, capsys
):
    """Source and destination on moto (multipart ETags kept). Mastodon's own multipart upload (no MD5
    stated) is copied with its part layout, so the ETags agree; one that rclone copied (md5chksum) is
    proven by the md5chksum the copy stores. Objects another tool put in other parts are unproven until
    ``--deep``, which hashes only the source when the destination states an MD5."""
    migration = make_migration(database_url, moto, moto)
    environment(migration.environment())
    resources = configured()
    source, destination = resources["source_s3"], resources["destination_s3"]
    mastodons, rclones, other_tool, other_tool_stating = public_originals(migration, 4)
    bodies = {key: os.urandom(17 * MiB + index) for index, key in enumerate(public_originals(migration, 4))}
    source_bucket = source.engine_bucket()
    for key, body in bodies.items():
        stated = {"Metadata": {"md5chksum": base64.b64encode(hashlib.md5(body).digest()).decode()}}
        upload_in_parts(moto, source_bucket, key, body, 6 * MiB, **(stated if key == rclones else {}))
    expected = migration.instance.expected_by_key()
    items = [
        CopyItem(k, k, o.acl("public-read")) for k, o in expected.items() if k not in (other_tool, other_tool_stating)
    ]
    # (one endpoint, one limiter: fewer copies at once than requests in flight, or GETs hold every slot)
    settings = TransferSettings(server_side_copy=False, concurrency=16)
    copied = copy_batch(source_bucket, destination.engine_bucket(), items, settings)
    assert {item.outcome for item in copied.results} == {Outcome.COPIED}
    for key in (other_tool, other_tool_stating):  # another tool's copies: 5 MiB parts
        extra = {"Metadata": {"md5chksum": base64.b64encode(hashlib.md5(bodies[key]).digest()).decode()}}
        upload_in_parts(
            moto, destination.engine_bucket(), key, bodies[key], 5 * MiB, ACL="public-read",
            **(extra if key == other_tool_stating else {}),
        )  # fmt: skip

    def verify(deep: bool = False, thorough: bool = True):
        return verify_table(
            resources["mastodon_db"], TABLES["media_attachments"], source, destination, deep=deep, thorough=thorough
        )

    shallow = verify()
    assert shallow.wrong == 0 and shallow.content_unproven == 2 and shallow.downloaded == 0
    assert not shallow.complete
    assert shallow.unproven() == [
        f"media_attachments: content not proven for 2 objects (neither their ETags nor a stored MD5 compare); "
        f"`{PROVE_COMMAND}` downloads and hashes them"
    ]
    assert verify(thorough=False).content_unproven == 2  # the partition check: the same proof, by HEAD
    print_view(verify_table_view([shallow]))
    table = capsys.readouterr().out
    assert "unproven" in table and "│        2 │" in table

    deep = verify(deep=True)
    assert deep.complete and deep.content_unproven == 0
    assert deep.downloaded == 2 + 1  # both sides where neither states an MD5; the source alone where it does

    check = check_evaluation(build_definitions(), dagster_instance)
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["content_unproven"].value == 2
    assert PROVE_COMMAND in check.description


def test_acl_reads_are_retried_and_the_unread_reported(database_url, rclone_source, moto, environment, sync_once):
    """A 500 to the first GetObjectAcl is retried (ACL checks stay on, a wrong ACL is still found);
    an object whose ACL cannot be read at all is counted, and the verdict is not "complete"."""
    migration = make_migration(database_url, rclone_source, moto)
    environment({**migration.environment(), "SYNC_PARTITION_ROWS": "50"})
    resources = configured()
    [synced] = sync_once("media_attachments")
    assert not synced.failed
    unshared, unreadable = public_originals(migration, 2)
    moto.client().put_object_acl(Bucket=migration.destination_bucket, Key=unshared, ACL="private")
    acl_reads: list[str] = []

    def intercept(method: str, path: str, query: str):
        if method != "GET" or query not in ("acl", "acl=") or path.rstrip("/").count("/") < 2:
            return None  # not a GetObjectAcl
        acl_reads.append(path)
        if len(acl_reads) == 1 or path.endswith(unreadable):
            return 500, "InternalError", "We encountered an internal error. Please try again."
        return None

    with S3Proxy(moto.endpoint_url, intercept=intercept) as proxy:
        destination = dataclasses.replace(resources["destination_s3"], endpoint_url=proxy.endpoint_url)
        result = verify_table(
            resources["mastodon_db"], TABLES["media_attachments"], resources["source_s3"], destination
        )

    assert result.acl_checked
    assert [(f.problem, f.key) for f in result.findings if f.problem is Problem.WRONG_ACL] == [
        (Problem.WRONG_ACL, unshared)
    ]
    assert result.acl_unreadable == 1
    assert sum(path.endswith(unreadable) for path in acl_reads) == 5  # every try of with_retries
    assert "media_attachments: ACLs not checked for 1 objects (GetObjectAcl failed)" in result.unproven()
    assert not result.complete


def test_verify_on_an_empty_source_stops_at_once_with_one_line(
    database_url, rclone_source, moto, environment, tmp_path
):
    """More than one batch of rows, all their objects missing (a misnamed bucket): the first batch says so."""
    migration = make_migration(database_url, rclone_source, moto)
    seed_bulk(database_url, rclone_source.client(), migration.source_bucket, rows=1100)
    empty = unique_bucket("empty-source")
    rclone_source.create_bucket(empty)
    environment({**migration.environment(), "SOURCE_S3_BUCKET": empty})
    started = time.monotonic()
    cli = subprocess.run(
        [sys.executable, "-m", "mastodon_s3_sync", "verify", "media_attachments"],
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}, cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert cli.returncode == 2, cli.stderr
    *progress, line = cli.stderr.strip().splitlines()  # the progress line, then the error
    assert not any("error" in earlier for earlier in progress)
    stopped = re.match(
        r"error: media_attachments: most referenced objects are missing at the source: (\d+) of (\d+) ", line
    )
    assert stopped and stopped[1] == stopped[2] and int(stopped[1]) <= VERIFY_BATCH  # after the first batch
    assert line.endswith("set SYNC_ACCEPT_MISSING=true (`verify --accept-missing`)")
    assert "verified" not in cli.stdout
    assert elapsed < 60


def test_fallback_keys_are_listed_not_looked_up_one_by_one(database_url, rclone_source, moto, environment):
    """The drift objects (only under the other cache/ variant) are found by a listing: no HEAD at all in
    the listing-based check, and the same verdict as the thorough one."""
    migration = make_migration(database_url, rclone_source, moto)
    environment(migration.environment())
    resources = configured()
    source = resources["source_s3"]
    keys = [item["Key"] for item in rclone_source.client().list_objects_v2(Bucket=migration.source_bucket)["Contents"]]
    copy_batch(source.engine_bucket(), resources["destination_s3"].engine_bucket(), [CopyItem(k, k) for k in keys])
    drift = [o for table in TABLES for o in migration.instance.expected_for(table) if o.computed_key]
    assert drift

    with S3Proxy(rclone_source.endpoint_url) as proxy:
        through_proxy = dataclasses.replace(source, endpoint_url=proxy.endpoint_url)
        results = [
            verify_table(
                resources["mastodon_db"], TABLES[table], through_proxy, resources["destination_s3"], thorough=False
            )
            for table in TABLES
        ]
    assert all(result.complete for result in results), [r.counts for r in results]
    assert [e for e in proxy.exchanges if e.method == "HEAD"] == []
