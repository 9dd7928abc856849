"""``refresh_destination_acls``: the job (and its schedule) that keeps destination ACLs equal to
what Mastodon would set now; ``sync`` runs it after its partitions. See ``core.acl_refresh``."""

from dagster import (
    AssetKey,
    AssetObservation,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from mastodon_s3_sync.core.acl_refresh import MEDIA, AclRefresh, AclState, refresh_acls
from mastodon_s3_sync.orchestration.metadata import problems_markdown
from mastodon_s3_sync.orchestration.partitions import oldest_snapshot
from mastodon_s3_sync.orchestration.resources import DestinationS3Resource, MastodonDbResource, SyncTuningResource

STATE_KEY = "mastodon_s3_sync/acl_state/{bucket}/{prefix}"
"""Where the instance keeps what the last refresh saw (per destination), in its cursor store."""


def state_key(destination) -> str:
    return STATE_KEY.format(bucket=destination.bucket, prefix=destination.key_prefix or "")


def acl_metadata(refresh: AclRefresh) -> dict[str, MetadataValue]:
    return {
        "acls_set": MetadataValue.int(refresh.acls_set),
        "accounts_suspended_or_unsuspended": MetadataValue.int(refresh.changed_accounts),
        "statuses_deleted": MetadataValue.int(refresh.deleted_statuses),
        "objects_checked": MetadataValue.int(refresh.objects_checked),
        "not_at_destination_yet": MetadataValue.int(refresh.not_at_destination),
        "acl_failures": MetadataValue.int(len(refresh.failed)),
        "destination_keeps_acls": MetadataValue.bool(refresh.destination_keeps_acls),
    }


@op(
    out={}, description="Sets the destination ACL of media whose account was (un)suspended or whose status was deleted."
)
def refresh_acls_op(
    context: OpExecutionContext,
    mastodon_db: MastodonDbResource,
    destination_s3: DestinationS3Resource,
    sync_tuning: SyncTuningResource,
):
    destination = destination_s3.client()
    key = state_key(destination)
    previous = AclState.loads(context.instance.run_storage.get_cursor_values({key}).get(key))
    since = previous.checked_at or oldest_snapshot(context.instance, MEDIA.name)
    refresh = refresh_acls(
        mastodon_db.client(), destination, previous, since, sync_tuning.client().transfer_settings(None)
    )
    context.log.info(
        f"{refresh.changed_accounts} accounts (un)suspended and {refresh.deleted_statuses} statuses deleted "
        f"since the last refresh: {refresh.acls_set} ACLs set, {refresh.not_at_destination} objects not copied yet"
    )
    yield AssetObservation(AssetKey(MEDIA.name), metadata=acl_metadata(refresh))
    if refresh.failed:
        raise Failure(
            description=f"{len(refresh.failed)} ACLs could not be set; the next refresh tries them again",
            metadata={"failed": MetadataValue.md(problems_markdown(refresh.failed, len(refresh.failed)))},
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
