"""Object ACLs as S3 reports them, and the moderation that changes them."""

from __future__ import annotations

from mastodon_s3_sync_tests.support.database import run_statement

MEDIA = "media_attachments"

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def public_read(grants: list[dict]) -> bool:
    """Whether GetObjectAcl's grants let anyone read the object (``public-read``)."""
    return any(grant["Grantee"].get("URI") == ALL_USERS and grant["Permission"] == "READ" for grant in grants)


def is_public(client, bucket: str, key: str) -> bool:
    return public_read(client.get_object_acl(Bucket=bucket, Key=key)["Grants"])


def moderate(migration, suspend: int, delete: int) -> set[str]:
    """Suspend ``suspend`` accounts and delete ``delete`` statuses (``deleted_at``, as a moderator
    does), each with public media of its own; returns the keys that must now be private."""
    rows = {row["id"]: row for row in migration.instance.rows[MEDIA]}
    public = [rows[o.row_id] for o in migration.instance.expected_for(MEDIA) if o.acl_kind == "permission"]
    statuses = list(dict.fromkeys(row["status_id"] for row in public if row["status_id"]))[:delete]
    accounts = list(dict.fromkeys(
        row["account_id"] for row in public if row["status_id"] not in statuses))[:suspend]  # fmt: skip
    assert (len(statuses), len(accounts)) == (delete, suspend)
    for status in statuses:
        run_statement(
            migration.database_url, "UPDATE statuses SET deleted_at = now() AT TIME ZONE 'UTC' WHERE id = %s", (status,)
        )
    for account in accounts:
        run_statement(
            migration.database_url,
            "UPDATE accounts SET suspended_at = now() AT TIME ZONE 'UTC' WHERE id = %s",
            (account,),
        )
    return {
        o.key
        for o in migration.instance.expected_for(MEDIA)
        if o.acl_kind == "permission"
        and (rows[o.row_id]["status_id"] in statuses or rows[o.row_id]["account_id"] in accounts)
    }
