"""``refresh_destination_acls``: the job (and its schedule) that keeps destination ACLs equal to
what Mastodon would set now; ``sync`` runs it after its partitions. See ``core.acl_refresh``.

Its state (suspended accounts, the clock) moves only when the refresh succeeded: a destination
that would not say whether it keeps ACLs (``core.errors.AclProbeFailed``) or an ACL that could not be set
fails the run and leaves the state as it was, so the next refresh sees the same changes again.
With ``fix_all`` (``sync --fix-acls``) it also sets every referenced object's ACL."""

from datetime import timedelta

from dagster import (
    AssetKey,
    AssetObservation,
    Config,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from mastodon_s3_sync.core.acl_refresh import MEDIA, AclRefresh, AclState, AclWrites, fix_all_acls, refresh_acls
from mastodon_s3_sync.core.errors import SyncError
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.transfer.batch import TransferSettings
from mastodon_s3_sync.definitions.assets import one_line_failure
from mastodon_s3_sync.definitions.metadata import problems_markdown
from mastodon_s3_sync.definitions.partitions import oldest_snapshot
from mastodon_s3_sync.definitions.resources import DestinationS3Resource, MastodonDbResource, SyncTuningResource

STATE_KEY = "mastodon_s3_sync/acl_state/{bucket}/{prefix}"
"""Where the instance keeps what the last refresh saw (per destination), in its cursor store."""


def state_key(destination) -> str:
    return STATE_KEY.format(bucket=destination.bucket, prefix=destination.key_prefix or "")


FIX_ALL_PREFIX = "fix_all_"
"""Before the figures of a ``fix_all`` pass, on each table's asset."""


def acl_metadata(refresh: AclRefresh) -> dict[str, MetadataValue]:
    return {
        "acls_set": MetadataValue.int(refresh.acls_set),
        "accounts_suspended_or_unsuspended": MetadataValue.int(refresh.changed_accounts),
        "statuses_deleted": MetadataValue.int(refresh.deleted_statuses),
        "accounts_reasserted": MetadataValue.int(refresh.reasserted_accounts),
        "statuses_reasserted": MetadataValue.int(refresh.reasserted_statuses),
        "objects_checked": MetadataValue.int(refresh.objects_checked),
        "not_at_destination_yet": MetadataValue.int(refresh.not_at_destination),
        "acl_failures": MetadataValue.int(len(refresh.failed)),
        "destination_keeps_acls": MetadataValue.bool(refresh.destination_keeps_acls),
    }


def fix_all_metadata(writes: AclWrites) -> dict[str, MetadataValue]:
    return {
        f"{FIX_ALL_PREFIX}acls_set": MetadataValue.int(writes.acls_set),
        f"{FIX_ALL_PREFIX}objects_checked": MetadataValue.int(writes.objects_checked),
        f"{FIX_ALL_PREFIX}not_at_destination": MetadataValue.int(writes.not_at_destination),
        f"{FIX_ALL_PREFIX}acl_failures": MetadataValue.int(len(writes.failed)),
        "destination_keeps_acls": MetadataValue.bool(writes.destination_keeps_acls),
    }


class AclRefreshConfig(Config):
    fix_all: bool = Field(
        default=False,
        description="Also set the ACL of every object the tables reference (like tootctl's --fix-permissions): "
        "for a destination filled by another tool. One PutObjectAcl per object.",
    )
    tables: list[str] = Field(default=list(TABLES), description="The tables whose objects `fix_all` sets.")


@op(
    out={}, description="Sets the destination ACL of media whose account was (un)suspended or whose status was deleted."
)
def refresh_acls_op(
    context: OpExecutionContext,
    config: AclRefreshConfig,
    mastodon_db: MastodonDbResource,
    destination_s3: DestinationS3Resource,
    sync_tuning: SyncTuningResource,
):
    destination, database, tuning = destination_s3.client(), mastodon_db.client(), sync_tuning.client()
    settings = TransferSettings.tuned(tuning, None)
    key = state_key(destination)
    previous = AclState.loads(context.instance.run_storage.get_cursor_values({key}).get(key))
    since = previous.checked_at or oldest_snapshot(context.instance, MEDIA.name)
    tables = [TABLES[name] for name in config.tables] if config.fix_all else []
    try:
        refresh = refresh_acls(
            database, destination, previous, since, settings, timedelta(minutes=tuning.change_overlap_minutes)
        )
        fixed = fix_all_acls(database, destination, tables, settings) if tables else {}
    except SyncError as error:  # nothing moves: the next refresh sees the same changes again
        raise one_line_failure(error) from None
    context.log.info(
        f"{refresh.changed_accounts} accounts (un)suspended and {refresh.deleted_statuses} statuses deleted "
        f"since the last refresh ({refresh.reasserted_accounts} and {refresh.reasserted_statuses} earlier ones "
        f"within the overlap set again): {refresh.acls_set} ACLs set, {refresh.not_at_destination} objects "
        "not copied yet"
    )
    yield AssetObservation(AssetKey(MEDIA.name), metadata=acl_metadata(refresh))
    for table, writes in fixed.items():
        context.log.info(
            f"{table}: every ACL set: {writes.acls_set} of {writes.objects_checked} objects, "
            f"{writes.not_at_destination} not at the destination, {len(writes.failed)} failed"
        )
        yield AssetObservation(AssetKey(table), metadata=fix_all_metadata(writes))
    failed = refresh.failed + [problem for writes in fixed.values() for problem in writes.failed]
    if failed:
        raise Failure(
            description=f"{len(failed)} ACLs could not be set; the next refresh tries them again",
            metadata={"failed": MetadataValue.md(problems_markdown(failed, len(failed)))},
        )
    context.instance.run_storage.set_cursor_values({key: refresh.state.dumps()})


@job(description="Keeps destination ACLs equal to Mastodon's after suspensions, unsuspensions and deletions.")
def refresh_destination_acls():
    refresh_acls_op()


def build_acl_refresh_schedule(cron: str) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="refresh_destination_acls_schedule",
        job=refresh_destination_acls,
        cron_schedule=cron,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Brings ACL changes (suspensions, unsuspensions, moderator deletions) to the destination.",
    )
