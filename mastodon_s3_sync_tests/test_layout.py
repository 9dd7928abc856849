"""The storage layout (core/mastodon/layout.py, tables.py) against docs/mastodon-storage.md.

Every expected key here is written by hand from the spec; nothing is computed
with the code under test. The last tests feed every row of the hand-written
fake instance (demo/mastodon_s3_sync_demo/fake_instance/) through ``objects_for_row``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from mastodon_s3_sync_demo.fake_instance.instance import build_fake_instance
from mastodon_s3_sync_demo.fake_instance.model import PRIVATE
from mastodon_s3_sync_demo.fake_instance.tables import FAKE_TABLES, TABLE_NAMES

from mastodon_s3_sync.core.mastodon import layout
from mastodon_s3_sync.core.mastodon.tables import TABLES, InvalidRow

PUBLIC = "public-read"


def make_row(table: str, **values: Any) -> dict[str, Any]:
    """A row as the sync's SELECT returns it: every attachment column NULL unless given."""
    row: dict[str, Any] = {"id": 1}
    for attachment in FAKE_TABLES[table].attachments:
        for suffix in ("file_name", "content_type", "file_size", "updated_at"):
            row[f"{attachment}_{suffix}"] = None
        if FAKE_TABLES[table].storage_schema_version:
            row[f"{attachment}_storage_schema_version"] = None
    row.update(
        {
            "media_attachments": {"remote_url": "", "account_suspended_at": None, "status_deleted_at": None},
            "accounts": {"domain": None},
            "custom_emojis": {"domain": None},
            "site_uploads": {"var": ""},
        }.get(table, {})
    )
    row.update(values)
    return row


def described(table: str, row: dict[str, Any], permission: str | None = PUBLIC) -> list[tuple]:
    """(attachment, style, key, fallback_key, acl, expected_size) of each object, sorted."""
    objects = TABLES[table].objects_for_row(row, permission)
    for obj in objects:
        assert obj.table == table
        assert obj.row_id == row["id"]
    result = [(o.attachment, o.style, o.key, o.fallback_key, o.acl, o.expected_size) for o in objects]
    assert len(set(result)) == len(result), "an object is listed twice"
    return sorted(result)


# ----------------------------------------------------------------------------- id_partition

ID_PARTITIONS = [
    ("zero", 0, "000/000/000"),
    ("42", 42, "000/000/042"),
    ("6-digit-serial", 123_456, "000/123/456"),
    ("999_999_999", 999_999_999, "999/999/999"),
    ("1_000_000_000", 1_000_000_000, "001/000/000/000"),
    ("10-digit", 3_162_277_660, "003/162/277/660"),
    ("11-digit", 26_457_513_110, "026/457/513/110"),
    ("12-digit", 123_456_789_012, "123/456/789/012"),
    ("13-digit-drops-1", 1_234_567_890_123, "123/456/789/012"),
    ("14-digit-drops-2", 12_345_678_901_234, "123/456/789/012"),
    ("15-digit", 123_456_789_012_345, "123/456/789/012/345"),
    ("16-digit-drops-1", 1_234_567_890_123_456, "123/456/789/012/345"),
    ("17-digit-drops-2", 12_345_678_901_234_567, "123/456/789/012/345"),
    ("18-digit-snowflake", 109_876_543_210_987_654, "109/876/543/210/987/654"),
    ("18-digit-snowflake-2", 113_775_634_022_404_369, "113/775/634/022/404/369"),
    ("19-digit-max-bigint", 9_223_372_036_854_775_807, "922/337/203/685/477/580"),
    # kt-paperclip: ("%09d" % -99) == "-00000099", scan(/\d{3}/) -> ["000", "000"].
    ("instance-actor--99", -99, "000/000"),
]


@pytest.mark.parametrize(("record_id", "partition"), [c[1:] for c in ID_PARTITIONS], ids=[c[0] for c in ID_PARTITIONS])
def test_id_partition(record_id: int, partition: str) -> None:
    assert layout.id_partition(record_id) == partition


def test_13_and_14_digit_ids_share_the_12_digit_partition() -> None:
    assert (
        layout.id_partition(123_456_789_012)
        == layout.id_partition(1_234_567_890_123)
        == layout.id_partition(12_345_678_901_234)
    )


# ----------------------------------------------------------------------------- style_filename

STYLE_FILENAMES = [
    ("original-is-the-file-name", "0a1b2c3d4e5f6a7b.jpeg", "original", None, "0a1b2c3d4e5f6a7b.jpeg"),
    ("original-ignores-a-style-format", "0a1b2c3d4e5f6a7b.gif", "original", "png", "0a1b2c3d4e5f6a7b.gif"),
    ("original-keeps-case", "0A1B2C3D.JPG", "original", None, "0A1B2C3D.JPG"),
    ("small-same-ext", "0a1b2c3d4e5f6a7b.jpeg", "small", None, "0a1b2c3d4e5f6a7b.jpeg"),
    ("small-same-ext-webp", "0a1b2c3d4e5f6a7b.webp", "small", None, "0a1b2c3d4e5f6a7b.webp"),
    ("small-gif-as-png", "0a1b2c3d4e5f6a7b.gif", "small", "png", "0a1b2c3d4e5f6a7b.png"),
    ("small-mp4-as-png", "0a1b2c3d4e5f6a7b.mp4", "small", "png", "0a1b2c3d4e5f6a7b.png"),
    ("static-png-of-png", "0a1b2c3d4e5f6a7b.png", "static", "png", "0a1b2c3d4e5f6a7b.png"),
    ("favicon-ico", "0a1b2c3d4e5f6a7b.png", "ico", "ico", "0a1b2c3d4e5f6a7b.ico"),
    ("uppercase-ext-kept", "0A1B2C3D.JPEG", "small", None, "0A1B2C3D.JPEG"),
    ("only-last-ext-replaced", "photo.tar.gz", "static", "png", "photo.tar.png"),
    ("multi-dot-same-ext", "photo.tar.gz", "small", None, "photo.tar.gz"),
    ("no-ext-no-format", "0a1b2c3d4e5f6a7b", "small", None, "0a1b2c3d4e5f6a7b"),
    ("no-ext-with-format", "0a1b2c3d4e5f6a7b", "static", "png", "0a1b2c3d4e5f6a7b.png"),
    ("dotfile-is-no-ext", ".hidden", "small", None, ".hidden"),
    ("dotfile-with-format", ".hidden", "static", "png", ".hidden.png"),
]


@pytest.mark.parametrize(
    ("file_name", "style", "style_format", "expected"),
    [c[1:] for c in STYLE_FILENAMES],
    ids=[c[0] for c in STYLE_FILENAMES],
)
def test_style_filename(file_name: str, style: str, style_format: str | None, expected: str) -> None:
    assert layout.style_filename(file_name, style, style_format) == expected


# ----------------------------------------------------------------------------- key prefixes

KEY_PREFIXES = [
    # Mastodon: S3_KEY_PREFIX + "/" + key when set; kt-paperclip strips exactly one leading "/".
    ("unset", None, "accounts/avatars/000/000/001/original/a.png"),
    ("set-but-empty", "", "accounts/avatars/000/000/001/original/a.png"),
    ("slash-only", "/", "/accounts/avatars/000/000/001/original/a.png"),
    ("media", "media", "media/accounts/avatars/000/000/001/original/a.png"),
    ("media-trailing-slash", "media/", "media//accounts/avatars/000/000/001/original/a.png"),
    ("slash-media", "/media", "media/accounts/avatars/000/000/001/original/a.png"),
    ("slash-media-slash", "/media/", "media//accounts/avatars/000/000/001/original/a.png"),
    ("double-leading-slash", "//media", "/media/accounts/avatars/000/000/001/original/a.png"),
    ("nested", "a/b", "a/b/accounts/avatars/000/000/001/original/a.png"),
]


@pytest.mark.parametrize(("prefix", "full_key"), [c[1:] for c in KEY_PREFIXES], ids=[c[0] for c in KEY_PREFIXES])
def test_key_prefix_is_joined_literally(prefix: str | None, full_key: str) -> None:
    assert layout.with_key_prefix(prefix, "accounts/avatars/000/000/001/original/a.png") == full_key


def test_cache_key_under_a_prefix() -> None:
    key = "cache/media_attachments/files/000/000/001/original/a.jpeg"
    assert layout.with_key_prefix("/media", key) == "media/cache/media_attachments/files/000/000/001/original/a.jpeg"


@pytest.mark.parametrize(
    ("key", "other"),
    [
        (
            "media_attachments/files/000/000/001/original/a.jpeg",
            "cache/media_attachments/files/000/000/001/original/a.jpeg",
        ),
        ("cache/accounts/avatars/000/000/001/static/a.png", "accounts/avatars/000/000/001/static/a.png"),
    ],
    ids=["add-cache", "remove-cache"],
)
def test_toggle_cache_prefix(key: str, other: str) -> None:
    assert layout.toggle_cache_prefix(key) == other


# ----------------------------------------------------------------------------- cache/ prefix

# (id, table, extra row values, cached?) -- NULL/0/1 x local/remote per model.
REMOTE = "https://r.example/a"
CACHE_CASES = [
    ("media-null-local", "media_attachments", {"file_storage_schema_version": None, "remote_url": ""}, False),
    ("media-0-local", "media_attachments", {"file_storage_schema_version": 0, "remote_url": ""}, False),
    ("media-1-local", "media_attachments", {"file_storage_schema_version": 1, "remote_url": ""}, False),
    ("media-null-remote", "media_attachments", {"file_storage_schema_version": None, "remote_url": REMOTE}, False),
    ("media-0-remote", "media_attachments", {"file_storage_schema_version": 0, "remote_url": REMOTE}, False),
    ("media-1-remote", "media_attachments", {"file_storage_schema_version": 1, "remote_url": REMOTE}, True),
    ("media-2-remote", "media_attachments", {"file_storage_schema_version": 2, "remote_url": REMOTE}, True),
    ("accounts-null-local", "accounts", {"avatar_storage_schema_version": None, "domain": None}, False),
    ("accounts-0-local", "accounts", {"avatar_storage_schema_version": 0, "domain": None}, False),
    ("accounts-1-local", "accounts", {"avatar_storage_schema_version": 1, "domain": None}, False),
    ("accounts-null-remote", "accounts", {"avatar_storage_schema_version": None, "domain": "r.example"}, False),
    ("accounts-0-remote", "accounts", {"avatar_storage_schema_version": 0, "domain": "r.example"}, False),
    ("accounts-1-remote", "accounts", {"avatar_storage_schema_version": 1, "domain": "r.example"}, True),
    # "remote" is `domain IS NOT NULL`, not "non-empty".
    ("accounts-1-empty-domain-is-remote", "accounts", {"avatar_storage_schema_version": 1, "domain": ""}, True),
    ("emoji-null-local", "custom_emojis", {"image_storage_schema_version": None, "domain": None}, False),
    ("emoji-0-local", "custom_emojis", {"image_storage_schema_version": 0, "domain": None}, False),
    ("emoji-1-local", "custom_emojis", {"image_storage_schema_version": 1, "domain": None}, False),
    ("emoji-null-remote", "custom_emojis", {"image_storage_schema_version": None, "domain": "r.example"}, False),
    ("emoji-0-remote", "custom_emojis", {"image_storage_schema_version": 0, "domain": "r.example"}, False),
    ("emoji-1-remote", "custom_emojis", {"image_storage_schema_version": 1, "domain": "r.example"}, True),
    ("card-null-always-remote", "preview_cards", {"image_storage_schema_version": None}, False),
    ("card-0-always-remote", "preview_cards", {"image_storage_schema_version": 0}, False),
    ("card-1-always-remote", "preview_cards", {"image_storage_schema_version": 1}, True),
]
_CACHE_FILE = {
    "media_attachments": ("file", "image/png", "media_attachments/files/000/000/007/original/ab12.png"),
    "accounts": ("avatar", "image/png", "accounts/avatars/000/000/007/original/ab12.png"),
    "custom_emojis": ("image", "image/png", "custom_emojis/images/000/000/007/original/ab12.png"),
    "preview_cards": ("image", "image/png", "preview_cards/images/000/000/007/original/ab12.png"),
}


@pytest.mark.parametrize(("table", "values", "cached"), [c[1:] for c in CACHE_CASES], ids=[c[0] for c in CACHE_CASES])
def test_cache_prefix(table: str, values: dict, cached: bool) -> None:
    attachment, content_type, plain = _CACHE_FILE[table]
    row = make_row(
        table,
        id=7,
        **{f"{attachment}_file_name": "ab12.png", f"{attachment}_content_type": content_type},
        **values,
    )
    originals = [o for o in TABLES[table].objects_for_row(row, PUBLIC) if o.style == "original"]
    assert len(originals) == 1
    expected_key = f"cache/{plain}" if cached else plain
    assert originals[0].key == expected_key
    assert originals[0].fallback_key == (plain if cached else f"cache/{plain}")


@pytest.mark.parametrize("uses_cache", [True, False], ids=["v1-remote", "v0-remote"])
def test_cache_prefix_follows_each_attachments_own_version(uses_cache: bool) -> None:
    row = make_row(
        "media_attachments",
        id=7,
        remote_url="https://r.example/v.mp4",
        file_file_name="ab12.mp4",
        file_content_type="video/mp4",
        file_storage_schema_version=1 if uses_cache else 0,
        thumbnail_file_name="cd34.jpeg",
        thumbnail_content_type="image/jpeg",
        thumbnail_storage_schema_version=0 if uses_cache else 1,
    )
    keys = {o.key for o in TABLES["media_attachments"].objects_for_row(row, PUBLIC)}
    cache = "cache/" if uses_cache else ""
    other = "" if uses_cache else "cache/"
    assert keys == {
        f"{cache}media_attachments/files/000/000/007/original/ab12.mp4",
        f"{cache}media_attachments/files/000/000/007/small/ab12.png",
        f"{other}media_attachments/thumbnails/000/000/007/original/cd34.jpeg",
    }


# ----------------------------------------------------------------------------- objects_for_row per table

M = "media_attachments/files/000/000/042"
MT = "media_attachments/thumbnails/000/000/042"
MEDIA_STYLE_CASES = [
    (
        "jpeg-original-small-same-ext",
        {"file_file_name": "ab.jpeg", "file_content_type": "image/jpeg", "file_file_size": 1000},
        [
            ("file", "original", f"{M}/original/ab.jpeg", f"cache/{M}/original/ab.jpeg", PUBLIC, 1000),
            ("file", "small", f"{M}/small/ab.jpeg", f"cache/{M}/small/ab.jpeg", PUBLIC, None),
        ],
    ),
    (
        "png-original-small-same-ext",
        {"file_file_name": "ab.png", "file_content_type": "image/png", "file_file_size": 1001},
        [
            ("file", "original", f"{M}/original/ab.png", f"cache/{M}/original/ab.png", PUBLIC, 1001),
            ("file", "small", f"{M}/small/ab.png", f"cache/{M}/small/ab.png", PUBLIC, None),
        ],
    ),
    (
        "webp-original-small-same-ext",
        {"file_file_name": "ab.webp", "file_content_type": "image/webp", "file_file_size": 1002},
        [
            ("file", "original", f"{M}/original/ab.webp", f"cache/{M}/original/ab.webp", PUBLIC, 1002),
            ("file", "small", f"{M}/small/ab.webp", f"cache/{M}/small/ab.webp", PUBLIC, None),
        ],
    ),
    (
        "gif-small-png",
        {"file_file_name": "ab.gif", "file_content_type": "image/gif", "file_file_size": 1003},
        [
            ("file", "original", f"{M}/original/ab.gif", f"cache/{M}/original/ab.gif", PUBLIC, 1003),
            ("file", "small", f"{M}/small/ab.png", f"cache/{M}/small/ab.png", PUBLIC, None),
        ],
    ),
    (
        "video-mp4-small-png",
        {"type": 2, "file_file_name": "ab.mp4", "file_content_type": "video/mp4", "file_file_size": 1004},
        [
            ("file", "original", f"{M}/original/ab.mp4", f"cache/{M}/original/ab.mp4", PUBLIC, 1004),
            ("file", "small", f"{M}/small/ab.png", f"cache/{M}/small/ab.png", PUBLIC, None),
        ],
    ),
    (
        "gifv-mp4-small-png",
        {"type": 1, "file_file_name": "ab.mp4", "file_content_type": "video/mp4", "file_file_size": 1005},
        [
            ("file", "original", f"{M}/original/ab.mp4", f"cache/{M}/original/ab.mp4", PUBLIC, 1005),
            ("file", "small", f"{M}/small/ab.png", f"cache/{M}/small/ab.png", PUBLIC, None),
        ],
    ),
    (
        "any-video-type-small-png",
        {"type": 2, "file_file_name": "ab.mov", "file_content_type": "video/quicktime", "file_file_size": 1006},
        [
            ("file", "original", f"{M}/original/ab.mov", f"cache/{M}/original/ab.mov", PUBLIC, 1006),
            ("file", "small", f"{M}/small/ab.png", f"cache/{M}/small/ab.png", PUBLIC, None),
        ],
    ),
    (
        "audio-original-only",
        {"type": 4, "file_file_name": "ab.mp3", "file_content_type": "audio/mpeg", "file_file_size": 1007},
        [("file", "original", f"{M}/original/ab.mp3", f"cache/{M}/original/ab.mp3", PUBLIC, 1007)],
    ),
    (
        # Mastodon lists video/x-ms-asf under audio (AUDIO_MIME_TYPES): transcoded to mp3, no small.
        "x-ms-asf-is-audio-original-only",
        {"type": 4, "file_file_name": "ab.mp3", "file_content_type": "video/x-ms-asf", "file_file_size": 1009},
        [("file", "original", f"{M}/original/ab.mp3", f"cache/{M}/original/ab.mp3", PUBLIC, 1009)],
    ),
    *(
        (
            f"{content_type.split('/')[1]}-small-as-jpeg",
            {"type": 0, "file_file_name": "ab.heic", "file_content_type": content_type, "file_file_size": 1010},
            [
                ("file", "original", f"{M}/original/ab.heic", f"cache/{M}/original/ab.heic", PUBLIC, 1010),
                ("file", "small", f"{M}/small/ab.jpeg", f"cache/{M}/small/ab.jpeg", PUBLIC, None),
            ],
        )
        for content_type in ("image/heic", "image/heif", "image/avif")
    ),
    (
        "unknown-original-only",
        {"type": 3, "file_file_name": "ab.bin", "file_content_type": "application/octet-stream", "file_file_size": 8},
        [("file", "original", f"{M}/original/ab.bin", f"cache/{M}/original/ab.bin", PUBLIC, 8)],
    ),
    (
        "audio-with-thumbnail-original-only",
        {
            "type": 4,
            "file_file_name": "ab.mp3",
            "file_content_type": "audio/mpeg",
            "file_file_size": 1008,
            "thumbnail_file_name": "cd.png",
            "thumbnail_content_type": "image/png",
            "thumbnail_file_size": 77,
        },
        [
            ("file", "original", f"{M}/original/ab.mp3", f"cache/{M}/original/ab.mp3", PUBLIC, 1008),
            ("thumbnail", "original", f"{MT}/original/cd.png", f"cache/{MT}/original/cd.png", PUBLIC, 77),
        ],
    ),
    (
        "video-with-thumbnail",
        {
            "type": 2,
            "file_file_name": "ab.mp4",
            "file_content_type": "video/mp4",
            "file_file_size": 1009,
            "thumbnail_file_name": "cd.jpeg",
            "thumbnail_content_type": "image/jpeg",
            "thumbnail_file_size": 78,
        },
        [
            ("file", "original", f"{M}/original/ab.mp4", f"cache/{M}/original/ab.mp4", PUBLIC, 1009),
            ("file", "small", f"{M}/small/ab.png", f"cache/{M}/small/ab.png", PUBLIC, None),
            ("thumbnail", "original", f"{MT}/original/cd.jpeg", f"cache/{MT}/original/cd.jpeg", PUBLIC, 78),
        ],
    ),
    (
        "thumbnail-without-file",
        {"thumbnail_file_name": "cd.jpeg", "thumbnail_content_type": "image/jpeg", "thumbnail_file_size": 79},
        [("thumbnail", "original", f"{MT}/original/cd.jpeg", f"cache/{MT}/original/cd.jpeg", PUBLIC, 79)],
    ),
    ("null-file-names-nothing", {}, []),
    (
        "remote-v1-cache-both-attachments",
        {
            "remote_url": "https://r.example/ab.mp4",
            "file_file_name": "ab.mp4",
            "file_content_type": "video/mp4",
            "file_file_size": 1010,
            "file_storage_schema_version": 1,
            "thumbnail_file_name": "cd.jpeg",
            "thumbnail_content_type": "image/jpeg",
            "thumbnail_file_size": 80,
            "thumbnail_storage_schema_version": 1,
        },
        [
            ("file", "original", f"cache/{M}/original/ab.mp4", f"{M}/original/ab.mp4", PUBLIC, 1010),
            ("file", "small", f"cache/{M}/small/ab.png", f"{M}/small/ab.png", PUBLIC, None),
            ("thumbnail", "original", f"cache/{MT}/original/cd.jpeg", f"{MT}/original/cd.jpeg", PUBLIC, 80),
        ],
    ),
    (
        "suspended-account-private-every-style",
        {
            "account_suspended_at": "2024-02-20 09:30:00",
            "file_file_name": "ab.gif",
            "file_content_type": "image/gif",
            "file_file_size": 1011,
            "thumbnail_file_name": "cd.png",
            "thumbnail_content_type": "image/png",
            "thumbnail_file_size": 81,
        },
        [
            ("file", "original", f"{M}/original/ab.gif", f"cache/{M}/original/ab.gif", PRIVATE, 1011),
            ("file", "small", f"{M}/small/ab.png", f"cache/{M}/small/ab.png", PRIVATE, None),
            ("thumbnail", "original", f"{MT}/original/cd.png", f"cache/{MT}/original/cd.png", PRIVATE, 81),
        ],
    ),
]


@pytest.mark.parametrize(
    ("values", "expected"), [c[1:] for c in MEDIA_STYLE_CASES], ids=[c[0] for c in MEDIA_STYLE_CASES]
)
def test_media_attachments_objects(values: dict, expected: list[tuple]) -> None:
    assert described("media_attachments", make_row("media_attachments", id=42, **values)) == sorted(expected)


A = "accounts/avatars/000/001/234"
H = "accounts/headers/000/001/234"
ACCOUNT_CASES = [
    (
        "jpeg-avatar-original-only",
        {"avatar_file_name": "ab.jpeg", "avatar_content_type": "image/jpeg", "avatar_file_size": 500},
        [("avatar", "original", f"{A}/original/ab.jpeg", f"cache/{A}/original/ab.jpeg", PUBLIC, 500)],
    ),
    (
        "png-avatar-original-only",
        {"avatar_file_name": "ab.png", "avatar_content_type": "image/png", "avatar_file_size": 501},
        [("avatar", "original", f"{A}/original/ab.png", f"cache/{A}/original/ab.png", PUBLIC, 501)],
    ),
    (
        "gif-avatar-static-png",
        {"avatar_file_name": "ab.gif", "avatar_content_type": "image/gif", "avatar_file_size": 502},
        [
            ("avatar", "original", f"{A}/original/ab.gif", f"cache/{A}/original/ab.gif", PUBLIC, 502),
            ("avatar", "static", f"{A}/static/ab.png", f"cache/{A}/static/ab.png", PUBLIC, None),
        ],
    ),
    (
        "gif-header-static-png-and-webp-avatar",
        {
            "avatar_file_name": "ab.webp",
            "avatar_content_type": "image/webp",
            "avatar_file_size": 503,
            "header_file_name": "cd.gif",
            "header_content_type": "image/gif",
            "header_file_size": 504,
        },
        [
            ("avatar", "original", f"{A}/original/ab.webp", f"cache/{A}/original/ab.webp", PUBLIC, 503),
            ("header", "original", f"{H}/original/cd.gif", f"cache/{H}/original/cd.gif", PUBLIC, 504),
            ("header", "static", f"{H}/static/cd.png", f"cache/{H}/static/cd.png", PUBLIC, None),
        ],
    ),
    (
        "remote-v1-cache",
        {
            "domain": "r.example",
            "avatar_file_name": "ab.gif",
            "avatar_content_type": "image/gif",
            "avatar_file_size": 505,
            "avatar_storage_schema_version": 1,
        },
        [
            ("avatar", "original", f"cache/{A}/original/ab.gif", f"{A}/original/ab.gif", PUBLIC, 505),
            ("avatar", "static", f"cache/{A}/static/ab.png", f"{A}/static/ab.png", PUBLIC, None),
        ],
    ),
    (
        "suspended-account-own-media-not-private",
        {
            "suspended_at": "2024-02-20 09:30:00",
            "avatar_file_name": "ab.png",
            "avatar_content_type": "image/png",
            "avatar_file_size": 506,
        },
        [("avatar", "original", f"{A}/original/ab.png", f"cache/{A}/original/ab.png", PUBLIC, 506)],
    ),
    ("no-media", {}, []),
]


@pytest.mark.parametrize(("values", "expected"), [c[1:] for c in ACCOUNT_CASES], ids=[c[0] for c in ACCOUNT_CASES])
def test_accounts_objects(values: dict, expected: list[tuple]) -> None:
    assert described("accounts", make_row("accounts", id=1234, **values)) == sorted(expected)


def test_instance_actor_account_has_no_objects() -> None:
    assert described("accounts", make_row("accounts", id=-99, username="mastodon.example")) == []


def test_instance_actor_key_if_it_ever_had_an_avatar() -> None:
    row = make_row("accounts", id=-99, avatar_file_name="ab.png", avatar_content_type="image/png")
    assert [o.key for o in TABLES["accounts"].objects_for_row(row, PUBLIC)] == [
        "accounts/avatars/000/000/original/ab.png"
    ]


E = "custom_emojis/images/000/000/003"
P = "preview_cards/images/000/000/003"
S = "site_uploads/files/000/000/003"
I = "preview_card_providers/icons/000/000/003"
B = "backups/dumps/000/000/003"
APP_ICON_SIZES = [
    "57",
    "60",
    "72",
    "76",
    "114",
    "120",
    "144",
    "152",
    "167",
    "180",
    "1024",
    "36",
    "48",
    "96",
    "192",
    "256",
    "384",
    "512",
]
OTHER_TABLE_CASES = [
    (
        "emoji-png-static-png",
        "custom_emojis",
        {"image_file_name": "ab.png", "image_content_type": "image/png", "image_file_size": 300},
        [
            ("image", "original", f"{E}/original/ab.png", f"cache/{E}/original/ab.png", PUBLIC, 300),
            ("image", "static", f"{E}/static/ab.png", f"cache/{E}/static/ab.png", PUBLIC, None),
        ],
    ),
    (
        "emoji-gif-static-png",
        "custom_emojis",
        {"image_file_name": "ab.gif", "image_content_type": "image/gif", "image_file_size": 301},
        [
            ("image", "original", f"{E}/original/ab.gif", f"cache/{E}/original/ab.gif", PUBLIC, 301),
            ("image", "static", f"{E}/static/ab.png", f"cache/{E}/static/ab.png", PUBLIC, None),
        ],
    ),
    (
        "emoji-remote-v1-cache",
        "custom_emojis",
        {
            "domain": "r.example",
            "image_storage_schema_version": 1,
            "image_file_name": "ab.png",
            "image_content_type": "image/png",
            "image_file_size": 302,
        },
        [
            ("image", "original", f"cache/{E}/original/ab.png", f"{E}/original/ab.png", PUBLIC, 302),
            ("image", "static", f"cache/{E}/static/ab.png", f"{E}/static/ab.png", PUBLIC, None),
        ],
    ),
    (
        "card-original-only",
        "preview_cards",
        {"image_file_name": "ab.jpeg", "image_content_type": "image/jpeg", "image_file_size": 303},
        [("image", "original", f"{P}/original/ab.jpeg", f"cache/{P}/original/ab.jpeg", PUBLIC, 303)],
    ),
    (
        "card-v1-cache",
        "preview_cards",
        {
            "image_storage_schema_version": 1,
            "image_file_name": "ab.gif",
            "image_content_type": "image/gif",
            "image_file_size": 304,
        },
        [("image", "original", f"cache/{P}/original/ab.gif", f"{P}/original/ab.gif", PUBLIC, 304)],
    ),
    ("card-without-image", "preview_cards", {"image_storage_schema_version": 1}, []),
    (
        "site-upload-thumbnail",
        "site_uploads",
        {"var": "thumbnail", "file_file_name": "ab.jpeg", "file_content_type": "image/jpeg", "file_file_size": 305},
        [
            ("file", "original", f"{S}/original/ab.jpeg", None, PUBLIC, 305),
            ("file", "@1x", f"{S}/@1x/ab.png", None, PUBLIC, None),
            ("file", "@2x", f"{S}/@2x/ab.png", None, PUBLIC, None),
        ],
    ),
    (
        "site-upload-favicon",
        "site_uploads",
        {"var": "favicon", "file_file_name": "ab.png", "file_content_type": "image/png", "file_file_size": 306},
        [
            ("file", "original", f"{S}/original/ab.png", None, PUBLIC, 306),
            ("file", "ico", f"{S}/ico/ab.ico", None, PUBLIC, None),
            ("file", "16", f"{S}/16/ab.png", None, PUBLIC, None),
            ("file", "32", f"{S}/32/ab.png", None, PUBLIC, None),
            ("file", "48", f"{S}/48/ab.png", None, PUBLIC, None),
        ],
    ),
    (
        "site-upload-app-icon",
        "site_uploads",
        {"var": "app_icon", "file_file_name": "ab.svg", "file_content_type": "image/svg+xml", "file_file_size": 307},
        [("file", "original", f"{S}/original/ab.svg", None, PUBLIC, 307)]
        + [("file", size, f"{S}/{size}/ab.png", None, PUBLIC, None) for size in APP_ICON_SIZES],
    ),
    (
        "site-upload-mascot-original-only",
        "site_uploads",
        {"var": "mascot", "file_file_name": "ab.gif", "file_content_type": "image/gif", "file_file_size": 308},
        [("file", "original", f"{S}/original/ab.gif", None, PUBLIC, 308)],
    ),
    (
        "site-upload-other-var-original-only",
        "site_uploads",
        {"var": "hero", "file_file_name": "ab.jpeg", "file_content_type": "image/jpeg", "file_file_size": 309},
        [("file", "original", f"{S}/original/ab.jpeg", None, PUBLIC, 309)],
    ),
    (
        "provider-icon-static-png",
        "preview_card_providers",
        {"icon_file_name": "ab.jpeg", "icon_content_type": "image/jpeg", "icon_file_size": 310},
        [
            ("icon", "original", f"{I}/original/ab.jpeg", None, PUBLIC, 310),
            ("icon", "static", f"{I}/static/ab.png", None, PUBLIC, None),
        ],
    ),
    ("provider-without-icon", "preview_card_providers", {}, []),
    (
        "backup-private",
        "backups",
        {
            "dump_file_name": "archive-20240301120000-0123456789abcdef0123456789abcdef.zip",
            "dump_content_type": "application/zip",
            "dump_file_size": 5_000_000_000,
        },
        [
            (
                "dump",
                "original",
                f"{B}/original/archive-20240301120000-0123456789abcdef0123456789abcdef.zip",
                None,
                PRIVATE,
                5_000_000_000,
            ),
        ],
    ),
    ("backup-not-processed", "backups", {}, []),
]


@pytest.mark.parametrize(
    ("table", "values", "expected"), [c[1:] for c in OTHER_TABLE_CASES], ids=[c[0] for c in OTHER_TABLE_CASES]
)
def test_other_tables_objects(table: str, values: dict, expected: list[tuple]) -> None:
    assert described(table, make_row(table, id=3, **values)) == sorted(expected)


# ----------------------------------------------------------------------------- ACL

_MEDIA_FILE = {"file_file_name": "ab.jpeg", "file_content_type": "image/jpeg"}
ACL_CASES = [
    ("media-public-read", "media_attachments", _MEDIA_FILE, "public-read", "public-read"),
    ("media-custom-permission", "media_attachments", _MEDIA_FILE, "authenticated-read", "authenticated-read"),
    ("media-empty-permission-no-acl", "media_attachments", _MEDIA_FILE, "", None),
    ("media-none-permission-no-acl", "media_attachments", _MEDIA_FILE, None, None),
    (
        "suspended-media-private",
        "media_attachments",
        {**_MEDIA_FILE, "account_suspended_at": "2024-02-20"},
        "public-read",
        PRIVATE,
    ),
    (
        "suspended-media-custom-permission-private",
        "media_attachments",
        {**_MEDIA_FILE, "account_suspended_at": "2024-02-20"},
        "authenticated-read",
        PRIVATE,
    ),
    (
        # RemoveStatusService -> UpdateMediaAttachmentsPermissionsService(..., :private)
        "deleted-status-media-private",
        "media_attachments",
        {**_MEDIA_FILE, "status_deleted_at": "2024-02-21"},
        "public-read",
        PRIVATE,
    ),
    (
        "deleted-status-of-suspended-account-private",
        "media_attachments",
        {**_MEDIA_FILE, "status_deleted_at": "2024-02-21", "account_suspended_at": "2024-02-20"},
        "public-read",
        PRIVATE,
    ),
    (
        "deleted-status-empty-permission-no-acl",
        "media_attachments",
        {**_MEDIA_FILE, "status_deleted_at": "2024-02-21"},
        "",
        None,
    ),
    # "empty means send no ACL" (what R2 and ACL-less buckets need) wins over private.
    (
        "suspended-media-empty-permission-no-acl",
        "media_attachments",
        {**_MEDIA_FILE, "account_suspended_at": "2024-02-20"},
        "",
        None,
    ),
    (
        "backup-private",
        "backups",
        {"dump_file_name": "a.zip", "dump_content_type": "application/zip"},
        "public-read",
        PRIVATE,
    ),
    (
        "backup-private-custom-permission",
        "backups",
        {"dump_file_name": "a.zip", "dump_content_type": "application/zip"},
        "authenticated-read",
        PRIVATE,
    ),
    (
        "backup-empty-permission-no-acl",
        "backups",
        {"dump_file_name": "a.zip", "dump_content_type": "application/zip"},
        "",
        None,
    ),
    (
        "account-custom-permission",
        "accounts",
        {"avatar_file_name": "a.gif", "avatar_content_type": "image/gif"},
        "authenticated-read",
        "authenticated-read",
    ),
    (
        "suspended-account-own-avatar-permission",
        "accounts",
        {"avatar_file_name": "a.gif", "avatar_content_type": "image/gif", "suspended_at": "2024-02-20"},
        "public-read",
        "public-read",
    ),
    (
        "emoji-public-read",
        "custom_emojis",
        {"image_file_name": "a.png", "image_content_type": "image/png"},
        "public-read",
        "public-read",
    ),
    ("card-empty-no-acl", "preview_cards", {"image_file_name": "a.png", "image_content_type": "image/png"}, "", None),
    (
        "site-upload-public-read",
        "site_uploads",
        {"var": "favicon", "file_file_name": "a.png", "file_content_type": "image/png"},
        "public-read",
        "public-read",
    ),
    (
        "provider-custom",
        "preview_card_providers",
        {"icon_file_name": "a.png", "icon_content_type": "image/png"},
        "authenticated-read",
        "authenticated-read",
    ),
]


@pytest.mark.parametrize(
    ("table", "values", "permission", "acl"), [c[1:] for c in ACL_CASES], ids=[c[0] for c in ACL_CASES]
)
def test_acl(table: str, values: dict, permission: str | None, acl: str | None) -> None:
    objects = TABLES[table].objects_for_row(make_row(table, id=5, **values), permission)
    assert objects
    assert {o.acl for o in objects} == {acl}


# ----------------------------------------------------------------------------- invalid rows


@pytest.mark.parametrize(
    "file_name",
    ["a/b.png", "../ab.png", "..", ".", "ab\n.png"],
    ids=["slash", "dotdot-slash", "dotdot", "dot", "newline"],
)
def test_invalid_file_name(file_name: str) -> None:
    row = make_row("media_attachments", id=5, file_file_name=file_name, file_content_type="image/png")
    with pytest.raises(InvalidRow):
        TABLES["media_attachments"].objects_for_row(row, PUBLIC)


def test_invalid_row_is_a_value_error() -> None:
    assert issubclass(InvalidRow, ValueError)


# ----------------------------------------------------------------------------- select_sql


def _selected_columns(select: str) -> list[str]:
    """Result names of a ``SELECT a, t.b, (SELECT ... FROM ...) AS c FROM <table> t WHERE ...``."""
    columns = re.match(r"\s*SELECT\s+(.*)\s+FROM\s+\w+\s+t\s+WHERE\s", select, re.S | re.I).group(1)
    names = []
    for column in columns.split(","):
        column = column.strip()
        alias = re.search(r"\s+AS\s+(\w+)$", column, re.I)
        names.append(alias.group(1) if alias else column.split(".")[-1])
    return names


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_select_sql_returns_every_column_objects_for_row_reads(table: str) -> None:
    instance = build_fake_instance()
    names = _selected_columns(TABLES[table].select_sql("t.id BETWEEN 1 AND 2"))
    assert names[0] == "id"
    for row in instance.selected_rows(table):
        restricted = {name: row[name] for name in names}
        assert TABLES[table].objects_for_row(restricted, PUBLIC) == TABLES[table].objects_for_row(row, PUBLIC)


def test_media_select_looks_up_the_account_suspension_and_the_status_deletion() -> None:
    select = TABLES["media_attachments"].select_sql("true")
    assert {"account_suspended_at", "status_deleted_at"} <= set(_selected_columns(select))
    assert "(SELECT a.suspended_at FROM accounts a WHERE a.id = t.account_id)" in select
    assert "(SELECT s.deleted_at FROM statuses s WHERE s.id = t.status_id)" in select


def test_every_table_is_described() -> None:
    assert set(TABLES) == set(TABLE_NAMES)


# ----------------------------------------------------------------------------- Content-Type, for files on disk


@pytest.mark.parametrize(
    ("style", "file_name", "row_type", "expected"),
    [
        ("original", "a.jpeg", "image/jpeg", "image/jpeg"),
        ("original", "a.bin", "application/octet-stream", "application/octet-stream"),
        ("original", "a.png", "image/gif", "image/gif"),  # the row decides for the original, not its name
        ("original", "a.jpeg", None, None),  # no type in the row: none sent
        ("original", "a.jpeg", "", None),
        ("small", "a.jpeg", "image/jpeg", "image/jpeg"),
        ("small", "a.JPG", "image/jpeg", "image/jpeg"),
        ("small", "a.png", "image/gif", "image/png"),  # a derived style: its own file's extension
        ("static", "a.png", "image/gif", "image/png"),
        ("small", "a.webp", "image/webp", "image/webp"),
        ("small", "a.gif", "image/gif", "image/gif"),
        ("original", "a.mp4", "video/mp4", "video/mp4"),
        ("small", "a.mp4", "video/quicktime", "video/mp4"),
        ("original", "a.mp3", "audio/mpeg", "audio/mpeg"),
        ("ico", "favicon.ico", "image/png", "image/vnd.microsoft.icon"),
        ("@2x", "thumb.png", "image/jpeg", "image/png"),
        ("small", "noextension", "image/jpeg", None),
        ("small", ".hidden", "image/jpeg", None),  # Ruby's extname: a leading dot is no extension
        ("small", "a.unknown", "image/jpeg", None),
    ],
)
def test_style_content_type(style, file_name, row_type, expected) -> None:
    assert layout.style_content_type(style, file_name, row_type) == expected


# ----------------------------------------------------------------------------- the fake instance, row by row

INSTANCE = build_fake_instance()


@pytest.mark.parametrize("table", TABLE_NAMES)
def test_fake_instance_rows_give_exactly_the_hand_written_keys(table: str) -> None:
    expected_by_row: dict[int, set[str]] = {}
    drift_by_computed = {}
    for obj in INSTANCE.expected_for(table):
        computed = obj.computed_key or obj.key
        expected_by_row.setdefault(obj.row_id, set()).add(computed)
        if obj.computed_key:
            drift_by_computed[obj.computed_key] = obj
    for _, row_id, key in INSTANCE.missing_for(table):
        expected_by_row.setdefault(row_id, set()).add(key)
    present = INSTANCE.expected_by_key()
    private_rows = {obj.row_id for obj in INSTANCE.expected_for(table) if obj.acl_kind == PRIVATE}

    rows = INSTANCE.selected_rows(table)
    assert len(rows) == INSTANCE.row_counts[table]
    for row in rows:
        objects = TABLES[table].objects_for_row(row, PUBLIC)
        keys = [o.key for o in objects]
        assert len(set(keys)) == len(keys)
        assert set(keys) == expected_by_row.get(row["id"], set()), f"{table} id={row['id']}"
        for obj in objects:
            assert obj.acl == (PRIVATE if row["id"] in private_rows else PUBLIC), obj.key
            if obj.key in drift_by_computed:
                # Drift: the computed key is absent, the object is at its other cache/ variant.
                assert obj.fallback_key == drift_by_computed[obj.key].key
                source = drift_by_computed[obj.key]
            else:
                source = present.get(obj.key)
            if obj.style == "original":
                assert obj.expected_size == row[f"{obj.attachment}_file_size"]
                if source is not None:
                    assert obj.expected_size == source.size
            else:
                assert obj.expected_size is None
            if source is not None:
                assert obj.content_type == source.content_type, f"{obj.key}: what a file on disk is uploaded with"


def test_fake_instance_orphans_are_never_computed_keys() -> None:
    computed = {
        o.key
        for table in TABLE_NAMES
        for row in INSTANCE.selected_rows(table)
        for o in TABLES[table].objects_for_row(row, PUBLIC)
    }
    assert not computed & set(INSTANCE.orphans)


def test_fake_instance_missing_objects_are_absent_at_both_variants() -> None:
    at_source = {key for key, _, _ in INSTANCE.source_objects()}
    for _, _, key in INSTANCE.missing:
        assert key not in at_source
        assert layout.toggle_cache_prefix(key) not in at_source


def test_fake_instance_drift_is_only_at_the_fallback() -> None:
    at_source = {key for key, _, _ in INSTANCE.source_objects()}
    assert len(INSTANCE.drifted) >= 2
    for obj in INSTANCE.drifted:
        assert obj.computed_key not in at_source
        assert obj.key in at_source
        assert {obj.key.startswith("cache/"), obj.computed_key.startswith("cache/")} == {True, False}


def test_fake_instance_covers_the_spec() -> None:
    """Guards the oracle itself: every rule has at least one case."""
    keys = [o.key for o in INSTANCE.expected]
    styles = {key.split("/")[-2] for key in keys}
    assert {"original", "small", "static", "@1x", "@2x", "ico", "16", "32", "48", "1024", "57"} <= styles
    assert all(count > 0 for count in INSTANCE.row_counts.values())
    assert {o.table for o in INSTANCE.expected} == set(TABLE_NAMES)
    assert any(k.startswith("cache/") for k in keys) and any(not k.startswith("cache/") for k in keys)
    assert -99 in {row["id"] for row in INSTANCE.rows["accounts"]}
    media_ids = {row["id"] for row in INSTANCE.rows["media_attachments"]}
    assert {len(str(i)) for i in media_ids} >= {1, 2, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}
    assert {o.acl_kind for o in INSTANCE.expected} == {"permission", PRIVATE}
    assert INSTANCE.missing and INSTANCE.orphans
    for obj in INSTANCE.expected:
        assert 50 <= obj.size <= 3000


def test_only_the_legacy_favicon_ico_is_optional() -> None:
    objects = TABLES["site_uploads"].objects_for_row(
        make_row("site_uploads", id=2, var="favicon", file_file_name="ab.png", file_content_type="image/png"), PUBLIC
    )
    assert {o.style: o.optional for o in objects} == {
        "original": False,
        "ico": True,
        "16": False,
        "32": False,
        "48": False,
    }


@pytest.mark.parametrize(
    ("key", "acl", "umask", "mode"),
    [
        # Paperclip writes 0666 & ~umask; Mastodon chmods private media 0600 & ~umask on disk
        ("media_attachments/files/000/000/001/original/a.png", "private", 0o022, 0o600),
        ("media_attachments/files/000/000/001/small/a.png", "private", 0o002, 0o600),
        ("cache/media_attachments/files/000/000/001/original/a.png", "private", 0o022, 0o600),
        ("media_attachments/files/000/000/001/original/a.png", "public-read", 0o022, 0o644),
        ("media_attachments/files/000/000/001/original/a.png", "public-read", 0o002, 0o664),
        ("media_attachments/files/000/000/001/original/a.png", None, 0o022, 0o644),
        ("accounts/avatars/000/000/001/original/a.png", "public-read", 0o077, 0o600),
        ("accounts/avatars/000/000/001/original/a.png", "private", 0o022, 0o600),
        ("media_attachments/files/000/000/001/original/a.png", "private", 0o177, 0o600),
        ("media_attachments/files/000/000/001/original/a.png", "private", 0o277, 0o400),
        # backups: private on S3 only, never chmodded on disk (nginx serves the downloads)
        ("backups/dumps/000/000/001/original/archive.zip", "private", 0o022, 0o644),
        ("backups/dumps/000/000/001/original/archive.zip", "private", 0o002, 0o664),
        ("backups/dumps/000/000/001/original/archive.zip", None, 0o022, 0o644),
        ("cache/backups/x.zip", "private", 0o022, 0o600),
    ],
)
def test_file_mode(key, acl, umask, mode) -> None:
    assert layout.file_mode(key, acl, umask) == mode


@pytest.mark.parametrize(
    ("mode", "private"),
    [(0o600, True), (0o400, True), (0o700, True), (0o644, False), (0o640, False), (0o604, False), (0o664, False)],
)
def test_mode_is_private(mode, private) -> None:
    assert layout.mode_is_private(mode) is private


@pytest.mark.parametrize(
    ("key", "mode", "private"),
    [
        ("media_attachments/files/000/000/001/original/a.png", 0o600, True),
        ("media_attachments/files/000/000/001/original/a.png", 0o644, False),
        ("cache/accounts/avatars/000/000/001/original/a.png", 0o640, False),
        ("backups/dumps/000/000/001/original/archive.zip", 0o644, True),  # what Mastodon leaves it
        ("backups/dumps/000/000/001/original/archive.zip", 0o600, True),
    ],
)
def test_file_is_private(key, mode, private) -> None:
    assert layout.file_is_private(key, mode) is private
