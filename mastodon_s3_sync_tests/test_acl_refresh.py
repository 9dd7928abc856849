"""ACL changes after the copy (a status deleted by a moderator, an account suspended, an account
unsuspended) reach the destination through PutObjectAcl alone: no object body is PUT again,
``verify`` reports them before and is clean after; through ``sync`` and through the Dagster job
that the ACL schedule launches."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest
from dagster import build_schedule_context

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.verification import Problem, verify_table
from mastodon_s3_sync.definitions.acl_refresh import build_acl_refresh_schedule, state_key
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync.execution.runs import refresh_acls_in_process
from mastodon_s3_sync_tests.support.acl import is_public, moderate
from mastodon_s3_sync_tests.support.cli import run_cli
from mastodon_s3_sync_tests.support.database import run_statement
from mastodon_s3_sync_tests.support.migration import make_migration
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy

pytestmark = pytest.mark.integration

MEDIA = "media_attachments"


def wrong_acls(resources) -> set[str]:
    result = verify_table(resources["mastodon_db"], TABLES[MEDIA], resources["source_s3"], resources["destination_s3"])
    assert result.acl_checked
    return {finding.key for finding in result.findings if finding.problem is Problem.WRONG_ACL}


@pytest.fixture
def synced(database_url, rclone_source, moto, dagster_instance, environment, sync_once):
    """The fake instance's media synced to moto, through a proxy that records every request."""
    with S3Proxy(moto.endpoint_url) as proxy:
        destination = dataclasses.replace(moto, endpoint_url=proxy.endpoint_url)
        migration = make_migration(database_url, rclone_source, destination)
        environment({**migration.environment(), "SYNC_PARTITION_ROWS": "50"})
        definitions = build_definitions()
        resources = configured()
        [result] = sync_once(MEDIA, definitions=definitions)
        assert not result.failed
        first = refresh_acls_in_process(definitions, dagster_instance)
        assert first.error is None
        assert wrong_acls(resources) == set()
        yield migration, definitions, resources, proxy


def change_acls_in_mastodon(migration) -> dict[str, bool]:
    """Delete a status, suspend an account, unsuspend another, as Mastodon's moderation does;
    returns {destination key: whether it must now be public}."""
    instance = migration.instance
    rows = {row["id"]: row for row in instance.rows[MEDIA]}
    public = [o for o in instance.expected_for(MEDIA) if o.acl_kind == "permission"]
    statuses = {row["status_id"] for row in instance.rows[MEDIA] if row["status_id"]}
    accounts = {row["account_id"] for row in instance.rows[MEDIA]}
    suspended = {a["id"] for a in instance.rows["accounts"] if a["suspended_at"] is not None}
    deleted = {s["id"] for s in instance.statuses if s["deleted_at"] is not None}

    status_to_delete = next(rows[o.row_id]["status_id"] for o in public if rows[o.row_id]["status_id"])
    account_to_suspend = next(
        rows[o.row_id]["account_id"]
        for o in public
        if rows[o.row_id]["status_id"] != status_to_delete and rows[o.row_id]["account_id"] not in suspended
    )
    account_to_unsuspend = next(a for a in sorted(suspended) if a in accounts)
    run_statement(
        migration.database_url,
        "UPDATE statuses SET deleted_at = now() AT TIME ZONE 'UTC' WHERE id = %s",
        (status_to_delete,),
    )
    run_statement(
        migration.database_url,
        "UPDATE accounts SET suspended_at = now() AT TIME ZONE 'UTC' WHERE id = %s",
        (account_to_suspend,),
    )
    run_statement(
        migration.database_url, "UPDATE accounts SET suspended_at = NULL WHERE id = %s", (account_to_unsuspend,)
    )
    assert status_to_delete in statuses

    suspended = (suspended | {account_to_suspend}) - {account_to_unsuspend}
    deleted = deleted | {status_to_delete}
    expected = {}
    for obj in instance.expected_for(MEDIA):
        row = rows[obj.row_id]
        private = row["account_id"] in suspended or row["status_id"] in deleted
        expected[obj.key] = not private
    return expected


def assert_acls(migration, expected: dict[str, bool]) -> None:
    client = migration.destination.client()
    actual = {key: is_public(client, migration.destination_bucket, key) for key in expected}
    assert actual == expected


def body_puts(proxy: S3Proxy, since: int) -> list[str]:
    return [e.key for e in proxy.exchanges[since:] if e.method in ("PUT", "POST") and "acl" not in e.query]


def acl_puts(proxy: S3Proxy, since: int) -> list[str]:
    return [e.key for e in proxy.exchanges[since:] if e.method == "PUT" and e.query == "acl=" and e.status == 200]


def test_sync_brings_acl_changes_without_copying_bodies(synced, dagster_instance, sync_once):
    migration, definitions, resources, proxy = synced
    expected = change_acls_in_mastodon(migration)
    changed = {key for key, public in expected.items() if public != is_public(
        migration.destination.client(), migration.destination_bucket, key)}  # fmt: skip
    assert changed, "the changes touch copied objects"
    assert wrong_acls(resources) == changed, "verify sees every changed ACL before the refresh"

    before = len(proxy.exchanges)
    [again] = sync_once(MEDIA, definitions=definitions)
    refresh = refresh_acls_in_process(definitions, dagster_instance)
    assert not again.failed and refresh.error is None
    assert body_puts(proxy, before) == [], "no object body is copied again"
    assert changed <= set(acl_puts(proxy, before))
    assert refresh.metadata["acls_set"] == len(acl_puts(proxy, before))
    assert refresh.metadata["accounts_suspended_or_unsuspended"] == 2
    assert refresh.metadata["statuses_deleted"] == 1
    assert_acls(migration, expected)
    assert wrong_acls(resources) == set()

    quiet = len(proxy.exchanges)
    again = refresh_acls_in_process(definitions, dagster_instance).metadata
    assert (again["accounts_suspended_or_unsuspended"], again["statuses_deleted"]) == (0, 0)
    # Within the overlap, set again: the 2 changed accounts, the deleted status, and the accounts the
    # first refresh found suspended (less the one unsuspended since), which it counted as changes.
    suspended_at_first = sum(1 for account in migration.instance.rows["accounts"] if account["suspended_at"])
    assert (again["accounts_reasserted"], again["statuses_reasserted"]) == (2 + suspended_at_first - 1, 1)
    assert changed <= set(acl_puts(proxy, quiet)) and again["acls_set"] == len(acl_puts(proxy, quiet))
    assert body_puts(proxy, quiet) == []


def test_acl_schedule_launches_the_refresh(synced, dagster_instance):
    migration, definitions, resources, proxy = synced
    expected = change_acls_in_mastodon(migration)
    schedule = build_acl_refresh_schedule("*/15 * * * *")
    [request] = schedule.evaluate_tick(build_schedule_context(instance=dagster_instance)).run_requests
    job = definitions.resolve_job_def(schedule.job_name)
    before = len(proxy.exchanges)
    assert job.execute_in_process(instance=dagster_instance, tags=request.tags).success
    assert body_puts(proxy, before) == []
    assert_acls(migration, expected)
    assert wrong_acls(resources) == set()


def test_cli_sync_prints_the_acl_summary(synced, dagster_instance):
    migration, _, resources, _ = synced
    expected = change_acls_in_mastodon(migration)
    result = cli_sync(dagster_instance)
    assert result.returncode == 0, result.stderr
    line = acl_line(result)
    assert line.endswith("(2 accounts suspended or unsuspended, 1 statuses deleted since the last refresh)"), line
    assert_acls(migration, expected)
    assert wrong_acls(resources) == set()


def test_a_destination_without_acls_is_never_sent_put_acl(
    database_url, rclone_source, rclone_destination, dagster_instance, environment, sync_once
):
    """rclone's server takes ``PUT ?acl`` for a PutObject and empties the object: the refresh must
    ask first, and leave every object as it is."""
    with S3Proxy(rclone_destination.endpoint_url) as proxy:
        destination = dataclasses.replace(rclone_destination, endpoint_url=proxy.endpoint_url)
        migration = make_migration(database_url, rclone_source, destination)
        environment(migration.environment())
        definitions = build_definitions()
        resources = configured()
        [result] = sync_once(MEDIA, definitions=definitions)
        assert not result.failed
        change_acls_in_mastodon(migration)
        before = len(proxy.exchanges)
        refresh = refresh_acls_in_process(definitions, dagster_instance)
        assert refresh.error is None
        assert refresh.metadata["destination_keeps_acls"] is False
        assert refresh.metadata["acls_set"] == 0
        assert [e for e in proxy.exchanges[before:] if e.method == "PUT"] == []
        verification = verify_table(
            resources["mastodon_db"], TABLES[MEDIA], resources["source_s3"], resources["destination_s3"]
        )
        assert verification.complete and not verification.acl_checked


def get_bucket_acl_answered(proxy: S3Proxy, bucket: str, times: int | None, error: tuple[int, str, str]):
    """An ``intercept`` answering the first ``times`` GetBucketAcl (all of them with None) with ``error``."""
    answered = []

    def intercept(method: str, path: str, query: str):
        if method == "GET" and query.startswith("acl") and path.strip("/") == bucket:
            if times is None or len(answered) < times:
                answered.append(path)
                return error
        return None

    proxy.intercept = intercept
    return answered


def cli_sync(dagster_instance) -> subprocess.CompletedProcess:
    return run_cli("sync", MEDIA, dagster_home=dagster_instance.root_directory)


def acl_line(result: subprocess.CompletedProcess) -> str:
    [line] = [line for line in result.stdout.splitlines() if line.startswith("ACLs: ")]
    return line


def test_a_503_on_the_acl_probe_is_retried_not_read_as_no_acls(synced, dagster_instance):
    """The issue's report: after 2 suspensions and 3 moderator deletions, one 503 on GetBucketAcl
    made `sync` print "keeps no ACLs", exit 0 and leave the media public for good."""
    migration, _, resources, proxy = synced
    private = moderate(migration, suspend=2, delete=3)
    answered = get_bucket_acl_answered(
        proxy, migration.destination_bucket, times=1, error=(503, "ServiceUnavailable", "Please try again.")
    )
    result = cli_sync(dagster_instance)
    assert result.returncode == 0, result.stdout + result.stderr
    assert answered, "the probe met the 503"
    assert "keeps no ACLs" not in acl_line(result)
    assert acl_line(result).endswith("(2 accounts suspended or unsuspended, 3 statuses deleted since the last refresh)")
    client = migration.destination.client()
    assert {key for key in private if is_public(client, migration.destination_bucket, key)} == set()
    assert wrong_acls(resources) == set()


def test_a_lasting_5xx_fails_sync_and_the_next_sync_applies_every_change(synced, dagster_instance):
    migration, _, resources, proxy = synced
    private = moderate(migration, suspend=2, delete=3)
    key = state_key(resources["destination_s3"])
    state_before = dagster_instance.run_storage.get_cursor_values({key})[key]
    # A lasting 500 (a lasting 503 is throttling: retried for minutes before the same failure)
    get_bucket_acl_answered(proxy, migration.destination_bucket, times=None, error=(500, "InternalError", "Oops."))

    failed = cli_sync(dagster_instance)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert acl_line(failed).startswith(
        f"ACLs: not refreshed: cannot tell whether bucket '{migration.destination_bucket}' at "
    ), acl_line(failed)
    assert "GetBucketAcl answered 500 InternalError; nothing was changed, try again" in acl_line(failed)
    assert dagster_instance.run_storage.get_cursor_values({key})[key] == state_before, "no state advanced"
    client = migration.destination.client()
    assert {key for key in private if is_public(client, migration.destination_bucket, key)} == private

    proxy.intercept = None
    fixed = cli_sync(dagster_instance)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert acl_line(fixed).endswith("(2 accounts suspended or unsuspended, 3 statuses deleted since the last refresh)")
    assert {key for key in private if is_public(client, migration.destination_bucket, key)} == set()
    assert wrong_acls(resources) == set()
