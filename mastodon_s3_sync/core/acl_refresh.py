"""Keep destination ACLs equal to what Mastodon would set now, without copying bodies again.

Suspending or unsuspending an account, and a moderator deleting a status (kept
with ``deleted_at``), change which ``media_attachments`` objects are private,
but touch no media row, so neither a partition re-sync nor the changed-rows
scan sees them. This module finds the media whose expected ACL may have
changed lately and sets it with PutObjectAcl (on a directory, a chmod: ``DiskEnd.put_acl``):

- accounts: the set of suspended account ids, compared with the set the last
  refresh saw (newly suspended and unsuspended accounts are the symmetric
  difference). One pass over ``accounts`` (Mastodon has no index on
  ``suspended_at``): a few seconds at 5 million accounts; the set itself is
  small (suspended accounts) and kept in the Dagster instance between runs.
- statuses: those deleted since the last refresh, through Mastodon's partial
  index ``index_statuses_on_deleted_at`` (``WHERE deleted_at IS NOT NULL``).
  Mastodon never restores a deleted status.
- their media rows, through ``index_media_attachments_on_account_id_and_status_id``
  and ``index_media_attachments_on_status_id``.

Every change is re-asserted for ``SYNC_CHANGE_OVERLAP_MINUTES`` after it: statuses whose
``deleted_at`` is within that much before the last refresh (a deletion stamped by a slow app
clock, or committed after the last refresh read, is still found), and accounts whose
suspension changed within that much of the refresh that first saw it (kept in ``AclState``).
That also catches a copy that raced a refresh: an object that was not at the destination
when a refresh looked, and then landed with an ACL read before the change (the copy reads its
ACLs from the database at most ``TransferSettings.acl_max_age`` before each PUT), is set by
the next refresh.

The expected ACL is derived from the database (``MediaTable.acl_for``), not
from what Mastodon last wrote: media of a deleted-but-kept status stay private
after its account is unsuspended, although Mastodon's UnsuspendAccountService
makes them public again.

``fix_all_acls`` sets the ACL of every referenced object (``sync --fix-acls``): for a
destination filled by another tool, whose ACLs nothing here has set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from mastodon_s3_sync.core.acl_support import probe_acl_support
from mastodon_s3_sync.core.buckets import DestinationBucket, DestinationDirectory
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.mastodon.tables import TABLES, MediaObject, MediaTable
from mastodon_s3_sync.core.referenced_objects import ObjectProblem, referenced_objects
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.core.transfer.disk import DiskEnd
from mastodon_s3_sync.core.transfer.engine import open_clients, run_async
from mastodon_s3_sync.core.transfer.retries import NETWORK_ERRORS, with_retries
from mastodon_s3_sync.core.transfer.s3 import S3Client, S3Error

MEDIA = TABLES["media_attachments"]
ID_CHUNK = 10_000
"""Account or status ids per media query."""
ACL_BATCH = 1_000
"""Objects read from the database before their ACLs are set."""


@dataclass
class AclState:
    """What the last refresh saw: suspended accounts, and the database clock it read them at."""

    checked_at: datetime | None = None
    suspended_account_ids: frozenset[int] = frozenset()
    recent_account_changes: dict[int, datetime] = field(default_factory=dict)
    """Accounts whose suspension changed within the overlap -> the database time a refresh first saw it."""

    def dumps(self) -> str:
        return json.dumps(
            {
                "checked_at": self.checked_at.isoformat() if self.checked_at else None,
                "suspended_account_ids": sorted(self.suspended_account_ids),
                "recent_account_changes": {
                    str(account): seen.isoformat() for account, seen in sorted(self.recent_account_changes.items())
                },
            }
        )

    @classmethod
    def loads(cls, text: str | None) -> AclState:
        """Also reads the state of versions that kept no ``recent_account_changes``."""
        if not text:
            return cls()
        data = json.loads(text)
        checked_at = datetime.fromisoformat(data["checked_at"]) if data["checked_at"] else None
        recent = {int(account): datetime.fromisoformat(seen) for account, seen in data.get(
            "recent_account_changes", {}).items()}  # fmt: skip
        return cls(checked_at, frozenset(data["suspended_account_ids"]), recent)


@dataclass
class AclWrites:
    """What setting a stream of objects' ACLs did."""

    objects_checked: int = 0
    acls_set: int = 0
    """PutObjectAcl requests that changed (or re-asserted) an object's ACL."""
    not_at_destination: int = 0
    destination_keeps_acls: bool = True
    """False when the destination server keeps no ACLs: then nothing is set (and nothing can be)."""
    failed: list[ObjectProblem] = field(default_factory=list)


@dataclass
class AclRefresh(AclWrites):
    state: AclState = field(default_factory=AclState)
    changed_accounts: int = 0
    """Accounts suspended or unsuspended since the last refresh."""
    deleted_statuses: int = 0
    """Statuses deleted since the last refresh."""
    reasserted_accounts: int = 0
    """Accounts whose suspension changed earlier, within the overlap: their media set again."""
    reasserted_statuses: int = 0
    """Statuses deleted earlier, within the overlap: their media set again."""


@dataclass(frozen=True)
class AclChanges:
    state: AclState
    """What the next refresh compares with."""
    new_accounts: frozenset[int]
    recent_accounts: frozenset[int]
    """Changed earlier but within the overlap (re-asserted)."""
    new_statuses: list[int]
    recent_statuses: list[int]

    @property
    def accounts(self) -> set[int]:
        return set(self.new_accounts | self.recent_accounts)

    @property
    def statuses(self) -> list[int]:
        return self.new_statuses + self.recent_statuses


def find_changes(
    database: MastodonDatabase, previous: AclState, since: datetime | None, overlap: timedelta
) -> AclChanges:
    """The accounts and statuses whose media may need another ACL: changed after ``since`` (new)
    or within ``overlap`` before it (re-asserted: late commits, slow app clocks, racing copies)."""
    with database.connection() as connection:
        now = database.clock(connection)
        suspended = frozenset(
            row[0]
            for row in database.query("SELECT id FROM accounts WHERE suspended_at IS NOT NULL", connection=connection)
        )
        deleted = (
            database.query(
                "SELECT id, deleted_at > %s FROM statuses WHERE deleted_at IS NOT NULL AND deleted_at > %s",
                (since, since - overlap),
                connection=connection,
            )
            if since is not None
            else []
        )
    new_accounts = suspended ^ previous.suspended_account_ids
    window_start = since - overlap if since is not None else None
    recent_accounts = frozenset(
        account
        for account, seen in previous.recent_account_changes.items()
        if window_start is not None and seen > window_start and account not in new_accounts
    )
    kept = {account: seen for account, seen in previous.recent_account_changes.items() if seen > now - overlap}
    kept.update(dict.fromkeys(new_accounts, now))
    return AclChanges(
        AclState(now, suspended, kept),
        new_accounts,
        recent_accounts,
        [status for status, new in deleted if new],
        [status for status, new in deleted if not new],
    )


def affected_objects(
    database: MastodonDatabase, account_ids: set[int], status_ids: list[int], permission: str
) -> Iterator[MediaObject]:
    """The media objects of those accounts and statuses, with the ACL the database gives them now."""
    with database.connection() as connection:
        for column, ids in (("t.account_id", sorted(account_ids)), ("t.status_id", status_ids)):
            for start in range(0, len(ids), ID_CHUNK):
                chunk = ids[start : start + ID_CHUNK]
                for row in database.stream(MEDIA.select_sql(f"{column} = ANY(%s)"), (chunk,), connection=connection):
                    yield from MEDIA.objects_for_row(row, permission)


async def put_acls(
    client: S3Client | DiskEnd,
    destination: DestinationBucket | DestinationDirectory,
    objects: Iterable[MediaObject],
    settings: TransferSettings,
    result: AclWrites,
) -> None:
    """Set each object's ACL at its key (else at its ``cache/`` fallback), ``settings.concurrency``
    at once, reading ``ACL_BATCH`` objects at a time: memory stays flat however many there are.
    The caller has made sure the destination keeps ACLs (``probe_acl_support``)."""

    async def set_acl(media_object: MediaObject) -> None:
        keys = [media_object.key] + ([media_object.fallback_key] if media_object.fallback_key else [])
        try:
            for key in keys:
                full_key = destination.full_key(key)
                put = await with_retries(
                    lambda full_key=full_key: client.put_acl(full_key, media_object.acl),
                    settings.max_attempts,
                    settings.max_throttled_attempts,
                )
                if put:
                    result.acls_set += 1
                    return
            result.not_at_destination += 1
        except (S3Error, *NETWORK_ERRORS) as error:
            result.failed.append(ObjectProblem(media_object.table, media_object.row_id, media_object.key, str(error)))

    gate = asyncio.Semaphore(settings.concurrency)

    async def gated(media_object: MediaObject) -> None:
        async with gate:
            await set_acl(media_object)

    objects = iter(objects)
    while chunk := list(islice(objects, ACL_BATCH)):
        result.objects_checked += len(chunk)
        await asyncio.gather(*(gated(media_object) for media_object in chunk))


@asynccontextmanager
async def _destination_keeping_acls(destination: DestinationBucket | DestinationDirectory, settings: TransferSettings):
    """A client for the destination, and whether it keeps ACLs (``AclProbeFailed`` when it will not say)."""
    bucket = destination.engine_bucket()
    async with open_clients(bucket, bucket, settings) as (_, client):
        support = await probe_acl_support(client, settings.max_attempts, settings.max_throttled_attempts)
        yield client, support.keeps_acls


def refresh_acls(
    database: MastodonDatabase,
    destination: DestinationBucket | DestinationDirectory,
    previous: AclState,
    since: datetime | None,
    settings: TransferSettings | None = None,
    overlap: timedelta = timedelta(minutes=60),
) -> AclRefresh:
    """Set the ACL of every destination object whose expected ACL may have changed.

    ``since``: deleted statuses before it are already reflected (the last refresh's clock,
    or on the first refresh the oldest partition sync, whose reads saw them); those within
    ``overlap`` before it are set again. Raises ``AclProbeFailed`` when the destination does not
    say whether it keeps ACLs: the caller then keeps ``previous``, so nothing seen is lost.
    """
    permission = destination.acl_permission()
    changes = find_changes(database, previous, since, overlap)
    result = AclRefresh(
        state=changes.state,
        changed_accounts=len(changes.new_accounts),
        deleted_statuses=len(changes.new_statuses),
        reasserted_accounts=len(changes.recent_accounts),
        reasserted_statuses=len(changes.recent_statuses),
    )
    if not permission or not (changes.accounts or changes.statuses):
        return result  # with no ACLs configured, Mastodon never changes one either
    objects = affected_objects(database, changes.accounts, changes.statuses, permission)
    settings = settings or TransferSettings()

    async def run() -> None:
        async with _destination_keeping_acls(destination, settings) as (client, keeps_acls):
            result.destination_keeps_acls = keeps_acls
            if keeps_acls:
                await put_acls(client, destination, objects, settings, result)

    run_async(run())
    return result


def fix_all_acls(
    database: MastodonDatabase,
    destination: DestinationBucket | DestinationDirectory,
    tables: Sequence[MediaTable],
    settings: TransferSettings | None = None,
) -> dict[str, AclWrites]:
    """Set the ACL of every object the ``tables`` reference to the one the database gives it
    (like tootctl's ``media remove-orphans --fix-permissions``): one PutObjectAcl per object
    present, the rows streamed. With no permission configured there is no ACL to set."""
    results = {table.name: AclWrites() for table in tables}
    permission = destination.acl_permission()
    if not permission:
        return results
    settings = settings or TransferSettings()

    async def run() -> None:
        async with _destination_keeping_acls(destination, settings) as (client, keeps_acls):
            for table in tables:
                result = results[table.name]
                result.destination_keeps_acls = keeps_acls
                if keeps_acls:
                    objects = referenced_objects(database, table, permission)
                    await put_acls(client, destination, objects, settings, result)

    run_async(run())
    return results
