"""The destination checked object by object against the source, as the fault-matrix tests
(``test_faults_*.py``) end."""

from __future__ import annotations

from mastodon_s3_sync.core.mastodon.layout import with_key_prefix
from mastodon_s3_sync_tests.support.acl import public_read

COMPARED = ("ContentLength", "ETag", "ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "Metadata")


def expected_media(migration, table: str, extra_keys: list[str] = ()) -> dict[str, str]:
    """Destination key -> ACL kind ("permission" or "private") of everything the table must copy."""
    expected = {
        with_key_prefix(migration.destination_prefix, item.key): item.acl_kind
        for item in migration.instance.expected_for(table)
    }
    expected.update({with_key_prefix(migration.destination_prefix, key): "permission" for key in extra_keys})
    return expected


def assert_destination_exact(migration, expected: dict[str, str], *, acls: bool) -> None:
    """Exactly the expected keys, each with the source's size, ETag (MD5) and headers; on a server
    that keeps ACLs (moto) each with Mastodon's ACL."""
    assert migration.destination_keys() == set(expected)
    source, destination = migration.source.client(), migration.destination.client()
    for key, acl_kind in expected.items():
        source_key = with_key_prefix(migration.source_prefix, key.removeprefix(migration.destination_prefix))
        there = source.head_object(Bucket=migration.source_bucket, Key=source_key)
        here = destination.head_object(Bucket=migration.destination_bucket, Key=key)
        for name in COMPARED:
            assert here.get(name) == there.get(name), (key, name, here.get(name), there.get(name))
        if acls:
            grants = destination.get_object_acl(Bucket=migration.destination_bucket, Key=key)["Grants"]
            assert public_read(grants) == (acl_kind == "permission"), (key, acl_kind, grants)
