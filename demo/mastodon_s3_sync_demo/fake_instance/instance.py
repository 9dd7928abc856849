"""The hand-written instance: every table's cases completed into rows, their objects, orphans and statuses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from mastodon_s3_sync_demo.fake_instance.model import (
    LOCAL_DOMAIN,
    PRIVATE,
    T0,
    Drift,
    ExpectedObject,
    FakeInstance,
    body_for,
    content_type_for,
)
from mastodon_s3_sync_demo.fake_instance.tables import FAKE_TABLES

EXTRA_ORPHANS = [
    # Objects of deleted rows.
    "media_attachments/files/000/000/099/original/fe1c8ec6de9d041e.jpeg",
    "media_attachments/files/000/000/099/small/fe1c8ec6de9d041e.jpeg",
    "custom_emojis/images/000/000/006/original/fafa20e71d498aa8.png",
    "custom_emojis/images/000/000/006/static/fafa20e71d498aa8.png",
    "backups/dumps/000/000/009/original/archive-20230101000000-d6cf5e9431a159d6e63f108d38a32733.zip",
    # A class Mastodon no longer has (the pre-4.2 account imports).
    "imports/data/000/000/001/original/893844411d5126a4.csv",
]
"""Orphans no case's row had: objects of deleted rows, a legacy class."""


def complete_row(table: str, row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """``row`` with every column the sync reads (what the database would return for it)."""
    fake = FAKE_TABLES[table]
    created = T0 + timedelta(hours=index)
    full: dict[str, Any] = {"created_at": created, "updated_at": created, **fake.defaults}
    for attachment in fake.attachments:
        for suffix in ("file_name", "content_type", "file_size", "updated_at"):
            full[f"{attachment}_{suffix}"] = None
        if fake.storage_schema_version:
            full[f"{attachment}_storage_schema_version"] = None
    full.update(row)
    for attachment in fake.attachments:
        if full[f"{attachment}_file_name"] and full[f"{attachment}_updated_at"] is None:
            full[f"{attachment}_updated_at"] = full["updated_at"]
    fake.complete_row(full)
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
    [attachment] = [a for a, directory in FAKE_TABLES[parts[0]].attachments.items() if directory == parts[1]]
    return parts[0], attachment, parts[-2], parts[-1]


def build_fake_instance() -> FakeInstance:
    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in FAKE_TABLES}
    expected: list[ExpectedObject] = []
    missing: list[tuple[str, int, str]] = []
    orphans: list[str] = list(EXTRA_ORPHANS)
    statuses: dict[int, dict[str, Any]] = {}
    cases = [(fake.name, case) for fake in FAKE_TABLES.values() for case in fake.cases]
    for index, (table_name, case) in enumerate(cases):
        row = complete_row(table_name, case.row, index)
        assert not case.status or table_name == "media_attachments", case.row
        if table_name == "media_attachments" and row["status_id"] is not None:
            assert row["status_id"] not in statuses, f"status {row['status_id']} has two media rows"
            [account] = [account for account in rows["accounts"] if account["id"] == row["account_id"]]
            statuses[row["status_id"]] = _status_row(row, account, case.status)
            # Media is private when its account is suspended or its status deleted but kept.
            hidden = account["suspended_at"] is not None or statuses[row["status_id"]]["deleted_at"] is not None
            assert hidden == (case.acl_kind == PRIVATE), case.row
        for entry in case.expect:
            actual, computed = (entry.actual, entry.computed) if isinstance(entry, Drift) else (entry, None)
            table, attachment, style, filename = _parse_key(actual)
            assert table == table_name, actual
            body = body_for(actual)
            content_type = content_type_for(actual)
            if style == "original":
                assert row[f"{attachment}_file_name"] == filename, actual
                assert row[f"{attachment}_content_type"] == content_type, actual
                row[f"{attachment}_file_size"] = len(body)
            expected.append(ExpectedObject(actual, table_name, row["id"], content_type, case.acl_kind, body, computed))
        for key in case.missing:
            table, attachment, style, filename = _parse_key(key)
            assert table == table_name, key
            if style == "original":
                assert row[f"{attachment}_file_name"] == filename, key
                assert row[f"{attachment}_file_size"] is not None, key
            missing.append((table_name, row["id"], key))
        orphans.extend(case.orphans)
        rows[table_name].append(row)

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
