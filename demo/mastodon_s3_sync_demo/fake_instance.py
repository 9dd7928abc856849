"""A small, hand-written fake Mastodon instance: database rows plus the bucket they reference.

Used by the demo and by the tests. Every case is written as data: a row (a dict
of Mastodon's column names) and, beside it, the LITERAL keys that row
references, derived by hand from docs/mastodon-storage.md. Nothing here computes a
key with ``mastodon_s3_sync.core.mastodon``: this module is the oracle the layout
code is checked against (only ``layout.with_key_prefix`` is used, to place
objects under a bucket's key prefix).

What it exercises (see ``_CASES`` below):

- every table; every style set (image jpeg/png/webp ``small`` same extension,
  gif and video/gifv ``small`` as ``.png``, audio and unknown ``original`` only,
  video/audio thumbnails, account avatar/header ``static`` only for gif, emoji
  and provider icon ``static``, site upload thumbnail/favicon/app_icon/mascot
  and an unknown ``var``, private backups);
- ``cache/`` for storage schema version NULL/0/1 x local/remote, per
  attachment column (file and thumbnail of one row may differ), preview cards
  always remote;
- id_partition for small serial ids, 10- to 17-digit ids (13/14/16/17 digits
  drop a trailing group of 1-2 digits), 18-digit snowflakes, the ``-99``
  instance actor;
- a suspended local and a suspended remote account (their media_attachments
  are private, their own avatars are not);
- a status deleted by a moderator but kept (``statuses.deleted_at`` set): the
  media of a not suspended account that it owns is private;
- ``statuses`` rows for every ``media_attachments.status_id`` (an unattached
  upload has none), owned by the media's account;
- NULL file names (nothing to copy, including evicted remote media);
- referenced objects missing from the source (``missing``), also one style of
  an otherwise present attachment;
- objects that exist only under the other ``cache/`` variant (drift, in both
  directions): ``expected`` holds them at the key where they really are, with
  ``computed_key`` the key the row computes;
- orphans: a replaced avatar's old file, evicted media left behind, the stale
  non-cache duplicate of an object that also exists at its computed key,
  deleted rows' objects, a legacy ``imports/`` object.

The database is Mastodon's real schema for these tables (``schema/mastodon_schema.sql``,
generated from Mastodon's ``db/schema.rb`` by ``schema/generate.py``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mastodon_s3_sync.core.mastodon.layout import with_key_prefix

SCHEMA_SQL = Path(__file__).with_name("schema") / "mastodon_schema.sql"
"""Mastodon's DDL for the tables the sync reads (and ``statuses``); ``make schema`` regenerates it."""
CACHE_CONTROL = "public, max-age=315576000, immutable"

PERMISSION = "permission"
"""``acl_kind``: the configured permission (``S3_PERMISSION``)."""
PRIVATE = "private"
"""``acl_kind``: always ``private`` (backups, media of suspended accounts)."""

TABLE_NAMES = (
    "accounts",
    "media_attachments",
    "custom_emojis",
    "preview_cards",
    "site_uploads",
    "preview_card_providers",
    "backups",
)

BULK_START_ID = 114_000_000_000_000_000
"""A ``seed_bulk`` start id above every id of the hand-written instance."""


@dataclass(frozen=True)
class ExpectedObject:
    """An object that must end up at the destination, at ``key`` (relative to the key prefix)."""

    key: str
    table: str
    row_id: int
    content_type: str
    acl_kind: str  # "permission" | "private"
    body: bytes = field(default=b"", repr=False)
    computed_key: str | None = None
    """Drift only: the key the row computes, absent at the source; ``key`` is its other ``cache/`` variant."""

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def style(self) -> str:
        return self.key.split("/")[-2]

    def acl(self, permission: str | None) -> str | None:
        """The ACL the destination object must carry for a configured ``permission``."""
        if not permission:
            return None
        return PRIVATE if self.acl_kind == PRIVATE else permission


@dataclass
class FakeInstance:
    rows: dict[str, list[dict[str, Any]]]
    """Per table, the rows as inserted (every column the sync reads is present)."""
    expected: list[ExpectedObject]
    missing: list[tuple[str, int, str]]
    """(table, row_id, key) of referenced objects absent from the source (at both ``cache/`` variants)."""
    orphans: list[str]
    """Keys present at the source that no row references; never to be copied."""
    row_counts: dict[str, int]
    statuses: list[dict[str, Any]] = field(default_factory=list)
    """The ``statuses`` rows the media_attachments rows point at (not a media table: not in ``rows``)."""

    def expected_by_key(self) -> dict[str, ExpectedObject]:
        return {obj.key: obj for obj in self.expected}

    def expected_for(self, table: str) -> list[ExpectedObject]:
        return [obj for obj in self.expected if obj.table == table]

    def missing_for(self, table: str) -> list[tuple[str, int, str]]:
        return [entry for entry in self.missing if entry[0] == table]

    @property
    def drifted(self) -> list[ExpectedObject]:
        return [obj for obj in self.expected if obj.computed_key is not None]

    @property
    def expected_bytes(self) -> int:
        return sum(obj.size for obj in self.expected)

    def source_objects(self) -> list[tuple[str, bytes, str]]:
        """Everything at the source: (key, body, content_type) for expected objects and orphans."""
        objects = [(obj.key, obj.body, obj.content_type) for obj in self.expected]
        objects += [(key, body_for(key), content_type_for(key)) for key in self.orphans]
        return objects

    def selected_rows(self, table: str) -> list[dict[str, Any]]:
        """The rows as the sync's SELECT returns them (media_attachments joined to accounts and statuses)."""
        rows = [dict(row) for row in self.rows[table]]
        if table == "media_attachments":
            suspended = {account["id"]: account["suspended_at"] for account in self.rows["accounts"]}
            deleted = {status["id"]: status["deleted_at"] for status in self.statuses}
            for row in rows:
                row["account_suspended_at"] = suspended.get(row["account_id"])
                row["status_deleted_at"] = deleted.get(row["status_id"])
        return sorted(rows, key=lambda row: row["id"])


# --------------------------------------------------------------------------------------
# Object bodies and content types


def body_for(key: str) -> bytes:
    """Deterministic, distinct per key, 50-3000 bytes."""
    digest = hashlib.sha256(key.encode()).digest()
    size = 50 + int.from_bytes(digest[:4], "big") % 2951
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(digest + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:size])


_CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "mp3": "audio/mpeg",
    "ico": "image/vnd.microsoft.icon",
    "zip": "application/zip",
    "bin": "application/octet-stream",
    "csv": "text/csv",
}


def content_type_for(key: str) -> str:
    """Mastodon names files by their content, so the extension tells the type."""
    return _CONTENT_TYPES[key.rsplit(".", 1)[-1]]


# --------------------------------------------------------------------------------------
# The hand-written instance


@dataclass(frozen=True)
class _Drift:
    actual: str
    """Where the object really is at the source (and must be at the destination)."""
    computed: str
    """The key the row computes, absent at the source."""


@dataclass(frozen=True)
class _Case:
    table: str
    row: dict[str, Any]
    expect: Sequence[str | _Drift] = ()
    missing: Sequence[str] = ()
    acl_kind: str = PERMISSION
    orphans: Sequence[str] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    """media_attachments only: columns of the ``statuses`` row ``status_id`` points at, beyond the usual ones."""


T0 = datetime(2024, 3, 1, 12, 0, 0)
SUSPENDED_AT = datetime(2024, 2, 20, 9, 30, 0)
DELETED_AT = datetime(2024, 6, 11, 16, 45, 0)
LOCAL_DOMAIN = "mastodon.example"

_CASES: list[_Case] = [
    # ---------------------------------------------------------------- accounts
    # The instance actor: negative id, no media.
    _Case(
        "accounts",
        {"id": -99, "username": "mastodon.example", "domain": None, "actor_type": "Application", "locked": True},
    ),
    # Local, schema version 1 (local: no cache/); jpeg and png: original only.
    _Case(
        "accounts",
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
    _Case(
        "accounts",
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
    _Case(
        "accounts",
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
    _Case(
        "accounts",
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
    _Case(
        "accounts",
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
            _Drift(
                actual="cache/accounts/avatars/000/004/321/original/c622185b6ddfad2c.png",
                computed="accounts/avatars/000/004/321/original/c622185b6ddfad2c.png",
            ),
        ],
    ),
    # Remote, version 0: no cache/; webp avatar: original only.
    _Case(
        "accounts",
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
    _Case(
        "accounts",
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
    _Case(
        "accounts",
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
    _Case(
        "accounts",
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
    _Case(
        "accounts",
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
    _Case(
        "accounts",
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
    # ---------------------------------------------------------------- media_attachments
    # Old serial ids, local.
    _Case(
        "media_attachments",
        {
            "id": 1,
            "account_id": 1,
            "status_id": 1,
            "type": 0,
            "remote_url": "",
            "file_file_name": "123b59594b8159b8.jpeg",
            "file_content_type": "image/jpeg",
            "file_storage_schema_version": None,
        },
        expect=[
            "media_attachments/files/000/000/001/original/123b59594b8159b8.jpeg",
            "media_attachments/files/000/000/001/small/123b59594b8159b8.jpeg",
        ],
    ),
    _Case(
        "media_attachments",
        {
            "id": 42,
            "account_id": 2,
            "status_id": 2,
            "type": 0,
            "remote_url": "",
            "file_file_name": "23651ebabf4165e8.png",
            "file_content_type": "image/png",
            "file_storage_schema_version": 1,
        },
        expect=[
            "media_attachments/files/000/000/042/original/23651ebabf4165e8.png",
            "media_attachments/files/000/000/042/small/23651ebabf4165e8.png",
        ],
    ),
    _Case(
        "media_attachments",
        {
            "id": 999_999_999,
            "account_id": 1,
            "status_id": 3,
            "type": 0,
            "remote_url": "",
            "file_file_name": "0bcda123e786eaee.webp",
            "file_content_type": "image/webp",
            "file_storage_schema_version": 1,
        },
        expect=[
            "media_attachments/files/999/999/999/original/0bcda123e786eaee.webp",
            "media_attachments/files/999/999/999/small/0bcda123e786eaee.webp",
        ],
    ),
    # 10 digits (the 12-digit padding starts at 10^9); gif: small as .png.
    _Case(
        "media_attachments",
        {
            "id": 1_000_000_000,
            "account_id": 2,
            "status_id": 4,
            "type": 0,
            "remote_url": "",
            "file_file_name": "9aa67d0e7338c11f.gif",
            "file_content_type": "image/gif",
            "file_storage_schema_version": 1,
        },
        expect=[
            "media_attachments/files/001/000/000/000/original/9aa67d0e7338c11f.gif",
            "media_attachments/files/001/000/000/000/small/9aa67d0e7338c11f.png",
        ],
    ),
    # 10 digits; an uploaded HEIC, stored as jpeg.
    _Case(
        "media_attachments",
        {
            "id": 3_162_277_660,
            "account_id": 1,
            "status_id": 5,
            "type": 0,
            "remote_url": "",
            "file_file_name": "40f279746495ecd8.jpeg",
            "file_content_type": "image/jpeg",
            "file_storage_schema_version": 1,
            "description": "uploaded as HEIC",
        },
        expect=[
            "media_attachments/files/003/162/277/660/original/40f279746495ecd8.jpeg",
            "media_attachments/files/003/162/277/660/small/40f279746495ecd8.jpeg",
        ],
    ),
    # 11 digits; video (small .png) with a custom thumbnail (original only).
    _Case(
        "media_attachments",
        {
            "id": 26_457_513_110,
            "account_id": 1,
            "status_id": 6,
            "type": 2,
            "remote_url": "",
            "file_file_name": "662afbbee624ddc0.mp4",
            "file_content_type": "video/mp4",
            "file_storage_schema_version": 1,
            "thumbnail_file_name": "49f362c9ca0e98df.jpeg",
            "thumbnail_content_type": "image/jpeg",
            "thumbnail_storage_schema_version": 1,
        },
        expect=[
            "media_attachments/files/026/457/513/110/original/662afbbee624ddc0.mp4",
            "media_attachments/files/026/457/513/110/small/662afbbee624ddc0.png",
            "media_attachments/thumbnails/026/457/513/110/original/49f362c9ca0e98df.jpeg",
        ],
    ),
    # 12 digits; gifv (stored as mp4, small .png).
    _Case(
        "media_attachments",
        {
            "id": 223_606_797_749,
            "account_id": 2,
            "status_id": 7,
            "type": 1,
            "remote_url": "",
            "file_file_name": "f7695b1f5dea9676.mp4",
            "file_content_type": "video/mp4",
            "file_storage_schema_version": 1,
        },
        expect=[
            "media_attachments/files/223/606/797/749/original/f7695b1f5dea9676.mp4",
            "media_attachments/files/223/606/797/749/small/f7695b1f5dea9676.png",
        ],
    ),
    # 13 digits: the 13th digit is dropped (141/421/356/237, not .../3); audio: original only, plus cover art.
    _Case(
        "media_attachments",
        {
            "id": 1_414_213_562_373,
            "account_id": 1,
            "status_id": 8,
            "type": 4,
            "remote_url": "",
            "file_file_name": "aada4ef0290409d2.mp3",
            "file_content_type": "audio/mpeg",
            "file_storage_schema_version": 1,
            "thumbnail_file_name": "a51cd7decc5d43e0.png",
            "thumbnail_content_type": "image/png",
            "thumbnail_storage_schema_version": 1,
        },
        expect=[
            "media_attachments/files/141/421/356/237/original/aada4ef0290409d2.mp3",
            "media_attachments/thumbnails/141/421/356/237/original/a51cd7decc5d43e0.png",
        ],
    ),
    # 14 digits: the last two digits are dropped; remote, version 0 (no cache/); unknown type: original only.
    _Case(
        "media_attachments",
        {
            "id": 17_320_508_075_688,
            "account_id": 1234,
            "status_id": 9,
            "type": 3,
            "remote_url": "https://remote.example/media/blob.bin",
            "file_file_name": "0244bd1fde404a4d.bin",
            "file_content_type": "application/octet-stream",
            "file_storage_schema_version": 0,
        },
        expect=["media_attachments/files/173/205/080/756/original/0244bd1fde404a4d.bin"],
    ),
    # 15 digits; remote, version 1: cache/.
    _Case(
        "media_attachments",
        {
            "id": 314_159_265_358_979,
            "account_id": 1234,
            "status_id": 10,
            "type": 0,
            "remote_url": "https://remote.example/media/pi.jpg",
            "file_file_name": "855008f429a9d181.jpeg",
            "file_content_type": "image/jpeg",
            "file_storage_schema_version": 1,
        },
        expect=[
            "cache/media_attachments/files/314/159/265/358/979/original/855008f429a9d181.jpeg",
            "cache/media_attachments/files/314/159/265/358/979/small/855008f429a9d181.jpeg",
        ],
    ),
    # 16 digits (last digit dropped); remote, version 0: no cache/.
    _Case(
        "media_attachments",
        {
            "id": 2_718_281_828_459_045,
            "account_id": 56789,
            "status_id": 11,
            "type": 0,
            "remote_url": "https://social.example/media/e.png",
            "file_file_name": "d007d029f98d39b6.png",
            "file_content_type": "image/png",
            "file_storage_schema_version": 0,
        },
        expect=[
            "media_attachments/files/271/828/182/845/904/original/d007d029f98d39b6.png",
            "media_attachments/files/271/828/182/845/904/small/d007d029f98d39b6.png",
        ],
    ),
    # 17 digits (last two dropped); remote, version NULL: no cache/; video.
    _Case(
        "media_attachments",
        {
            "id": 16_180_339_887_498_948,
            "account_id": 56789,
            "status_id": 12,
            "type": 2,
            "remote_url": "https://social.example/media/phi.mp4",
            "file_file_name": "e6f42864b1eaf1b5.mp4",
            "file_content_type": "video/mp4",
            "file_storage_schema_version": None,
        },
        expect=[
            "media_attachments/files/161/803/398/874/989/original/e6f42864b1eaf1b5.mp4",
            "media_attachments/files/161/803/398/874/989/small/e6f42864b1eaf1b5.png",
        ],
    ),
    # 18-digit snowflakes from here on.
    _Case(
        "media_attachments",
        {
            "id": 105157125734406699,
            "account_id": 1,
            "status_id": 105157125734406000,
            "type": 0,
            "remote_url": "",
            "file_file_name": "a9cb17cf2112a897.jpeg",
            "file_content_type": "image/jpeg",
            "file_storage_schema_version": 1,
        },
        expect=[
            "media_attachments/files/105/157/125/734/406/699/original/a9cb17cf2112a897.jpeg",
            "media_attachments/files/105/157/125/734/406/699/small/a9cb17cf2112a897.jpeg",
        ],
    ),
    # Local audio, no cover art.
    _Case(
        "media_attachments",
        {
            "id": 105888780517376001,
            "account_id": 2,
            "status_id": 105888780517376000,
            "type": 4,
            "remote_url": "",
            "file_file_name": "9d533bcf92b142b0.mp3",
            "file_content_type": "audio/mpeg",
            "file_storage_schema_version": 1,
        },
        expect=["media_attachments/files/105/888/780/517/376/001/original/9d533bcf92b142b0.mp3"],
    ),
    # Remote gif, version 1: cache/, small .png.
    _Case(
        "media_attachments",
        {
            "id": 108202976870448879,
            "account_id": 1234,
            "status_id": 108202976870448000,
            "type": 0,
            "remote_url": "https://remote.example/media/anim.gif",
            "file_file_name": "518b892028c552a7.gif",
            "file_content_type": "image/gif",
            "file_storage_schema_version": 1,
        },
        expect=[
            "cache/media_attachments/files/108/202/976/870/448/879/original/518b892028c552a7.gif",
            "cache/media_attachments/files/108/202/976/870/448/879/small/518b892028c552a7.png",
        ],
    ),
    # Remote video with thumbnail, both version 1: both under cache/.
    _Case(
        "media_attachments",
        {
            "id": 109378260172819517,
            "account_id": 105585102028813107,
            "status_id": 109378260172819000,
            "type": 2,
            "remote_url": "https://fedi.example/media/clip.mp4",
            "file_file_name": "9062c6468c9164d4.mp4",
            "file_content_type": "video/mp4",
            "file_storage_schema_version": 1,
            "thumbnail_file_name": "6264eea565f021ff.jpeg",
            "thumbnail_content_type": "image/jpeg",
            "thumbnail_remote_url": "https://fedi.example/media/clip-thumb.jpg",
            "thumbnail_storage_schema_version": 1,
        },
        expect=[
            "cache/media_attachments/files/109/378/260/172/819/517/original/9062c6468c9164d4.mp4",
            "cache/media_attachments/files/109/378/260/172/819/517/small/9062c6468c9164d4.png",
            "cache/media_attachments/thumbnails/109/378/260/172/819/517/original/6264eea565f021ff.jpeg",
        ],
    ),
    # Remote video: file version 1 (cache/), thumbnail version NULL (no cache/).
    _Case(
        "media_attachments",
        {
            "id": 110548117094461453,
            "account_id": 56789,
            "status_id": 110548117094461000,
            "type": 2,
            "remote_url": "https://social.example/media/talk.mp4",
            "file_file_name": "201686f0299b35da.mp4",
            "file_content_type": "video/mp4",
            "file_storage_schema_version": 1,
            "thumbnail_file_name": "ff9698b3c1f75eee.png",
            "thumbnail_content_type": "image/png",
            "thumbnail_remote_url": "https://social.example/media/talk.png",
            "thumbnail_storage_schema_version": None,
        },
        expect=[
            "cache/media_attachments/files/110/548/117/094/461/453/original/201686f0299b35da.mp4",
            "cache/media_attachments/files/110/548/117/094/461/453/small/201686f0299b35da.png",
            "media_attachments/thumbnails/110/548/117/094/461/453/original/ff9698b3c1f75eee.png",
        ],
    ),
    # Remote, evicted by `tootctl media remove` (file name NULL): nothing to copy; leftovers are orphans.
    _Case(
        "media_attachments",
        {
            "id": 111034403979266313,
            "account_id": 1234,
            "status_id": 111034403979266000,
            "type": 0,
            "remote_url": "https://remote.example/media/old.jpg",
            "file_storage_schema_version": 1,
        },
        orphans=[
            "cache/media_attachments/files/111/034/403/979/266/313/original/cb7dba533504531d.jpeg",
            "cache/media_attachments/files/111/034/403/979/266/313/small/cb7dba533504531d.jpeg",
        ],
    ),
    # Remote, version 1, missing from the source at both variants (failed download).
    _Case(
        "media_attachments",
        {
            "id": 112017486577729535,
            "account_id": 105585102028813107,
            "status_id": 112017486577729000,
            "type": 0,
            "remote_url": "https://fedi.example/media/lost.jpg",
            "file_file_name": "87497c8eb777b644.jpeg",
            "file_content_type": "image/jpeg",
            "file_file_size": 95_873,
            "file_storage_schema_version": 1,
        },
        missing=[
            "cache/media_attachments/files/112/017/486/577/729/535/original/87497c8eb777b644.jpeg",
            "cache/media_attachments/files/112/017/486/577/729/535/small/87497c8eb777b644.jpeg",
        ],
    ),
    # Drift: remote, version 1 computes cache/, but the objects are at the non-cache keys
    # (an interrupted `tootctl upgrade storage-schema`).
    _Case(
        "media_attachments",
        {
            "id": 112364303155204660,
            "account_id": 56789,
            "status_id": 112364303155204000,
            "type": 0,
            "remote_url": "https://social.example/media/moved.webp",
            "file_file_name": "90fe1ca9ee0ba95c.webp",
            "file_content_type": "image/webp",
            "file_storage_schema_version": 1,
        },
        expect=[
            _Drift(
                actual="media_attachments/files/112/364/303/155/204/660/original/90fe1ca9ee0ba95c.webp",
                computed="cache/media_attachments/files/112/364/303/155/204/660/original/90fe1ca9ee0ba95c.webp",
            ),
            _Drift(
                actual="media_attachments/files/112/364/303/155/204/660/small/90fe1ca9ee0ba95c.webp",
                computed="cache/media_attachments/files/112/364/303/155/204/660/small/90fe1ca9ee0ba95c.webp",
            ),
        ],
    ),
    # Local media of the suspended local account: private.
    _Case(
        "media_attachments",
        {
            "id": 112729522176002748,
            "account_id": 3,
            "status_id": 112729522176002000,
            "type": 0,
            "remote_url": "",
            "file_file_name": "faf27607bba712da.png",
            "file_content_type": "image/png",
            "file_storage_schema_version": 1,
        },
        expect=[
            "media_attachments/files/112/729/522/176/002/748/original/faf27607bba712da.png",
            "media_attachments/files/112/729/522/176/002/748/small/faf27607bba712da.png",
        ],
        acl_kind=PRIVATE,
    ),
    # Remote media of the suspended remote account: private, file and thumbnail, every style.
    _Case(
        "media_attachments",
        {
            "id": 113282581135390583,
            "account_id": 109957125439527321,
            "status_id": 113282581135390000,
            "type": 2,
            "remote_url": "https://spam.example/media/spam.mp4",
            "file_file_name": "77b26d075b22a058.mp4",
            "file_content_type": "video/mp4",
            "file_storage_schema_version": 1,
            "thumbnail_file_name": "30c76740bab075a6.jpeg",
            "thumbnail_content_type": "image/jpeg",
            "thumbnail_remote_url": "https://spam.example/media/spam.jpg",
            "thumbnail_storage_schema_version": 1,
        },
        expect=[
            "cache/media_attachments/files/113/282/581/135/390/583/original/77b26d075b22a058.mp4",
            "cache/media_attachments/files/113/282/581/135/390/583/small/77b26d075b22a058.png",
            "cache/media_attachments/thumbnails/113/282/581/135/390/583/original/30c76740bab075a6.jpeg",
        ],
        acl_kind=PRIVATE,
    ),
    # Remote, version 1, present at its computed cache/ key AND at the other variant:
    # the computed key wins, the stale non-cache copy is an orphan.
    _Case(
        "media_attachments",
        {
            "id": 113709573734409320,
            "account_id": 105585102028813107,
            "status_id": 113709573734409000,
            "type": 0,
            "remote_url": "https://fedi.example/media/twice.png",
            "file_file_name": "84a6a7c6cb496047.png",
            "file_content_type": "image/png",
            "file_storage_schema_version": 1,
        },
        expect=[
            "cache/media_attachments/files/113/709/573/734/409/320/original/84a6a7c6cb496047.png",
            "cache/media_attachments/files/113/709/573/734/409/320/small/84a6a7c6cb496047.png",
        ],
        orphans=[
            "media_attachments/files/113/709/573/734/409/320/original/84a6a7c6cb496047.png",
            "media_attachments/files/113/709/573/734/409/320/small/84a6a7c6cb496047.png",
        ],
    ),
    # Local, unattached (no status yet), owned by a snowflake-id account.
    _Case(
        "media_attachments",
        {
            "id": 109611004723200007,
            "account_id": 107625362227221845,
            "status_id": None,
            "type": 0,
            "remote_url": "",
            "file_file_name": "6d6a345b10ce95d6.jpeg",
            "file_content_type": "image/jpeg",
            "file_storage_schema_version": 1,
        },
        expect=[
            "media_attachments/files/109/611/004/723/200/007/original/6d6a345b10ce95d6.jpeg",
            "media_attachments/files/109/611/004/723/200/007/small/6d6a345b10ce95d6.jpeg",
        ],
    ),
    # Local, of a NOT suspended account, attached to a status a moderator deleted but kept
    # (statuses.deleted_at set): private. This is Mastodon's RemoveStatusService, which makes the media
    # of a deleted-but-kept status private instead of deleting it (docs/mastodon-storage.md, section 7).
    _Case(
        "media_attachments",
        {
            "id": 113901766283648016,
            "account_id": 2,
            "status_id": 113901766283648000,
            "type": 0,
            "remote_url": "",
            "file_file_name": "5f0c2e8d7a9b3146.jpeg",
            "file_content_type": "image/jpeg",
            "file_storage_schema_version": 1,
        },
        status={"deleted_at": DELETED_AT},
        expect=[
            "media_attachments/files/113/901/766/283/648/016/original/5f0c2e8d7a9b3146.jpeg",
            "media_attachments/files/113/901/766/283/648/016/small/5f0c2e8d7a9b3146.jpeg",
        ],
        acl_kind=PRIVATE,
    ),
    # ---------------------------------------------------------------- custom_emojis
    # Local, version NULL: original and static (.png) share the name for a png.
    _Case(
        "custom_emojis",
        {
            "id": 1,
            "shortcode": "blobcat",
            "domain": None,
            "image_file_name": "78ada279bebebf47.png",
            "image_content_type": "image/png",
            "image_storage_schema_version": None,
        },
        expect=[
            "custom_emojis/images/000/000/001/original/78ada279bebebf47.png",
            "custom_emojis/images/000/000/001/static/78ada279bebebf47.png",
        ],
    ),
    # Local gif, version 1: no cache/; static is .png.
    _Case(
        "custom_emojis",
        {
            "id": 2,
            "shortcode": "partyparrot",
            "domain": None,
            "image_file_name": "11eb1145f628562e.gif",
            "image_content_type": "image/gif",
            "image_storage_schema_version": 1,
        },
        expect=[
            "custom_emojis/images/000/000/002/original/11eb1145f628562e.gif",
            "custom_emojis/images/000/000/002/static/11eb1145f628562e.png",
        ],
    ),
    # Remote, version 1: cache/.
    _Case(
        "custom_emojis",
        {
            "id": 3,
            "shortcode": "blobfox",
            "domain": "remote.example",
            "image_file_name": "e2d5f9723dbd801c.png",
            "image_content_type": "image/png",
            "image_remote_url": "https://remote.example/emoji/blobfox.png",
            "uri": "https://remote.example/emojis/3",
            "image_storage_schema_version": 1,
        },
        expect=[
            "cache/custom_emojis/images/000/000/003/original/e2d5f9723dbd801c.png",
            "cache/custom_emojis/images/000/000/003/static/e2d5f9723dbd801c.png",
        ],
    ),
    # Remote, version 0: no cache/.
    _Case(
        "custom_emojis",
        {
            "id": 4,
            "shortcode": "meow",
            "domain": "social.example",
            "image_file_name": "85a8896ca91dd53e.gif",
            "image_content_type": "image/gif",
            "image_remote_url": "https://social.example/emoji/meow.gif",
            "uri": "https://social.example/emojis/4",
            "image_storage_schema_version": 0,
        },
        expect=[
            "custom_emojis/images/000/000/004/original/85a8896ca91dd53e.gif",
            "custom_emojis/images/000/000/004/static/85a8896ca91dd53e.png",
        ],
    ),
    # Remote, image NULL: nothing.
    _Case(
        "custom_emojis",
        {
            "id": 5,
            "shortcode": "ghost",
            "domain": "gone.example",
            "image_remote_url": "https://gone.example/emoji/ghost.png",
            "image_storage_schema_version": 1,
        },
    ),
    # Remote, version 1: original present, static missing.
    _Case(
        "custom_emojis",
        {
            "id": 7,
            "shortcode": "flaky",
            "domain": "flaky.example",
            "image_file_name": "655678ed12a9e45e.png",
            "image_content_type": "image/png",
            "image_remote_url": "https://flaky.example/emoji/flaky.png",
            "image_storage_schema_version": 1,
        },
        expect=["cache/custom_emojis/images/000/000/007/original/655678ed12a9e45e.png"],
        missing=["cache/custom_emojis/images/000/000/007/static/655678ed12a9e45e.png"],
    ),
    # Remote, version NULL, id 1000.
    _Case(
        "custom_emojis",
        {
            "id": 1000,
            "shortcode": "thousand",
            "domain": "remote.example",
            "image_file_name": "d27276f02832f03a.png",
            "image_content_type": "image/png",
            "image_remote_url": "https://remote.example/emoji/thousand.png",
            "image_storage_schema_version": None,
        },
        expect=[
            "custom_emojis/images/000/001/000/original/d27276f02832f03a.png",
            "custom_emojis/images/000/001/000/static/d27276f02832f03a.png",
        ],
    ),
    # ---------------------------------------------------------------- preview_cards (always remote)
    _Case(
        "preview_cards",
        {
            "id": 1,
            "url": "https://news.example/a",
            "title": "A",
            "image_file_name": "9cba3a66e97620ce.jpeg",
            "image_content_type": "image/jpeg",
            "image_storage_schema_version": None,
        },
        expect=["preview_cards/images/000/000/001/original/9cba3a66e97620ce.jpeg"],
    ),
    _Case(
        "preview_cards",
        {
            "id": 2,
            "url": "https://news.example/b",
            "title": "B",
            "image_file_name": "95f43fe74b754cd7.png",
            "image_content_type": "image/png",
            "image_storage_schema_version": 0,
        },
        expect=["preview_cards/images/000/000/002/original/95f43fe74b754cd7.png"],
    ),
    _Case(
        "preview_cards",
        {
            "id": 3,
            "url": "https://blog.example/c",
            "title": "C",
            "image_file_name": "bb4da36f10e012c1.jpeg",
            "image_content_type": "image/jpeg",
            "image_storage_schema_version": 1,
        },
        expect=["cache/preview_cards/images/000/000/003/original/bb4da36f10e012c1.jpeg"],
    ),
    # No image (cleared); its old image is an orphan.
    _Case(
        "preview_cards",
        {"id": 4, "url": "https://blog.example/d", "title": "D", "image_storage_schema_version": 1},
        orphans=["cache/preview_cards/images/000/000/004/original/9501065a0c00160f.jpeg"],
    ),
    _Case(
        "preview_cards",
        {
            "id": 5,
            "url": "https://blog.example/e",
            "title": "E",
            "image_file_name": "bd5d072f93a323de.jpeg",
            "image_content_type": "image/jpeg",
            "image_file_size": 40_960,
            "image_storage_schema_version": 1,
        },
        missing=["cache/preview_cards/images/000/000/005/original/bd5d072f93a323de.jpeg"],
    ),
    # Drift: version 1 computes cache/, the object is at the non-cache key.
    _Case(
        "preview_cards",
        {
            "id": 7,
            "url": "https://video.example/g",
            "title": "G",
            "image_file_name": "ca306f0ae787e5cb.png",
            "image_content_type": "image/png",
            "image_storage_schema_version": 1,
        },
        expect=[
            _Drift(
                actual="preview_cards/images/000/000/007/original/ca306f0ae787e5cb.png",
                computed="cache/preview_cards/images/000/000/007/original/ca306f0ae787e5cb.png",
            ),
        ],
    ),
    _Case(
        "preview_cards",
        {
            "id": 123456,
            "url": "https://video.example/f",
            "title": "F",
            "image_file_name": "5e4bb145e45e0835.webp",
            "image_content_type": "image/webp",
            "image_storage_schema_version": 1,
        },
        expect=["cache/preview_cards/images/000/123/456/original/5e4bb145e45e0835.webp"],
    ),
    # ---------------------------------------------------------------- site_uploads (never cache/)
    _Case(
        "site_uploads",
        {"id": 1, "var": "thumbnail", "file_file_name": "c8d3f6dbaea08459.jpeg", "file_content_type": "image/jpeg"},
        expect=[
            "site_uploads/files/000/000/001/original/c8d3f6dbaea08459.jpeg",
            "site_uploads/files/000/000/001/@1x/c8d3f6dbaea08459.png",
            "site_uploads/files/000/000/001/@2x/c8d3f6dbaea08459.png",
        ],
    ),
    _Case(
        "site_uploads",
        {"id": 2, "var": "favicon", "file_file_name": "7f215240a9100826.png", "file_content_type": "image/png"},
        expect=[
            "site_uploads/files/000/000/002/original/7f215240a9100826.png",
            "site_uploads/files/000/000/002/ico/7f215240a9100826.ico",
            "site_uploads/files/000/000/002/16/7f215240a9100826.png",
            "site_uploads/files/000/000/002/32/7f215240a9100826.png",
            "site_uploads/files/000/000/002/48/7f215240a9100826.png",
        ],
    ),
    _Case(
        "site_uploads",
        {"id": 3, "var": "app_icon", "file_file_name": "debda7b8b12e5d0d.png", "file_content_type": "image/png"},
        expect=[
            "site_uploads/files/000/000/003/original/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/57/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/60/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/72/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/76/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/114/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/120/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/144/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/152/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/167/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/180/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/1024/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/36/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/48/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/96/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/192/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/256/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/384/debda7b8b12e5d0d.png",
            "site_uploads/files/000/000/003/512/debda7b8b12e5d0d.png",
        ],
    ),
    # mascot: original only (a gif gets no static either).
    _Case(
        "site_uploads",
        {"id": 4, "var": "mascot", "file_file_name": "ea2abebb40047da6.gif", "file_content_type": "image/gif"},
        expect=["site_uploads/files/000/000/004/original/ea2abebb40047da6.gif"],
    ),
    # A var without styles (the pre-4.0 "hero"): original only.
    _Case(
        "site_uploads",
        {"id": 5, "var": "hero", "file_file_name": "ea25c60f828db064.jpeg", "file_content_type": "image/jpeg"},
        expect=["site_uploads/files/000/000/005/original/ea25c60f828db064.jpeg"],
    ),
    # ---------------------------------------------------------------- preview_card_providers (never cache/)
    _Case(
        "preview_card_providers",
        {"id": 1, "domain": "news.example", "icon_file_name": "fd64365bb08c03e5.png", "icon_content_type": "image/png"},
        expect=[
            "preview_card_providers/icons/000/000/001/original/fd64365bb08c03e5.png",
            "preview_card_providers/icons/000/000/001/static/fd64365bb08c03e5.png",
        ],
    ),
    _Case(
        "preview_card_providers",
        {
            "id": 2,
            "domain": "blog.example",
            "icon_file_name": "5c3b8e98087ff594.jpeg",
            "icon_content_type": "image/jpeg",
        },
        expect=[
            "preview_card_providers/icons/000/000/002/original/5c3b8e98087ff594.jpeg",
            "preview_card_providers/icons/000/000/002/static/5c3b8e98087ff594.png",
        ],
    ),
    _Case("preview_card_providers", {"id": 3, "domain": "video.example"}),
    # ---------------------------------------------------------------- backups (always private, never cache/)
    _Case(
        "backups",
        {
            "id": 1,
            "user_id": 1,
            "processed": True,
            "dump_file_name": "archive-20240301120000-2d2607cbd4779c81e116c51b75392923.zip",
            "dump_content_type": "application/zip",
        },
        expect=["backups/dumps/000/000/001/original/archive-20240301120000-2d2607cbd4779c81e116c51b75392923.zip"],
        acl_kind=PRIVATE,
    ),
    # Not processed yet: no dump.
    _Case("backups", {"id": 2, "user_id": 2, "processed": False}),
    _Case(
        "backups",
        {
            "id": 3,
            "user_id": 2,
            "processed": True,
            "dump_file_name": "archive-20240615083000-d6902f21604c4e57b33eb8f3c8f5cf28.zip",
            "dump_content_type": "application/zip",
        },
        expect=["backups/dumps/000/000/003/original/archive-20240615083000-d6902f21604c4e57b33eb8f3c8f5cf28.zip"],
        acl_kind=PRIVATE,
    ),
]

_EXTRA_ORPHANS = [
    # Objects of deleted rows.
    "media_attachments/files/000/000/099/original/fe1c8ec6de9d041e.jpeg",
    "media_attachments/files/000/000/099/small/fe1c8ec6de9d041e.jpeg",
    "custom_emojis/images/000/000/006/original/fafa20e71d498aa8.png",
    "custom_emojis/images/000/000/006/static/fafa20e71d498aa8.png",
    "backups/dumps/000/000/009/original/archive-20230101000000-d6cf5e9431a159d6e63f108d38a32733.zip",
    # A class Mastodon no longer has (the pre-4.2 account imports).
    "imports/data/000/000/001/original/893844411d5126a4.csv",
]

# --------------------------------------------------------------------------------------
# Completing rows with the columns every row has (what the database would return)

ATTACHMENTS: dict[str, tuple[str, ...]] = {
    "accounts": ("avatar", "header"),
    "media_attachments": ("file", "thumbnail"),
    "custom_emojis": ("image",),
    "preview_cards": ("image",),
    "site_uploads": ("file",),
    "preview_card_providers": ("icon",),
    "backups": ("dump",),
}
HAS_STORAGE_SCHEMA_VERSION = frozenset({"accounts", "media_attachments", "custom_emojis", "preview_cards"})
_ATTACHMENT_DIRS = {
    ("accounts", "avatars"): "avatar",
    ("accounts", "headers"): "header",
    ("media_attachments", "files"): "file",
    ("media_attachments", "thumbnails"): "thumbnail",
    ("custom_emojis", "images"): "image",
    ("preview_cards", "images"): "image",
    ("site_uploads", "files"): "file",
    ("preview_card_providers", "icons"): "icon",
    ("backups", "dumps"): "dump",
}
_TABLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "accounts": {"domain": None, "suspended_at": None, "avatar_remote_url": None, "header_remote_url": ""},
    "media_attachments": {"remote_url": "", "account_id": None, "status_id": None, "type": 0},
    "custom_emojis": {"domain": None},
    "preview_cards": {},
    "site_uploads": {"var": ""},
    "preview_card_providers": {},
    "backups": {},
}


def _complete_row(table: str, row: Mapping[str, Any], index: int) -> dict[str, Any]:
    created = T0 + timedelta(hours=index)
    full: dict[str, Any] = {"created_at": created, "updated_at": created, **_TABLE_DEFAULTS[table]}
    for attachment in ATTACHMENTS[table]:
        for suffix in ("file_name", "content_type", "file_size", "updated_at"):
            full[f"{attachment}_{suffix}"] = None
        if table in HAS_STORAGE_SCHEMA_VERSION:
            full[f"{attachment}_storage_schema_version"] = None
    full.update(row)
    for attachment in ATTACHMENTS[table]:
        if full[f"{attachment}_file_name"] and full[f"{attachment}_updated_at"] is None:
            full[f"{attachment}_updated_at"] = full["updated_at"]
    if table == "accounts":
        full.setdefault("uri", "" if full["domain"] is None else f"https://{full['domain']}/users/{full['username']}")
    if table == "media_attachments" and full["file_file_name"] and full["file_content_type"].startswith("image/"):
        full.setdefault(
            "file_meta", {"original": {"width": 1200, "height": 800}, "small": {"width": 640, "height": 427}}
        )
    return full


def _status_row(media: Mapping[str, Any], account: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The ``statuses`` row a media row is attached to: posted by the media's account when it was uploaded."""
    domain = account["domain"] or LOCAL_DOMAIN
    return {
        "id": media["status_id"],
        "account_id": account["id"],
        "uri": f"https://{domain}/users/{account['username']}/statuses/{media['status_id']}",
        "url": f"https://{domain}/@{account['username']}/{media['status_id']}",
        "text": f"<p>media {media['id']}</p>",
        "local": account["domain"] is None,
        "visibility": 0,
        "ordered_media_attachment_ids": [media["id"]],
        "created_at": media["created_at"],
        "updated_at": media["updated_at"],
        "deleted_at": None,
        **extra,
    }


def _parse_key(key: str) -> tuple[str, str, str, str]:
    """(table, attachment, style, filename) of a hand-written key, to check the hand-written data."""
    parts = key.removeprefix("cache/").split("/")
    return parts[0], _ATTACHMENT_DIRS[(parts[0], parts[1])], parts[-2], parts[-1]


def build_fake_instance() -> FakeInstance:
    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLE_NAMES}
    expected: list[ExpectedObject] = []
    missing: list[tuple[str, int, str]] = []
    orphans: list[str] = list(_EXTRA_ORPHANS)
    statuses: dict[int, dict[str, Any]] = {}
    for index, case in enumerate(_CASES):
        row = _complete_row(case.table, case.row, index)
        assert not case.status or case.table == "media_attachments", case.row
        if case.table == "media_attachments" and row["status_id"] is not None:
            assert row["status_id"] not in statuses, f"status {row['status_id']} has two media rows"
            [account] = [account for account in rows["accounts"] if account["id"] == row["account_id"]]
            statuses[row["status_id"]] = _status_row(row, account, case.status)
            # Media is private when its account is suspended or its status deleted but kept.
            hidden = account["suspended_at"] is not None or statuses[row["status_id"]]["deleted_at"] is not None
            assert hidden == (case.acl_kind == PRIVATE), case.row
        for entry in case.expect:
            actual, computed = (entry.actual, entry.computed) if isinstance(entry, _Drift) else (entry, None)
            table, attachment, style, filename = _parse_key(actual)
            assert table == case.table, actual
            body = body_for(actual)
            content_type = content_type_for(actual)
            if style == "original":
                assert row[f"{attachment}_file_name"] == filename, actual
                assert row[f"{attachment}_content_type"] == content_type, actual
                row[f"{attachment}_file_size"] = len(body)
            expected.append(ExpectedObject(actual, case.table, row["id"], content_type, case.acl_kind, body, computed))
        for key in case.missing:
            table, attachment, style, filename = _parse_key(key)
            assert table == case.table, key
            if style == "original":
                assert row[f"{attachment}_file_name"] == filename, key
                assert row[f"{attachment}_file_size"] is not None, key
            missing.append((case.table, row["id"], key))
        orphans.extend(case.orphans)
        rows[case.table].append(row)

    source_keys = [obj.key for obj in expected] + orphans
    assert len(set(source_keys)) == len(source_keys), "a key is listed twice"
    absent = {key for _, _, key in missing} | {obj.computed_key for obj in expected if obj.computed_key}
    assert not absent & set(source_keys), "a missing or drifted key is at the source"
    bodies = [body_for(key) for key in source_keys]
    assert len(set(bodies)) == len(bodies), "two objects share a body"
    for table, table_rows in rows.items():
        ids = [row["id"] for row in table_rows]
        assert len(set(ids)) == len(ids), f"duplicate id in {table}"
    return FakeInstance(
        rows=rows,
        expected=expected,
        missing=missing,
        orphans=orphans,
        row_counts={table: len(table_rows) for table, table_rows in rows.items()},
        statuses=sorted(statuses.values(), key=lambda status: status["id"]),
    )


# --------------------------------------------------------------------------------------
# Seeding a database and a bucket


def create_schema(database_url: str) -> None:
    """Create Mastodon's tables (``SCHEMA_SQL``) on a fresh database."""
    import psycopg2

    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(SCHEMA_SQL.read_text())
    conn.close()


def _adapt(value: Any) -> Any:
    from psycopg2.extras import Json

    return Json(value) if isinstance(value, dict) else value


SNOWFLAKE_TABLES = frozenset({"accounts", "statuses", "media_attachments"})
"""Tables whose id defaults to ``timestamp_id()`` rather than a serial sequence."""


def insert_rows(database_url: str, instance: FakeInstance) -> None:
    """Insert the instance's rows (media tables and statuses) and move the serial sequences past them."""
    import psycopg2
    from psycopg2 import sql

    tables = [(table, instance.rows[table]) for table in TABLE_NAMES] + [("statuses", instance.statuses)]
    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        for table, table_rows in tables:
            for row in table_rows:
                columns = list(row)
                cursor.execute(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        sql.Identifier(table),
                        sql.SQL(", ").join(map(sql.Identifier, columns)),
                        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                    ),
                    [_adapt(row[column]) for column in columns],
                )
            if table not in SNOWFLAKE_TABLES and table_rows:
                cursor.execute(
                    sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
                        sql.Literal(table), sql.Identifier(table)
                    )
                )
    conn.close()


def ensure_bucket(s3_client, bucket: str) -> None:
    """Create ``bucket`` unless it exists."""
    from botocore.exceptions import ClientError

    try:
        s3_client.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = s3_client.meta.region_name
    extra = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3_client.create_bucket(Bucket=bucket, **extra)


def _put_all(s3_client, bucket: str, key_prefix: str, objects: Iterable[tuple[str, Any, str]], workers: int) -> None:
    """PUT (key, body or body factory, content_type) objects under ``key_prefix``, concurrently."""

    def put(item: tuple[str, Any, str]) -> None:
        key, body, content_type = item
        s3_client.put_object(
            Bucket=bucket,
            Key=with_key_prefix(key_prefix, key),
            Body=body() if callable(body) else body,
            ContentType=content_type,
            CacheControl=CACHE_CONTROL,
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(put, objects):
            pass


def upload_objects(s3_client, bucket: str, key_prefix: str, instance: FakeInstance, *, workers: int = 8) -> None:
    """Put every expected object and orphan (never the missing ones) into ``bucket``."""
    ensure_bucket(s3_client, bucket)
    _put_all(s3_client, bucket, key_prefix, instance.source_objects(), workers)


def seed(
    database_url: str,
    s3_client,
    bucket: str,
    key_prefix: str = "",
    *,
    instance: FakeInstance | None = None,
) -> FakeInstance:
    """Create the schema on a fresh database, insert the rows, fill the source bucket."""
    instance = instance or build_fake_instance()
    create_schema(database_url)
    insert_rows(database_url, instance)
    upload_objects(s3_client, bucket, key_prefix, instance)
    return instance


# --------------------------------------------------------------------------------------
# Volume


def _bulk_body(filler: bytes, key: str, length: int) -> Callable[[], bytes]:
    """Makes, when uploaded, a body of ``length`` bytes unique to ``key``: its SHA-256, then ``filler``."""

    def make() -> bytes:
        head = hashlib.sha256(key.encode()).digest()
        tail = length - len(head)
        repeats = tail // len(filler) + 1
        return (head + (filler * repeats)[:tail])[:length]

    return make


def _bulk_id_partition(record_id: int) -> str:
    """Independent of layout.py: 9 digits below 10^9, else at least 12, in whole groups of 3."""
    digits = f"{record_id:09d}" if record_id < 1_000_000_000 else f"{record_id:012d}"
    return "/".join(digits[i : i + 3] for i in range(0, len(digits) - len(digits) % 3, 3))


def seed_bulk(
    database_url: str,
    s3_client,
    bucket: str,
    key_prefix: str = "",
    *,
    rows: int,
    start_id: int = BULK_START_ID,
    seed: int = 0,
    size_scale: float = 0.01,
    account_id: int = 1,
    workers: int = 16,
) -> list[str]:
    """Add ``rows`` local jpeg media_attachments (original + small) with ids from ``start_id``, and their objects.

    Sizes follow a realistic mix scaled by ``size_scale`` (1.0: originals mostly
    20-200 KB, some up to 4 MB, smalls 5-40 KB; the default 0.01 keeps a run
    tiny). The schema must exist (``seed`` or ``create_schema``). Returns the
    keys (relative to the key prefix) that a sync must copy.
    """
    import psycopg2
    from psycopg2.extras import Json, execute_values

    rng = random.Random(seed)
    filler = random.Random(seed + 1).randbytes(1 << 20)

    def size(kilobytes: float, minimum: int) -> int:
        return max(minimum, int(kilobytes * 1024 * size_scale))

    db_rows = []
    objects = []
    created = T0 + timedelta(days=30)
    for index in range(rows):
        record_id = start_id + index
        name = hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()[:16] + ".jpeg"
        roll = rng.random()
        if roll < 0.80:
            original_size = size(rng.uniform(20, 200), 64)
        elif roll < 0.95:
            original_size = size(rng.uniform(200, 1000), 64)
        else:
            original_size = size(rng.uniform(1000, 4000), 64)
        small_size = size(rng.uniform(5, 40), 48)
        partition = _bulk_id_partition(record_id)
        for style, length in (("original", original_size), ("small", small_size)):
            key = f"media_attachments/files/{partition}/{style}/{name}"
            objects.append((key, _bulk_body(filler, key, length), "image/jpeg"))
        db_rows.append(
            (
                record_id,
                account_id,
                name,
                "image/jpeg",
                original_size,
                created,
                "",
                created,
                created,
                0,
                Json({"original": {"width": 1280, "height": 960}, "small": {"width": 640, "height": 480}}),
                1,
            )
        )

    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        execute_values(
            cursor,
            "INSERT INTO media_attachments (id, account_id, file_file_name, file_content_type, file_file_size,"
            " file_updated_at, remote_url, created_at, updated_at, type, file_meta, file_storage_schema_version)"
            " VALUES %s",
            db_rows,
            page_size=1000,
        )
    conn.close()

    ensure_bucket(s3_client, bucket)
    _put_all(s3_client, bucket, key_prefix, objects, workers)
    return [key for key, _, _ in objects]


def seed_bulk_all_tables(
    database_url: str,
    client,
    bucket: str,
    objects: int,
    prefix: str = "",
    *,
    start_id: int = BULK_START_ID,
    serial_start_id: int = 100_000,
    seed: int = 0,
    size_scale: float = 1.0,
    workers: int = 16,
) -> list[str]:
    """Add rows to all seven media tables that reference ``objects`` objects in all, and those objects.

    The shares follow a typical instance: media_attachments about 60 % of the
    objects (jpeg/png/webp with ``small``, gif and video with a ``.png`` small,
    some video/audio thumbnails, audio original only; half of them remote under
    ``cache/``, some remote ones evicted), accounts about 15 % (mostly remote
    with domains, ``cache/`` where storage_schema_version = 1; gif avatars and
    headers add ``static``), preview_cards about 15 % (always remote), custom
    emojis about 6 % (original + static), preview_card_providers (icon +
    static), site_uploads (one row per ``var``, every style; the legacy favicon
    ``ico`` included) and backups about 1 %. Sizes, at ``size_scale`` 1.0: small
    derivatives (1-80 kB), originals mostly 10-200 kB, a few of 1-4 MB (large
    photos, videos, audio, backups). Snowflake tables get ids from ``start_id``
    (media rows get ``statuses`` rows too), serial ones from ``serial_start_id``
    + 1 (their sequences are moved past them). The schema must exist.

    Unlike the hand-written instance, this is no oracle for the layout code: it is
    volume for benchmarks, and takes its keys from that code.

    The keys are computed from the inserted rows read back with each table's
    ``select_sql``, by ``TABLES[table].objects_for_row`` (every style, optional
    ones too), so they are exactly what a sync reads; every one of them is
    uploaded, nothing else. Returns the keys (relative to the key prefix).
    """
    import psycopg2
    from psycopg2 import sql
    from psycopg2.extras import Json, RealDictCursor, execute_values

    from mastodon_s3_sync.core.mastodon.tables import TABLES

    rng = random.Random(seed)
    filler = random.Random(seed + 1).randbytes(1 << 20)

    def kilobytes(low: float, high: float, minimum: int = 48) -> int:
        return max(minimum, int(rng.uniform(low, high) * 1024 * size_scale))

    def photo_size() -> int:  # seed_bulk's mix
        roll = rng.random()
        return kilobytes(20, 200) if roll < 0.80 else kilobytes(200, 1000) if roll < 0.95 else kilobytes(1000, 4000)

    def name(extension: str) -> str:
        return hashlib.sha256(f"{seed}:{rng.random()}".encode()).hexdigest()[:16] + "." + extension

    created = T0 + timedelta(days=30)
    # Budgets (objects per table); media_attachments gets the rest, so the total is exact.
    site_objects = 28 if objects >= 1000 else 4 if objects >= 100 else 0
    budgets = {
        "accounts": int(objects * 0.15),
        "preview_cards": int(objects * 0.15),
        "custom_emojis": int(objects * 0.06) // 2 * 2,
        "preview_card_providers": max(0, int(objects * 0.03) - site_objects) // 2 * 2,
        "site_uploads": site_objects,
        "backups": int(objects * 0.01),
    }
    budgets["media_attachments"] = objects - sum(budgets.values())

    def blank(table: str) -> dict[str, Any]:
        row: dict[str, Any] = {"created_at": created, "updated_at": created}
        for attachment in ATTACHMENTS[table]:
            row |= {f"{attachment}_{suffix}": None for suffix in ("file_name", "content_type", "file_size")}
            row[f"{attachment}_updated_at"] = None
            if table in HAS_STORAGE_SCHEMA_VERSION:
                row[f"{attachment}_storage_schema_version"] = None
        return row

    def attach(row: dict[str, Any], attachment: str, file_name: str, content_type: str, size: int, version=1):
        row |= {
            f"{attachment}_file_name": file_name,
            f"{attachment}_content_type": content_type,
            f"{attachment}_file_size": size,
            f"{attachment}_updated_at": created,
        }
        if f"{attachment}_storage_schema_version" in row:
            row[f"{attachment}_storage_schema_version"] = version

    # Derivative sizes by style: (low, high) in kB.
    derivative_kb = {"small": (5, 40), "static": (2, 40), "@1x": (10, 60), "@2x": (20, 120), "ico": (1, 8)}

    def derivative_size(table: str, attachment: str, style: str, file_name: str) -> int:
        if table == "media_attachments" and style == "small" and not file_name.endswith((".jpeg", ".png", ".webp")):
            return kilobytes(20, 80)  # a video's or gif's first frame as png
        if style.isdigit():
            return kilobytes(int(style) / 40, int(style) / 4 + 2, minimum=64)  # app icon / favicon sizes
        return kilobytes(*derivative_kb.get(style, (5, 40)))

    def _selected_like(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """A generated row with the columns that ``select_sql`` adds by its joins (they decide ACLs, not keys)."""
        selected = dict(row)
        if table == "media_attachments":
            selected |= {"account_suspended_at": None, "status_deleted_at": None}
        return selected

    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLE_NAMES}
    sizes: dict[str, int] = {}
    """key -> size, from the rows as generated; the read-back rows must name exactly these keys."""
    statuses: list[dict[str, Any]] = []

    def add(table: str, row: dict[str, Any]) -> int:
        """Keep ``row`` and size its objects; the number of objects."""
        found = TABLES[table].objects_for_row(_selected_like(table, row), "public-read")
        for media_object in found:
            file_name = row[f"{media_object.attachment}_file_name"]
            sizes[media_object.key] = (
                row[f"{media_object.attachment}_file_size"]
                if media_object.style == "original"
                else derivative_size(table, media_object.attachment, media_object.style, file_name)
            )
        rows[table].append(row)
        return len(found)

    def fill(table: str, make_row) -> None:
        remaining, index = budgets[table], 0
        while remaining > 0:
            row = make_row(index, remaining)
            count = len(TABLES[table].objects_for_row(_selected_like(table, row), "public-read"))
            if count <= remaining:
                remaining -= add(table, row)
                index += 1

    # accounts: 85 % remote (200 domains; 80 % storage schema version 1, so cache/), 10 % of
    # the remote ones evicted (no files); avatars 90 %, headers 60 %; gif ones add static.
    snowflake = iter(range(start_id, start_id + 10 * objects + 1000))

    def image_type() -> tuple[str, str]:
        roll = rng.random()
        return ("jpeg", "image/jpeg") if roll < 0.6 else ("png", "image/png") if roll < 0.9 else ("gif", "image/gif")

    def account(index: int, remaining: int) -> dict[str, Any]:
        row = blank("accounts") | {"id": next(snowflake), "username": f"user{index}"}
        remote = rng.random() < 0.85
        row["domain"] = f"remote{index % 200}.example" if remote else None
        row["uri"] = f"https://{row['domain']}/users/user{index}" if remote else ""
        row["suspended_at"] = SUSPENDED_AT if rng.random() < 0.01 else None
        if remote and rng.random() < 0.10:
            return row  # evicted
        version = 1 if not remote or rng.random() < 0.8 else None
        for attachment, chance, low, high in (("avatar", 0.9, 10, 150), ("header", 0.6, 30, 300)):
            if rng.random() < chance or (attachment == "avatar" and remaining == 1):
                extension, content_type = image_type() if remaining > 1 else ("jpeg", "image/jpeg")
                attach(row, attachment, name(extension), content_type, kilobytes(low, high), version)
                if remaining == 1:
                    break
        return row

    fill("accounts", account)
    account_ids = [row["id"] for row in rows["accounts"]] or [1]

    # preview_cards: always remote (cache/ from version 1), 20 % without image.
    serial = {table: iter(range(serial_start_id + 1, serial_start_id + 10 * objects + 1000)) for table in TABLE_NAMES}

    def card(index: int, remaining: int) -> dict[str, Any]:
        row_id = next(serial["preview_cards"])
        row = blank("preview_cards") | {"id": row_id, "url": f"https://site{index % 500}.example/article/{row_id}"}
        row |= {"title": f"Article {row_id}", "provider_name": f"site{index % 500}", "width": 400, "height": 400}
        if rng.random() < 0.8:
            extension, content_type = ("jpeg", "image/jpeg") if rng.random() < 0.8 else ("png", "image/png")
            attach(row, "image", name(extension), content_type, kilobytes(10, 150), 1 if rng.random() < 0.8 else None)
        return row

    fill("preview_cards", card)

    def emoji(index: int, remaining: int) -> dict[str, Any]:
        row = blank("custom_emojis") | {"id": next(serial["custom_emojis"]), "shortcode": f"emoji_{index}"}
        row["domain"] = f"remote{index % 200}.example" if rng.random() < 0.8 else None
        extension, content_type = ("gif", "image/gif") if rng.random() < 0.15 else ("png", "image/png")
        attach(row, "image", name(extension), content_type, kilobytes(1, 30, 64), 1)
        return row

    fill("custom_emojis", emoji)

    def provider(index: int, remaining: int) -> dict[str, Any]:
        row = blank("preview_card_providers") | {"id": next(serial["preview_card_providers"])}
        row |= {"domain": f"provider{index}.example", "trendable": True}
        extension, content_type = ("png", "image/png") if rng.random() < 0.7 else ("jpeg", "image/jpeg")
        attach(row, "icon", name(extension), content_type, kilobytes(1, 20, 64))
        return row

    fill("preview_card_providers", provider)

    # site_uploads.var is unique: one row of each.
    site_vars = (
        ["thumbnail", "favicon", "app_icon", "mascot"]
        if site_objects == 28
        else ["thumbnail", "mascot"]
        if site_objects
        else []
    )
    for var in site_vars:
        row = blank("site_uploads") | {"id": next(serial["site_uploads"]), "var": var}
        size = kilobytes(100, 500) if var in ("thumbnail", "mascot") else kilobytes(5, 60)
        attach(row, "file", name("png"), "image/png", size)
        row["meta"] = {"original": {"width": 1200, "height": 630}}
        add("site_uploads", row)

    def backup(index: int, remaining: int) -> dict[str, Any]:
        row_id = next(serial["backups"])
        row = blank("backups") | {"id": row_id, "user_id": 1 + index, "processed": True}
        archive = f"archive-20240301120000-{hashlib.md5(f'{seed}:{row_id}'.encode()).hexdigest()}.zip"
        attach(row, "dump", archive, "application/zip", kilobytes(200, 3000))
        return row

    fill("backups", backup)

    # media_attachments: the rest. Half remote (cache/ from version 1; 10 % of them evicted).
    def media(index: int, remaining: int) -> dict[str, Any]:
        row_id = next(snowflake)
        row = blank("media_attachments") | {"id": row_id, "account_id": rng.choice(account_ids)}
        remote = rng.random() < 0.5
        row["remote_url"] = f"https://remote{index % 200}.example/media/{row_id}" if remote else ""
        if remote and rng.random() < 0.10:
            return row  # evicted remote media: a row, no object
        version = 1 if rng.random() < 0.9 else None
        roll = rng.random() if remaining > 3 else 0.995  # audio without thumbnail fits one object
        if roll < 0.55:
            kind, extension, content_type, size = 0, "jpeg", "image/jpeg", photo_size()
        elif roll < 0.75:
            kind, extension, content_type, size = 0, "png", "image/png", photo_size()
        elif roll < 0.85:
            kind, extension, content_type, size = 0, "webp", "image/webp", photo_size()
        elif roll < 0.90:
            kind, extension, content_type, size = 1, "mp4", "video/mp4", kilobytes(100, 1000)  # gifv
        elif roll < 0.94:
            kind, extension, content_type, size = 0, "gif", "image/gif", kilobytes(100, 1500)
        elif roll < 0.98:
            kind, extension, content_type, size = 2, "mp4", "video/mp4", kilobytes(300, 3000)
        else:
            kind, extension, content_type, size = 4, "mp3", "audio/mpeg", kilobytes(200, 2500)
        attach(row, "file", name(extension), content_type, size, version)
        row["type"] = kind
        if kind in (2, 4) and remaining > 3 and rng.random() < 0.3:
            attach(row, "thumbnail", name("jpeg"), "image/jpeg", kilobytes(10, 60), version)
        if content_type.startswith("image/"):
            row["file_meta"] = {"original": {"width": 1280, "height": 960}, "small": {"width": 640, "height": 480}}
        if rng.random() < 0.8:
            row["status_id"] = next(snowflake)
            owner = row["account_id"]
            statuses.append(
                {
                    "id": row["status_id"],
                    "account_id": owner,
                    "uri": f"https://{LOCAL_DOMAIN}/statuses/{row['status_id']}",
                    "text": f"<p>media {row_id}</p>",
                    "local": not remote,
                    "visibility": 0,
                    "ordered_media_attachment_ids": [row_id],
                    "created_at": created,
                    "updated_at": created,
                }
            )
        else:
            row["status_id"] = None
        return row

    fill("media_attachments", media)

    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        for table, table_rows in [*rows.items(), ("statuses", statuses)]:
            for columns in {tuple(row) for row in table_rows}:  # rows of one shape per INSERT
                execute_values(
                    cursor,
                    sql.SQL("INSERT INTO {} ({}) VALUES %s")
                    .format(sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
                    .as_string(cursor),
                    [
                        [Json(row[c]) if isinstance(row[c], dict) else row[c] for c in columns]
                        for row in table_rows
                        if tuple(row) == columns
                    ],
                    page_size=1000,
                )
            if table not in SNOWFLAKE_TABLES and table_rows:
                cursor.execute(
                    sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
                        sql.Literal(table), sql.Identifier(table)
                    )
                )
    # The keys, from the rows as the sync reads them.
    keys: list[str] = []
    with psycopg2.connect(database_url) as conn, conn.cursor(cursor_factory=RealDictCursor) as cursor:
        for table, table_rows in rows.items():
            if not table_rows:
                continue
            ids = [row["id"] for row in table_rows]
            cursor.execute(TABLES[table].select_sql("t.id BETWEEN %s AND %s"), (min(ids), max(ids)))
            for row in cursor:
                keys += [media_object.key for media_object in TABLES[table].objects_for_row(row, "public-read")]
    conn.close()
    if sorted(keys) != sorted(sizes) or len(set(keys)) != len(keys):
        raise AssertionError("the rows read back reference other objects than the rows generated")

    ensure_bucket(client, bucket)
    _put_all(
        client,
        bucket,
        prefix,
        [(key, _bulk_body(filler, key, sizes[key]), content_type_for(key)) for key in keys],
        workers,
    )
    return keys
