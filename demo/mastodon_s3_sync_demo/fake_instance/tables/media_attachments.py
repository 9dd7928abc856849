"""media_attachments: file and thumbnail; private for a suspended account or a deleted-but-kept status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mastodon_s3_sync_demo.fake_instance.model import DELETED_AT, LOCAL_DOMAIN, PRIVATE, Case, Drift, FakeTable

if TYPE_CHECKING:
    from mastodon_s3_sync_demo.fake_instance.bulk import BulkRows

CASES = [
    # Old serial ids, local.
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
            Drift(
                actual="media_attachments/files/112/364/303/155/204/660/original/90fe1ca9ee0ba95c.webp",
                computed="cache/media_attachments/files/112/364/303/155/204/660/original/90fe1ca9ee0ba95c.webp",
            ),
            Drift(
                actual="media_attachments/files/112/364/303/155/204/660/small/90fe1ca9ee0ba95c.webp",
                computed="cache/media_attachments/files/112/364/303/155/204/660/small/90fe1ca9ee0ba95c.webp",
            ),
        ],
    ),
    # Local media of the suspended local account: private.
    Case(
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
    Case(
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
    Case(
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
    Case(
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
    Case(
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
]


def _complete_row(row: dict[str, Any]) -> None:
    if row["file_file_name"] and row["file_content_type"].startswith("image/"):
        row.setdefault(
            "file_meta", {"original": {"width": 1200, "height": 800}, "small": {"width": 640, "height": 427}}
        )


# (roll below, type, extension, content type, size range in kB or None for the photo mix)
_BULK_KINDS = (
    (0.55, 0, "jpeg", "image/jpeg", None),
    (0.75, 0, "png", "image/png", None),
    (0.85, 0, "webp", "image/webp", None),
    (0.90, 1, "mp4", "video/mp4", (100, 1000)),  # gifv
    (0.94, 0, "gif", "image/gif", (100, 1500)),
    (0.98, 2, "mp4", "video/mp4", (300, 3000)),
    (1.00, 4, "mp3", "audio/mpeg", (200, 2500)),
)


def _bulk_rows(rows: BulkRows) -> None:
    """The rest of the objects. Half remote (cache/ from version 1; 10 % of them evicted); 80 %
    attached to a status of the media's account."""
    rng = rows.rng
    account_ids = [row["id"] for row in rows.rows_of("accounts")] or [1]
    statuses = rows.rows_of("statuses")

    def media(index: int, remaining: int) -> dict[str, Any]:
        row_id = rows.next_id()
        row = rows.blank() | {"id": row_id, "account_id": rng.choice(account_ids)}
        remote = rng.random() < 0.5
        row["remote_url"] = f"https://remote{index % 200}.example/media/{row_id}" if remote else ""
        if remote and rng.random() < 0.10:
            return row  # evicted remote media: a row, no object
        version = 1 if rng.random() < 0.9 else None
        roll = rng.random() if remaining > 3 else 0.995  # audio without thumbnail fits one object
        _, kind, extension, content_type, kilobytes = next(entry for entry in _BULK_KINDS if roll < entry[0])
        size = rows.photo_size() if kilobytes is None else rows.kilobytes(*kilobytes)
        rows.attach(row, "file", rows.name(extension), content_type, size, version)
        row["type"] = kind
        if kind in (2, 4) and remaining > 3 and rng.random() < 0.3:
            rows.attach(row, "thumbnail", rows.name("jpeg"), "image/jpeg", rows.kilobytes(10, 60), version)
        if content_type.startswith("image/"):
            row["file_meta"] = {"original": {"width": 1280, "height": 960}, "small": {"width": 640, "height": 480}}
        row["status_id"] = rows.next_id() if rng.random() < 0.8 else None
        if row["status_id"] is not None:
            statuses.append(
                {
                    "id": row["status_id"],
                    "account_id": row["account_id"],
                    "uri": f"https://{LOCAL_DOMAIN}/statuses/{row['status_id']}",
                    "text": f"<p>media {row_id}</p>",
                    "local": not remote,
                    "visibility": 0,
                    "ordered_media_attachment_ids": [row_id],
                    "created_at": rows.created,
                    "updated_at": rows.created,
                }
            )
        return row

    rows.fill(media)


FAKE = FakeTable(
    name="media_attachments",
    attachments={"file": "files", "thumbnail": "thumbnails"},
    storage_schema_version=True,
    snowflake_ids=True,
    defaults={"remote_url": "", "account_id": None, "status_id": None, "type": 0},
    cases=CASES,
    bulk_budget=None,
    bulk_rows=_bulk_rows,
    complete_row=_complete_row,
    other_schema_tables=("statuses",),
)
