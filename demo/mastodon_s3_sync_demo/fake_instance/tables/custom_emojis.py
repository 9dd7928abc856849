"""custom_emojis: image, original and static (``.png``), ``cache/`` for remote ones from version 1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mastodon_s3_sync_demo.fake_instance.model import Case, FakeTable

if TYPE_CHECKING:
    from mastodon_s3_sync_demo.fake_instance.bulk import BulkRows

CASES = [
    # Local, version NULL: original and static (.png) share the name for a png.
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
        {
            "id": 5,
            "shortcode": "ghost",
            "domain": "gone.example",
            "image_remote_url": "https://gone.example/emoji/ghost.png",
            "image_storage_schema_version": 1,
        },
    ),
    # Remote, version 1: original present, static missing.
    Case(
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
    Case(
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
]


def _bulk_rows(rows: BulkRows) -> None:
    """80 % remote, 15 % gif; every one with static, so two objects a row."""
    rng = rows.rng

    def emoji(index: int, remaining: int) -> dict[str, Any]:
        row = rows.blank() | {"id": rows.next_id(), "shortcode": f"emoji_{index}"}
        row["domain"] = f"remote{index % 200}.example" if rng.random() < 0.8 else None
        extension, content_type = ("gif", "image/gif") if rng.random() < 0.15 else ("png", "image/png")
        rows.attach(row, "image", rows.name(extension), content_type, rows.kilobytes(1, 30, 64), 1)
        return row

    rows.fill(emoji)


FAKE = FakeTable(
    name="custom_emojis",
    attachments={"image": "images"},
    storage_schema_version=True,
    snowflake_ids=False,
    defaults={"domain": None},
    cases=CASES,
    bulk_budget=lambda objects: int(objects * 0.06) // 2 * 2,
    bulk_rows=_bulk_rows,
)
