"""What each Mastodon media table stores: attachments, styles, ACL rules, SQL.

``MediaTable.objects_for_row`` turns one database row (a mapping of Mastodon's
column names) into the objects it references. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mastodon_s3_sync.core.mastodon.layout import (
    object_key,
    style_content_type,
    style_filename,
    toggle_cache_prefix,
    uses_cache_prefix,
)
from mastodon_s3_sync.core.providers import PRIVATE

Row = Mapping[str, Any]
Styles = Mapping[str, str | None]
"""Style name -> its own format (file extension), or None to keep the original's."""

ORIGINAL_ONLY: Styles = {"original": None}
WITH_STATIC_PNG: Styles = {"original": None, "static": "png"}


class InvalidRow(ValueError):
    """A row whose values cannot name an object; reported, never fatal.

    ``objects``: what the row's other, valid attachments reference (an account whose avatar
    name is garbage still has its header copied)."""

    def __init__(self, message: str, objects: list[MediaObject] | None = None):
        super().__init__(message)
        self.objects = objects or []


@dataclass(frozen=True, slots=True)
class MediaObject:
    """One object a row references, keyed relative to the bucket's key prefix."""

    table: str
    row_id: int
    attachment: str
    style: str
    key: str
    fallback_key: str | None
    """The other ``cache/`` variant, tried only when ``key`` is missing at the source."""
    acl: str | None
    expected_size: int | None
    """``<att>_file_size`` for ``original``; derivatives are sized by the source bucket."""
    optional: bool = False
    """A legacy style that may or may not exist (the favicon ``ico`` before Mastodon 4.3):
    copied when present, and its absence is not "missing at the source"."""
    content_type: str | None = None
    """The Content-Type Mastodon stores it with on S3 (``layout.style_content_type``): what a file on
    disk, which has none, is uploaded with."""


@dataclass(frozen=True)
class Attachment:
    name: str
    directory: str
    styles: Callable[[Row], Styles]
    has_storage_schema_version: bool = False

    def column(self, suffix: str) -> str:
        return f"{self.name}_{suffix}"

    @property
    def columns(self) -> tuple[str, ...]:
        suffixes = ["file_name", "content_type", "file_size", "updated_at"]
        if self.has_storage_schema_version:
            suffixes.append("storage_schema_version")
        return tuple(self.column(suffix) for suffix in suffixes)


AUDIO_VIDEO_TYPES = frozenset({"video/x-ms-asf"})
"""``video/*`` types Mastodon lists as audio (``AUDIO_MIME_TYPES``): transcoded to mp3, original only."""
UNPROCESSED_IMAGE_TYPES = frozenset({"image/heic", "image/heif", "image/avif"})
"""Rows still typed like this (unprocessed, or AVIF before 2023-08) have a ``small`` converted to jpeg."""


def _media_file_styles(row: Row) -> Styles:
    content_type = (row["file_content_type"] or "").lower()
    if content_type in ("image/jpeg", "image/png", "image/webp"):
        return {"original": None, "small": None}
    if content_type in UNPROCESSED_IMAGE_TYPES:
        return {"original": None, "small": "jpeg"}
    if content_type == "image/gif" or (content_type.startswith("video/") and content_type not in AUDIO_VIDEO_TYPES):
        return {"original": None, "small": "png"}
    return ORIGINAL_ONLY


def _static_png_if_gif(content_type_column: str) -> Callable[[Row], Styles]:
    def styles(row: Row) -> Styles:
        return WITH_STATIC_PNG if (row[content_type_column] or "").lower() == "image/gif" else ORIGINAL_ONLY

    return styles


LEGACY_STYLES = frozenset({"ico"})
"""Styles Mastodon no longer writes: ``favicon`` lost ``ico`` in 4.3 (see ``MediaObject.optional``)."""
APP_ICON_SIZES = (57, 60, 72, 76, 114, 120, 144, 152, 167, 180, 1024, 36, 48, 96, 192, 256, 384, 512)
SITE_UPLOAD_STYLES: Mapping[str, Styles] = {
    "thumbnail": {"original": None, "@1x": "png", "@2x": "png"},
    "favicon": {"original": None, "ico": "ico", "16": "png", "32": "png", "48": "png"},  # ico: before 4.3
    "app_icon": {"original": None, **{str(size): "png" for size in APP_ICON_SIZES}},
}


def _site_upload_styles(row: Row) -> Styles:
    return SITE_UPLOAD_STYLES.get(row["var"], ORIGINAL_ONLY)


def _always(styles: Styles) -> Callable[[Row], Styles]:
    return lambda row: styles


@dataclass(frozen=True)
class MediaTable:
    name: str
    """Table name, asset key and key class directory at once."""
    attachments: tuple[Attachment, ...]
    is_remote: Callable[[Row], bool]
    style_columns: tuple[str, ...] = ()
    """Columns besides each attachment's content type that its styles read (``site_uploads.var``):
    selected with the row, and grouped by in the dry run's estimate (core/planning.py)."""
    extra_columns: tuple[str, ...] = ()
    """SQL expressions over ``t``, each ending in its result name."""
    always_private: bool = False

    def select_sql(self, where: str) -> str:
        columns = ["t.id"] + [f"t.{column}" for a in self.attachments for column in a.columns]
        columns += [f"t.{column}" for column in self.style_columns] + list(self.extra_columns)
        return f"SELECT {', '.join(columns)} FROM {self.name} t WHERE {where} ORDER BY t.id"

    def acl_for(self, row: Row, permission: str | None) -> str | None:
        """Mastodon's ACL: backups, media of suspended accounts and of deleted-but-kept statuses
        private; no ACL at all when the permission is empty."""
        if not permission:
            return None
        if self.always_private or row.get("account_suspended_at") is not None:
            return PRIVATE
        if row.get("status_deleted_at") is not None:
            return PRIVATE
        return permission

    def objects_for_row(self, row: Row, permission: str | None) -> list[MediaObject]:
        row_id = row["id"]
        acl = self.acl_for(row, permission)
        objects = []
        problems = []
        for attachment in self.attachments:
            file_name = row[attachment.column("file_name")]
            if file_name is None:
                continue
            try:
                _check_file_name(file_name)
            except InvalidRow as error:
                problems.append(f"{attachment.name}: {error}" if len(self.attachments) > 1 else str(error))
                continue
            cached = attachment.has_storage_schema_version and uses_cache_prefix(
                row[attachment.column("storage_schema_version")], self.is_remote(row)
            )
            for style, style_format in attachment.styles(row).items():
                filename = style_filename(file_name, style, style_format)
                key = object_key(self.name, attachment.directory, row_id, style, filename, cached=cached)
                objects.append(
                    MediaObject(
                        table=self.name,
                        row_id=row_id,
                        attachment=attachment.name,
                        style=style,
                        key=key,
                        fallback_key=toggle_cache_prefix(key) if attachment.has_storage_schema_version else None,
                        acl=acl,
                        expected_size=_file_size(row[attachment.column("file_size")]) if style == "original" else None,
                        optional=style in LEGACY_STYLES,
                        content_type=style_content_type(style, filename, row[attachment.column("content_type")]),
                    )
                )
        if problems:
            raise InvalidRow("; ".join(problems), objects)
        return objects


def _check_file_name(file_name: str) -> None:
    """Names Paperclip could not have written: empty or blank (Mastodon treats a blank name as no
    file at all), or not one path segment. Unicode, spaces inside, ``%``, ``+``, ``?`` and ``#``
    are fine: keys are percent-encoded on the wire."""
    if not file_name.strip():
        raise InvalidRow(f"file name {file_name!r} is empty or blank")
    if "/" in file_name or any(ord(character) < 32 or ord(character) == 127 for character in file_name):
        raise InvalidRow(f"file name {file_name!r} cannot be part of an object key")
    if file_name in (".", ".."):
        raise InvalidRow(f"file name {file_name!r} cannot be part of an object key")


def _file_size(value: Any) -> int | None:
    """The original's size as the row states it; None when unknown or garbage (negative): the
    source bucket then says how big it is."""
    return value if isinstance(value, int) and value >= 0 else None


def _has_domain(row: Row) -> bool:
    return row["domain"] is not None


TABLES: dict[str, MediaTable] = {
    table.name: table
    for table in (
        MediaTable(
            name="media_attachments",
            attachments=(
                Attachment("file", "files", _media_file_styles, has_storage_schema_version=True),
                Attachment("thumbnail", "thumbnails", _always(ORIGINAL_ONLY), has_storage_schema_version=True),
            ),
            is_remote=lambda row: bool(row["remote_url"]),
            # One primary-key lookup per row (accounts_pkey, statuses_pkey): as joins, the planner
            # hashed the whole accounts table for every 20,000-row partition at 10M rows.
            extra_columns=(
                "t.remote_url",
                "(SELECT a.suspended_at FROM accounts a WHERE a.id = t.account_id) AS account_suspended_at",
                "(SELECT s.deleted_at FROM statuses s WHERE s.id = t.status_id) AS status_deleted_at",
            ),
        ),
        MediaTable(
            name="accounts",
            attachments=(
                Attachment("avatar", "avatars", _static_png_if_gif("avatar_content_type"), True),
                Attachment("header", "headers", _static_png_if_gif("header_content_type"), True),
            ),
            is_remote=_has_domain,
            extra_columns=("t.domain",),
        ),
        MediaTable(
            name="custom_emojis",
            attachments=(Attachment("image", "images", _always(WITH_STATIC_PNG), True),),
            is_remote=_has_domain,
            extra_columns=("t.domain",),
        ),
        MediaTable(
            name="preview_cards",
            attachments=(Attachment("image", "images", _always(ORIGINAL_ONLY), True),),
            is_remote=lambda row: True,
        ),
        MediaTable(
            name="site_uploads",
            attachments=(Attachment("file", "files", _site_upload_styles),),
            is_remote=lambda row: False,
            style_columns=("var",),
        ),
        MediaTable(
            name="preview_card_providers",
            attachments=(Attachment("icon", "icons", _always(WITH_STATIC_PNG)),),
            is_remote=lambda row: False,
        ),
        MediaTable(
            name="backups",
            attachments=(Attachment("dump", "dumps", _always(ORIGINAL_ONLY)),),
            is_remote=lambda row: False,
            always_private=True,
        ),
    )
}
