"""preview_card_providers: icon, original and static (``.png``); never ``cache/``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mastodon_s3_sync_demo.fake_instance.model import Case, FakeTable
from mastodon_s3_sync_demo.fake_instance.tables.site_uploads import bulk_budget as site_uploads_budget

if TYPE_CHECKING:
    from mastodon_s3_sync_demo.fake_instance.bulk import BulkRows

CASES = [
    Case(
        {"id": 1, "domain": "news.example", "icon_file_name": "fd64365bb08c03e5.png", "icon_content_type": "image/png"},
        expect=[
            "preview_card_providers/icons/000/000/001/original/fd64365bb08c03e5.png",
            "preview_card_providers/icons/000/000/001/static/fd64365bb08c03e5.png",
        ],
    ),
    Case(
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
    Case({"id": 3, "domain": "video.example"}),
]


def _bulk_rows(rows: BulkRows) -> None:
    """70 % png; every one with static, so two objects a row."""
    rng = rows.rng

    def provider(index: int, remaining: int) -> dict[str, Any]:
        row = rows.blank() | {"id": rows.next_id(), "domain": f"provider{index}.example", "trendable": True}
        extension, content_type = ("png", "image/png") if rng.random() < 0.7 else ("jpeg", "image/jpeg")
        rows.attach(row, "icon", rows.name(extension), content_type, rows.kilobytes(1, 20, 64))
        return row

    rows.fill(provider)


FAKE = FakeTable(
    name="preview_card_providers",
    attachments={"icon": "icons"},
    storage_schema_version=False,
    snowflake_ids=False,
    defaults={},
    cases=CASES,
    # 3 % together with site_uploads, in whole rows of two objects.
    bulk_budget=lambda objects: max(0, int(objects * 0.03) - site_uploads_budget(objects)) // 2 * 2,
    bulk_rows=_bulk_rows,
)
