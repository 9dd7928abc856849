"""Keep destination ACLs equal to what Mastodon would set now, without copying bodies again.

Suspending or unsuspending an account, and a moderator deleting a status (kept
with ``deleted_at``), change which ``media_attachments`` objects are private,
but touch no media row, so neither a partition re-sync nor the changed-rows
scan sees them. This module finds exactly the media whose expected ACL may
have changed since the last refresh and sets it with PutObjectAcl:

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

The expected ACL is derived from the database (``MediaTable.acl_for``), not
from what Mastodon last wrote: media of a deleted-but-kept status stay private
after its account is unsuspended, although Mastodon's UnsuspendAccountService
makes them public again. An object not yet at the destination is skipped
(its copy sets the right ACL).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from mastodon_s3_sync.core.acl_support import probe_acl_support
from mastodon_s3_sync.core.buckets import DestinationBucket
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.mastodon.tables import TABLES, MediaObject
from mastodon_s3_sync.core.referenced_objects import ObjectProblem
from mastodon_s3_sync.core.transfer.engine import TransferSettings, open_clients, run_async
from mastodon_s3_sync.core.transfer.retries import NETWORK_ERRORS, with_retries
from mastodon_s3_sync.core.transfer.s3 import S3Error

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

    def dumps(self) -> str:
        return json.dumps(
            {
                "checked_at": self.checked_at.isoformat() if self.checked_at else None,
                "suspended_account_ids": sorted(self.suspended_account_ids),
            }
        )

    @classmethod
    def loads(cls, text: str | None) -> AclState:
        if not text:
            return cls()
        data = json.loads(text)
        checked_at = datetime.fromisoformat(data["checked_at"]) if data["checked_at"] else None
        return cls(checked_at, frozenset(data["suspended_account_ids"]))


@dataclass
class AclRefresh:
    state: AclState
    changed_accounts: int = 0
    deleted_statuses: int = 0
    objects_checked: int = 0
    acls_set: int = 0
    """PutObjectAcl requests that changed (or re-asserted) an object's ACL."""
    not_at_destination: int = 0
    destination_keeps_acls: bool = True
    """False when the destination server keeps no ACLs: then nothing is set (and nothing can be)."""
    failed: list[ObjectProblem] = field(default_factory=list)


def find_changes(
    database: MastodonDatabase, previous: AclState, since: datetime | None
) -> tuple[AclState, set[int], list[int]]:
    """(the new state, accounts whose suspension changed, statuses deleted after ``since``)."""
    with database.connection() as connection:
        now = database.clock(connection)
        suspended = frozenset(
            row[0]
            for row in database.query("SELECT id FROM accounts WHERE suspended_at IS NOT NULL", connection=connection)
        )
        deleted = (
            [
                row[0]
                for row in database.query(
                    "SELECT id FROM statuses WHERE deleted_at IS NOT NULL AND deleted_at > %s",
                    (since,),
                    connection=connection,
                )
            ]
            if since is not None
            else []
        )
    return AclState(now, suspended), set(suspended ^ previous.suspended_account_ids), deleted


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


def refresh_acls(
    database: MastodonDatabase,
    destination: DestinationBucket,
    previous: AclState,
    since: datetime | None,
    settings: TransferSettings | None = None,
) -> AclRefresh:
    """Set the ACL of every destination object whose expected ACL may have changed.

    ``since``: deleted statuses before it are already reflected (the last refresh's clock,
    or on the first refresh the oldest partition sync, whose reads saw them).
    """
    permission = destination.acl_permission()
    state, accounts, statuses = find_changes(database, previous, since)
    result = AclRefresh(state, changed_accounts=len(accounts), deleted_statuses=len(statuses))
    if not permission or not (accounts or statuses):
        return result  # with no ACLs configured, Mastodon never changes one either
    objects = affected_objects(database, accounts, statuses, permission)
    settings = settings or TransferSettings()

    async def run() -> None:
        bucket = destination.engine_bucket()
        async with open_clients(bucket, bucket, settings) as (_, client):
            support = await probe_acl_support(client, settings.max_attempts, settings.max_throttled_attempts)
            result.destination_keeps_acls = support.keeps_acls
            if not result.destination_keeps_acls:
                return

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
                    result.failed.append(ObjectProblem(MEDIA.name, media_object.row_id, media_object.key, str(error)))

            gate = asyncio.Semaphore(settings.concurrency)

            async def gated(media_object: MediaObject) -> None:
                async with gate:
                    await set_acl(media_object)

            while chunk := list(islice(objects, ACL_BATCH)):  # streamed: memory stays flat
                result.objects_checked += len(chunk)
                await asyncio.gather(*(gated(media_object) for media_object in chunk))

    run_async(run())
    return result
