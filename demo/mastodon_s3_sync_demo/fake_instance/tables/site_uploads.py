"""site_uploads: file, its styles selected by ``var``; never ``cache/``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mastodon_s3_sync_demo.fake_instance.model import Case, FakeTable

if TYPE_CHECKING:
    from mastodon_s3_sync_demo.fake_instance.bulk import BulkRows

CASES = [
    Case(
        {"id": 1, "var": "thumbnail", "file_file_name": "c8d3f6dbaea08459.jpeg", "file_content_type": "image/jpeg"},
        expect=[
            "site_uploads/files/000/000/001/original/c8d3f6dbaea08459.jpeg",
            "site_uploads/files/000/000/001/@1x/c8d3f6dbaea08459.png",
            "site_uploads/files/000/000/001/@2x/c8d3f6dbaea08459.png",
        ],
    ),
    Case(
        {"id": 2, "var": "favicon", "file_file_name": "7f215240a9100826.png", "file_content_type": "image/png"},
        expect=[
            "site_uploads/files/000/000/002/original/7f215240a9100826.png",
            "site_uploads/files/000/000/002/ico/7f215240a9100826.ico",
            "site_uploads/files/000/000/002/16/7f215240a9100826.png",
            "site_uploads/files/000/000/002/32/7f215240a9100826.png",
            "site_uploads/files/000/000/002/48/7f215240a9100826.png",
        ],
    ),
    Case(
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
    Case(
        {"id": 4, "var": "mascot", "file_file_name": "ea2abebb40047da6.gif", "file_content_type": "image/gif"},
        expect=["site_uploads/files/000/000/004/original/ea2abebb40047da6.gif"],
    ),
    # A var without styles (the pre-4.0 "hero"): original only.
    Case(
        {"id": 5, "var": "hero", "file_file_name": "ea25c60f828db064.jpeg", "file_content_type": "image/jpeg"},
        expect=["site_uploads/files/000/000/005/original/ea25c60f828db064.jpeg"],
    ),
]


def bulk_budget(objects: int) -> int:
    """Every ``var`` with styles from 1,000 objects (28), thumbnail and mascot from 100 (4)."""
    return 28 if objects >= 1000 else 4 if objects >= 100 else 0


def _bulk_rows(rows: BulkRows) -> None:
    """One row of each ``var`` (it is unique), png."""
    site_vars = {28: ["thumbnail", "favicon", "app_icon", "mascot"], 4: ["thumbnail", "mascot"], 0: []}[rows.budget]
    for var in site_vars:
        row = rows.blank() | {"id": rows.next_id(), "var": var}
        size = rows.kilobytes(100, 500) if var in ("thumbnail", "mascot") else rows.kilobytes(5, 60)
        rows.attach(row, "file", rows.name("png"), "image/png", size)
        row["meta"] = {"original": {"width": 1200, "height": 630}}
        rows.add(row)


FAKE = FakeTable(
    name="site_uploads",
    attachments={"file": "files"},
    storage_schema_version=False,
    snowflake_ids=False,
    defaults={"var": ""},
    cases=CASES,
    bulk_budget=bulk_budget,
    bulk_rows=_bulk_rows,
)
