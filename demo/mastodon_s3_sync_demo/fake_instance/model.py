"""The fake instance's data types: a hand-written case, a table's fake description, the instance built from them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # bulk.py imports the tables, whose generators take a BulkRows
    from mastodon_s3_sync_demo.fake_instance.bulk import BulkRows

PERMISSION = "permission"
"""``acl_kind``: the configured permission (``S3_PERMISSION``)."""
PRIVATE = "private"
"""``acl_kind``: always ``private`` (backups, media of suspended accounts)."""

T0 = datetime(2024, 3, 1, 12, 0, 0)
SUSPENDED_AT = datetime(2024, 2, 20, 9, 30, 0)
DELETED_AT = datetime(2024, 6, 11, 16, 45, 0)
LOCAL_DOMAIN = "mastodon.example"


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


@dataclass(frozen=True)
class Drift:
    actual: str
    """Where the object really is at the source (and must be at the destination)."""
    computed: str
    """The key the row computes, absent at the source."""


@dataclass(frozen=True)
class Case:
    """One hand-written row and, beside it, the keys it references, written by hand from the spec."""

    row: dict[str, Any]
    expect: Sequence[str | Drift] = ()
    missing: Sequence[str] = ()
    acl_kind: str = PERMISSION
    orphans: Sequence[str] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    """media_attachments only: columns of the ``statuses`` row ``status_id`` points at, beyond the usual ones."""


def _complete_nothing(row: dict[str, Any]) -> None:
    pass


@dataclass(frozen=True)
class FakeTable:
    """A media table of the fake instance: its hand-written cases and its bulk generator.

    Written independently of ``mastodon_s3_sync.core.mastodon.tables`` (the oracle must
    not borrow from the code it checks); ``test_fake_tables`` checks that the two agree."""

    name: str
    attachments: Mapping[str, str]
    """Attachment -> its key's directory (``{"avatar": "avatars"}``)."""
    storage_schema_version: bool
    """Whether each attachment has a ``<attachment>_storage_schema_version`` column."""
    snowflake_ids: bool
    """Ids from ``timestamp_id()``; otherwise a serial sequence."""
    defaults: Mapping[str, Any]
    """Columns every row has (beyond attachments and timestamps) unless its case sets them."""
    cases: Sequence[Case]
    bulk_budget: Callable[[int], int] | None
    """Its objects out of a ``seed_bulk_all_tables`` total; None: the rest (one table)."""
    bulk_rows: Callable[[BulkRows], None]
    """Adds its share of ``seed_bulk_all_tables``' rows."""
    complete_row: Callable[[dict[str, Any]], None] = _complete_nothing
    """Fills columns a completed row derives from its others (an account's ``uri``)."""
    other_schema_tables: tuple[str, ...] = ()
    """Tables of Mastodon's schema its rows point at, emitted before it (media: ``statuses``)."""

    @property
    def schema_tables(self) -> tuple[str, ...]:
        """Its tables in ``schema/mastodon_schema.sql``, in order."""
        return (*self.other_schema_tables, self.name)
