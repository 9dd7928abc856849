"""preview_cards: image, always remote (``cache/`` from storage schema version 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mastodon_s3_sync_demo.fake_instance.model import Case, Drift, FakeTable

if TYPE_CHECKING:
    from mastodon_s3_sync_demo.fake_instance.bulk import BulkRows

CASES = [
    Case(
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
    Case(
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
    Case(
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
    Case(
        {"id": 4, "url": "https://blog.example/d", "title": "D", "image_storage_schema_version": 1},
        orphans=["cache/preview_cards/images/000/000/004/original/9501065a0c00160f.jpeg"],
    ),
    Case(
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
    Case(
        {
            "id": 7,
            "url": "https://video.example/g",
            "title": "G",
            "image_file_name": "ca306f0ae787e5cb.png",
            "image_content_type": "image/png",
            "image_storage_schema_version": 1,
        },
        expect=[
            Drift(
                actual="preview_cards/images/000/000/007/original/ca306f0ae787e5cb.png",
                computed="cache/preview_cards/images/000/000/007/original/ca306f0ae787e5cb.png",
            ),
        ],
    ),
    Case(
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
]


def _bulk_rows(rows: BulkRows) -> None:
    """Always remote (cache/ from version 1), 20 % without image."""
    rng = rows.rng

    def card(index: int, remaining: int) -> dict[str, Any]:
        row_id = rows.next_id()
        row = rows.blank() | {"id": row_id, "url": f"https://site{index % 500}.example/article/{row_id}"}
        row |= {"title": f"Article {row_id}", "provider_name": f"site{index % 500}", "width": 400, "height": 400}
        if rng.random() < 0.8:
            extension, content_type = ("jpeg", "image/jpeg") if rng.random() < 0.8 else ("png", "image/png")
            version = 1 if rng.random() < 0.8 else None
            rows.attach(row, "image", rows.name(extension), content_type, rows.kilobytes(10, 150), version)
        return row

    rows.fill(card)


FAKE = FakeTable(
    name="preview_cards",
    attachments={"image": "images"},
    storage_schema_version=True,
    snowflake_ids=False,
    defaults={},
    cases=CASES,
    bulk_budget=lambda objects: int(objects * 0.15),
    bulk_rows=_bulk_rows,
)
