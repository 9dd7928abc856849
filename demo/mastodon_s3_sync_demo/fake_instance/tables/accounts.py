"""accounts: avatar and header, ``cache/`` for remote ones from storage schema version 1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mastodon_s3_sync_demo.fake_instance.model import SUSPENDED_AT, Case, Drift, FakeTable

if TYPE_CHECKING:
    from mastodon_s3_sync_demo.fake_instance.bulk import BulkRows

CASES = [
    # The instance actor: negative id, no media.
    Case(
        {"id": -99, "username": "mastodon.example", "domain": None, "actor_type": "Application", "locked": True},
    ),
    # Local, schema version 1 (local: no cache/); jpeg and png: original only.
    Case(
        {
            "id": 1,
            "username": "admin",
            "domain": None,
            "avatar_file_name": "693bf9e034abc794.jpeg",
            "avatar_content_type": "image/jpeg",
            "avatar_storage_schema_version": 1,
            "header_file_name": "5cf47c609d1f16d2.png",
            "header_content_type": "image/png",
            "header_storage_schema_version": 1,
        },
        expect=[
            "accounts/avatars/000/000/001/original/693bf9e034abc794.jpeg",
            "accounts/headers/000/000/001/original/5cf47c609d1f16d2.png",
        ],
    ),
    # Local, version NULL, gif avatar (+ static .png); the avatar was replaced: the old one is an orphan.
    Case(
        {
            "id": 2,
            "username": "alice",
            "domain": None,
            "avatar_file_name": "8c5f8febb660420c.gif",
            "avatar_content_type": "image/gif",
            "avatar_storage_schema_version": None,
        },
        expect=[
            "accounts/avatars/000/000/002/original/8c5f8febb660420c.gif",
            "accounts/avatars/000/000/002/static/8c5f8febb660420c.png",
        ],
        orphans=[
            "accounts/avatars/000/000/002/original/dca66147be225b95.gif",
            "accounts/avatars/000/000/002/static/dca66147be225b95.png",
        ],
    ),
    # Local, suspended: its own avatar/header keep the configured permission (only its media is private).
    Case(
        {
            "id": 3,
            "username": "spammer",
            "domain": None,
            "suspended_at": SUSPENDED_AT,
            "suspension_origin": 0,
            "avatar_file_name": "a75b6917d6060788.png",
            "avatar_content_type": "image/png",
            "avatar_storage_schema_version": 1,
            "header_file_name": "38600c13bd03f4b5.gif",
            "header_content_type": "image/gif",
            "header_storage_schema_version": 1,
        },
        expect=[
            "accounts/avatars/000/000/003/original/a75b6917d6060788.png",
            "accounts/headers/000/000/003/original/38600c13bd03f4b5.gif",
            "accounts/headers/000/000/003/static/38600c13bd03f4b5.png",
        ],
    ),
    # Remote, version NULL (never upgraded): no cache/.
    Case(
        {
            "id": 1234,
            "username": "carol",
            "domain": "remote.example",
            "avatar_file_name": "1295d8dd044c2273.jpeg",
            "avatar_content_type": "image/jpeg",
            "avatar_remote_url": "https://remote.example/system/avatars/carol.jpg",
            "avatar_storage_schema_version": None,
            "header_file_name": "4b107e8de70adf86.gif",
            "header_content_type": "image/gif",
            "header_remote_url": "https://remote.example/system/headers/carol.gif",
            "header_storage_schema_version": None,
        },
        expect=[
            "accounts/avatars/000/001/234/original/1295d8dd044c2273.jpeg",
            "accounts/headers/000/001/234/original/4b107e8de70adf86.gif",
            "accounts/headers/000/001/234/static/4b107e8de70adf86.png",
        ],
    ),
    # Drift: remote, version NULL computes no cache/, but the object is under cache/.
    Case(
        {
            "id": 4321,
            "username": "dave",
            "domain": "old.example",
            "avatar_file_name": "c622185b6ddfad2c.png",
            "avatar_content_type": "image/png",
            "avatar_remote_url": "https://old.example/avatars/dave.png",
            "avatar_storage_schema_version": None,
        },
        expect=[
            Drift(
                actual="cache/accounts/avatars/000/004/321/original/c622185b6ddfad2c.png",
                computed="accounts/avatars/000/004/321/original/c622185b6ddfad2c.png",
            ),
        ],
    ),
    # Remote, version 0: no cache/; webp avatar: original only.
    Case(
        {
            "id": 56789,
            "username": "erin",
            "domain": "social.example",
            "avatar_file_name": "ed28779d70bbaaed.webp",
            "avatar_content_type": "image/webp",
            "avatar_remote_url": "https://social.example/erin.webp",
            "avatar_storage_schema_version": 0,
        },
        expect=["accounts/avatars/000/056/789/original/ed28779d70bbaaed.webp"],
    ),
    # Remote snowflake; avatar version 1 (cache/), header version NULL (no cache/): per-attachment columns.
    Case(
        {
            "id": 105585102028813107,
            "username": "frank",
            "domain": "fedi.example",
            "avatar_file_name": "ab4225374c85341d.gif",
            "avatar_content_type": "image/gif",
            "avatar_remote_url": "https://fedi.example/frank.gif",
            "avatar_storage_schema_version": 1,
            "header_file_name": "da615f34368457b8.jpeg",
            "header_content_type": "image/jpeg",
            "header_remote_url": "https://fedi.example/frank-header.jpg",
            "header_storage_schema_version": None,
        },
        expect=[
            "cache/accounts/avatars/105/585/102/028/813/107/original/ab4225374c85341d.gif",
            "cache/accounts/avatars/105/585/102/028/813/107/static/ab4225374c85341d.png",
            "accounts/headers/105/585/102/028/813/107/original/da615f34368457b8.jpeg",
        ],
    ),
    # Local snowflake, version 1: no cache/.
    Case(
        {
            "id": 107625362227221845,
            "username": "grace",
            "domain": None,
            "avatar_file_name": "c8444a0513a356de.png",
            "avatar_content_type": "image/png",
            "avatar_storage_schema_version": 1,
        },
        expect=["accounts/avatars/107/625/362/227/221/845/original/c8444a0513a356de.png"],
    ),
    # Remote, suspended, no avatar/header (its media_attachments are private).
    Case(
        {
            "id": 109957125439527321,
            "username": "spambot",
            "domain": "spam.example",
            "suspended_at": SUSPENDED_AT,
            "suspension_origin": 0,
            "avatar_storage_schema_version": 1,
            "header_storage_schema_version": 1,
        },
    ),
    # Remote, media evicted (file names NULL): nothing to copy; the deletion left the old avatar behind.
    Case(
        {
            "id": 112925375725602952,
            "username": "henry",
            "domain": "gone.example",
            "avatar_remote_url": "https://gone.example/henry.jpg",
            "avatar_storage_schema_version": 1,
            "header_storage_schema_version": 1,
        },
        orphans=["cache/accounts/avatars/112/925/375/725/602/952/original/7add29ef08beb4b3.jpeg"],
    ),
    # Remote snowflake, version 1: avatar present, header missing from the source.
    Case(
        {
            "id": 113775634022404369,
            "username": "ivy",
            "domain": "flaky.example",
            "avatar_file_name": "4915b150ab092914.png",
            "avatar_content_type": "image/png",
            "avatar_remote_url": "https://flaky.example/ivy.png",
            "avatar_storage_schema_version": 1,
            "header_file_name": "932cacc35072e5d6.jpeg",
            "header_content_type": "image/jpeg",
            "header_file_size": 183_211,
            "header_remote_url": "https://flaky.example/ivy-header.jpg",
            "header_storage_schema_version": 1,
        },
        expect=["cache/accounts/avatars/113/775/634/022/404/369/original/4915b150ab092914.png"],
        missing=["cache/accounts/headers/113/775/634/022/404/369/original/932cacc35072e5d6.jpeg"],
    ),
]


def _complete_row(row: dict[str, Any]) -> None:
    row.setdefault("uri", "" if row["domain"] is None else f"https://{row['domain']}/users/{row['username']}")


def _image_type(rows: BulkRows) -> tuple[str, str]:
    roll = rows.rng.random()
    return ("jpeg", "image/jpeg") if roll < 0.6 else ("png", "image/png") if roll < 0.9 else ("gif", "image/gif")


def _bulk_rows(rows: BulkRows) -> None:
    """85 % remote (200 domains; 80 % storage schema version 1, so cache/), 10 % of the remote
    ones evicted (no files); avatars 90 %, headers 60 %; gif ones add static."""
    rng = rows.rng

    def account(index: int, remaining: int) -> dict[str, Any]:
        row = rows.blank() | {"id": rows.next_id(), "username": f"user{index}"}
        remote = rng.random() < 0.85
        row["domain"] = f"remote{index % 200}.example" if remote else None
        row["uri"] = f"https://{row['domain']}/users/user{index}" if remote else ""
        row["suspended_at"] = SUSPENDED_AT if rng.random() < 0.01 else None
        if remote and rng.random() < 0.10:
            return row  # evicted
        version = 1 if not remote or rng.random() < 0.8 else None
        for attachment, chance, low, high in (("avatar", 0.9, 10, 150), ("header", 0.6, 30, 300)):
            if rng.random() < chance or (attachment == "avatar" and remaining == 1):
                extension, content_type = _image_type(rows) if remaining > 1 else ("jpeg", "image/jpeg")
                rows.attach(row, attachment, rows.name(extension), content_type, rows.kilobytes(low, high), version)
                if remaining == 1:
                    break
        return row

    rows.fill(account)


FAKE = FakeTable(
    name="accounts",
    attachments={"avatar": "avatars", "header": "headers"},
    storage_schema_version=True,
    snowflake_ids=True,
    defaults={"domain": None, "suspended_at": None, "avatar_remote_url": None, "header_remote_url": ""},
    cases=CASES,
    bulk_budget=lambda objects: int(objects * 0.15),
    bulk_rows=_bulk_rows,
    complete_row=_complete_row,
)
