"""Object ACLs as S3 reports them."""

from __future__ import annotations

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def public_read(grants: list[dict]) -> bool:
    """Whether GetObjectAcl's grants let anyone read the object (``public-read``)."""
    return any(grant["Grantee"].get("URI") == ALL_USERS and grant["Permission"] == "READ" for grant in grants)


def is_public(client, bucket: str, key: str) -> bool:
    return public_read(client.get_object_acl(Bucket=bucket, Key=key)["Grants"])
