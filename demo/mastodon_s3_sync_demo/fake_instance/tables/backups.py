"""backups: dump, always private; never ``cache/``."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from mastodon_s3_sync_demo.fake_instance.model import PRIVATE, Case, FakeTable

if TYPE_CHECKING:
    from mastodon_s3_sync_demo.fake_instance.bulk import BulkRows

CASES = [
    Case(
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
    Case({"id": 2, "user_id": 2, "processed": False}),
    Case(
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


def _bulk_rows(rows: BulkRows) -> None:
    """Archives of 0.2-3 MB (at size scale 1.0)."""

    def backup(index: int, remaining: int) -> dict[str, Any]:
        row_id = rows.next_id()
        row = rows.blank() | {"id": row_id, "user_id": 1 + index, "processed": True}
        archive = f"archive-20240301120000-{hashlib.md5(f'{rows.seed}:{row_id}'.encode()).hexdigest()}.zip"
        rows.attach(row, "dump", archive, "application/zip", rows.kilobytes(200, 3000))
        return row

    rows.fill(backup)


FAKE = FakeTable(
    name="backups",
    attachments={"dump": "dumps"},
    storage_schema_version=False,
    snowflake_ids=False,
    defaults={},
    cases=CASES,
    bulk_budget=lambda objects: int(objects * 0.01),
    bulk_rows=_bulk_rows,
)
