"""ACLs right whatever the timing: a copy and a refresh interleaved step by step (a PUT held at
the proxy while the database changes), a suspension between the plan and the copy, a retried
copy step. The destination's ACL ends as Mastodon would set it now."""

from __future__ import annotations

import dataclasses
import threading
from functools import partial
from urllib.parse import unquote

import pytest

from mastodon_s3_sync.core.acl_refresh import AclState, refresh_acls
from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.copying import copy_objects
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.referenced_objects import current_acls, referenced_objects
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync_tests.support.acl import is_public
from mastodon_s3_sync_tests.support.database import run_statement
from mastodon_s3_sync_tests.support.migration import make_migration
from mastodon_s3_sync_tests.support.s3_proxy import S3Proxy

pytestmark = pytest.mark.integration

MEDIA = "media_attachments"
TABLE = TABLES[MEDIA]


class HeldPut:
    """A proxy ``hold`` for the first body PUT of ``key``: ``reached`` once it arrives, forwarded
    once ``release`` is set."""

    def __init__(self, key: str):
        self.key = key
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, method: str, path: str, query: str) -> threading.Event | None:
        if method == "PUT" and not query and not self.reached.is_set() and unquote(path.split("/", 2)[-1]) == self.key:
            self.reached.set()
            return self.release
        return None


@pytest.fixture
def live(database_url, rclone_source, moto, environment):
    with S3Proxy(moto.endpoint_url) as proxy:
        migration = make_migration(
            database_url, rclone_source, dataclasses.replace(moto, endpoint_url=proxy.endpoint_url)
        )
        environment({**migration.environment(), "SYNC_PARTITION_ROWS": "50"})
        yield migration, configured(), proxy


def public_media(migration) -> list:
    """The media objects that are public now, in the batch's (id) order."""
    return sorted(
        (o for o in migration.instance.expected_for(MEDIA) if o.acl_kind == "permission"), key=lambda o: o.row_id
    )


def account_of(migration, row_id: int) -> int:
    return next(row["account_id"] for row in migration.instance.rows[MEDIA] if row["id"] == row_id)


def keys_of_account(migration, account: int) -> set[str]:
    rows = {row["id"] for row in migration.instance.rows[MEDIA] if row["account_id"] == account}
    return {o.key for o in migration.instance.expected_for(MEDIA) if o.row_id in rows}


def suspend(migration, account: int) -> None:
    run_statement(
        migration.database_url, "UPDATE accounts SET suspended_at = now() AT TIME ZONE 'UTC' WHERE id = %s", (account,)
    )


def public_keys(migration, keys: set[str]) -> set[str]:
    client = migration.destination.client()
    return {key for key in keys if is_public(client, migration.destination_bucket, key)}


def test_a_copy_that_lands_after_the_refresh_looked_is_made_private_by_the_next_refresh(live):
    migration, resources, proxy = live
    database, source, destination = resources["mastodon_db"], resources["source_s3"], resources["destination_s3"]
    objects = list(referenced_objects(database, TABLE, "public-read"))
    held = public_media(migration)[0]
    account = account_of(migration, held.row_id)
    seen = refresh_acls(database, destination, AclState(), None).state
    proxy.hold = hold = HeldPut(held.key)
    copy = threading.Thread(target=copy_objects, args=(objects, source, destination, TransferSettings()))
    copy.start()
    assert hold.reached.wait(60), "the copy PUTs the object"

    suspend(migration, account)  # while its PUT, with the ACL read before, is on its way
    during = refresh_acls(database, destination, seen, seen.checked_at)
    assert during.changed_accounts == 1 and during.not_at_destination >= 1, "the held object is not there yet"
    hold.release.set()
    copy.join(120)
    assert public_keys(migration, {held.key}) == {held.key}, "the stale copy landed public"

    after = refresh_acls(database, destination, during.state, during.state.checked_at)
    assert public_keys(migration, keys_of_account(migration, account)) == set()
    assert after.changed_accounts == 0 and after.reasserted_accounts >= 1


def test_a_suspension_after_the_plan_reaches_the_copy(live):
    """plan -> suspend -> copy: the copy reads the ACLs from the database, not from the plan."""
    migration, resources, proxy = live
    database, source, destination = resources["mastodon_db"], resources["source_s3"], resources["destination_s3"]
    objects = list(referenced_objects(database, TABLE, "public-read"))
    account = account_of(migration, public_media(migration)[0].row_id)
    suspend(migration, account)
    report = copy_objects(
        objects, source, destination, TransferSettings(), acls_now=partial(current_acls, database, TABLE, "public-read")
    )
    assert not report.failed
    keys = keys_of_account(migration, account)
    assert keys and public_keys(migration, keys) == set()


@pytest.mark.parametrize("max_age, stays_public", [(0.0, False), (300.0, True)])
def test_no_put_starts_with_an_acl_older_than_the_bound(live, max_age, stays_public):
    """One request in flight at each end, so two objects at once (one reading, one writing): the
    first object's PUT is held, the second's waits for the destination behind it, and the third
    starts only once they are done, after its account was suspended meanwhile. Past
    ``acl_max_age`` it reads its ACL again; within it, it may not."""
    migration, resources, proxy = live
    database, source, destination = resources["mastodon_db"], resources["source_s3"], resources["destination_s3"]
    objects = list(referenced_objects(database, TABLE, "public-read"))
    position = next(
        index
        for index, o in enumerate(objects[2:], start=2)
        if o.acl == "public-read"
        and account_of(migration, o.row_id)
        not in {account_of(migration, objects[index - 1].row_id), account_of(migration, objects[index - 2].row_id)}
    )
    later, earlier = objects[position], objects[position - 2]
    account = account_of(migration, later.row_id)
    proxy.hold = hold = HeldPut(earlier.key)
    settings = TransferSettings(concurrency=1, max_in_flight_per_endpoint=1, acl_max_age=max_age)
    copy = threading.Thread(
        target=copy_objects,
        args=(objects[position - 2 :], source, destination, settings),
        kwargs={"acls_now": partial(current_acls, database, TABLE, "public-read")},
    )
    copy.start()
    assert hold.reached.wait(60)
    suspend(migration, account)
    hold.release.set()
    copy.join(120)
    assert public_keys(migration, {later.key}) == ({later.key} if stays_public else set())


def test_a_retried_copy_step_reads_the_acls_again(live, sync_once):
    """The first attempt of the copy step fails on one object, and its account is suspended at
    that moment; the step's retry reuses the plan's batch, but not its ACLs."""
    migration, _, proxy = live
    failed_once = public_media(migration)[0]
    account = account_of(migration, failed_once.row_id)

    def intercept(method: str, path: str, query: str):
        if method == "PUT" and not query and unquote(path.split("/", 2)[-1]) == failed_once.key and not intercepted:
            intercepted.append(path)
            suspend(migration, account)
            return 400, "InvalidRequest", "refused once by the test"
        return None

    intercepted: list[str] = []
    proxy.intercept = intercept
    [result] = sync_once(MEDIA)
    assert intercepted and not result.failed
    assert public_keys(migration, {failed_once.key}) == set()
