"""Mastodon's object-key layout (kt-paperclip interpolations), as pure functions.

See docs/mastodon-storage.md: ``[prefix/][cache/]<class>/<attachment>/<id_partition>/<style>/<filename>``.
"""

from __future__ import annotations

import posixpath
import re

from mastodon_s3_sync.core.providers import PRIVATE

ID_PARTITION_LIMIT = 1_000_000_000
_THREE_DIGITS = re.compile(r"\d{3}")


def id_partition(record_id: int) -> str:
    """kt-paperclip's ``:id_partition``: 9 digits below 10^9, else at least 12.

    ``scan(/\\d{3}/)`` drops a trailing group of 1-2 digits (13- and 14-digit ids
    lose their last digits) and skips the sign of a negative id, exactly as here.
    """
    padded = f"{record_id:09d}" if record_id < ID_PARTITION_LIMIT else f"{record_id:012d}"
    return "/".join(_THREE_DIGITS.findall(padded))


def _ruby_extname(file_name: str) -> str:
    """Ruby's ``File.extname`` without the dot: a leading dot is not an extension."""
    stem, ext = posixpath.splitext(file_name)
    return ext[1:] if stem else ""


def style_filename(file_name: str, style: str, style_format: str | None) -> str:
    """``:filename`` for one style: the stored name for ``original``, else basename + format."""
    if style == "original":
        return file_name
    original_extension = _ruby_extname(file_name)
    basename = file_name[: -len(original_extension) - 1] if original_extension else file_name
    extension = style_format or original_extension
    return f"{basename}.{extension}" if extension else basename


def object_key(
    class_dir: str,
    attachment_dir: str,
    record_id: int,
    style: str,
    filename: str,
    *,
    cached: bool,
) -> str:
    """The key Mastodon writes, relative to the bucket's key prefix."""
    key = f"{class_dir}/{attachment_dir}/{id_partition(record_id)}/{style}/{filename}"
    return f"cache/{key}" if cached else key


def uses_cache_prefix(storage_schema_version: int | None, is_remote: bool) -> bool:
    """``cache/`` iff the record is remote and its schema version is >= 1 (NULL counts as 0)."""
    return is_remote and (storage_schema_version or 0) >= 1


def toggle_cache_prefix(key: str) -> str:
    """The other variant of a key, for buckets whose layout drifted from the rows."""
    return key[len("cache/") :] if key.startswith("cache/") else f"cache/{key}"


def with_key_prefix(prefix: str | None, key: str) -> str:
    """The bucket key for a layout key under Mastodon's ``S3_KEY_PREFIX``, joined literally.

    Mastodon's path is ``S3_KEY_PREFIX + "/" + key`` when the variable is set, and
    kt-paperclip's S3 storage strips exactly one leading ``/``: ``media/`` gives
    ``media//accounts/...``, ``/media`` gives ``media/accounts/...``, set but empty
    gives ``accounts/...``. Keys are opaque to S3, so a normalized prefix would miss
    every object of an instance whose prefix is written oddly.
    """
    if prefix is None:
        return key
    path = f"{prefix}/{key}"
    return path[1:] if path.startswith("/") else path


CACHE_CONTROL = "public, max-age=315576000, immutable"
"""The Cache-Control Mastodon sends with every object it writes (``s3_headers`` in
``config/initializers/paperclip.rb``)."""


EXTENSION_CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "avif": "image/avif",
    "heic": "image/heic",
    "heif": "image/heif",
    "ico": "image/vnd.microsoft.icon",
    "svg": "image/svg+xml",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/ogg",
    "m4a": "audio/mp4",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "zip": "application/zip",
}
"""The types of the files Mastodon derives (styles with a format, thumbnails, transcodes) and of the
originals it keeps, by extension, as Paperclip's content-type detection names them."""


def style_content_type(style: str, file_name: str, original_content_type: str | None) -> str | None:
    """The Content-Type Mastodon stores an object with on S3: the row's ``<att>_content_type`` for the
    original; for a derived style, the type of its file's extension (Paperclip detects it on the
    generated file). None when neither says one (S3 then serves its default)."""
    if style == "original":
        return original_content_type or None
    return EXTENSION_CONTENT_TYPES.get(_ruby_extname(file_name).lower())


PUBLIC_FILE_MODE = 0o666
PRIVATE_FILE_MODE = 0o600
_GROUP_OR_OTHER_READ = 0o044
_NEVER_CHMODDED = "backups/"
"""Backups: private on S3 by an ACL set at upload; on disk Mastodon never chmods them."""


def file_mode(key: str, acl: str | None, umask: int) -> int:
    """The mode Mastodon's filesystem storage gives the file at ``key`` (under ``PAPERCLIP_ROOT_PATH``)
    whose ACL on S3 would be ``acl``: what a web server may serve is what Mastodon keeps private.

    Paperclip writes every file ``0666 & ~umask`` (``flush_writes`` in kt-paperclip's
    storage/filesystem.rb). Media made private is chmodded ``0600 & ~umask``:
    ``SuspendAccountService#privatize_media_attachments!`` (suspension) and
    ``UpdateMediaAttachmentsPermissionsService`` (``:private`` for the media of a status a moderator
    deleted, ``:public``, ``0666 & ~umask``, on unsuspension), both on ``:filesystem`` storage.
    Backups are private on S3 only (an ACL set at upload); on disk nothing chmods them and the web
    server serves the users' downloads, so they keep ``0666 & ~umask``.
    """
    private = acl == PRIVATE and not key.startswith(_NEVER_CHMODDED)
    return (PRIVATE_FILE_MODE if private else PUBLIC_FILE_MODE) & ~umask


def mode_is_private(mode: int) -> bool:
    """Whether a file of this mode is private as Mastodon makes it (``file_mode``): readable by its
    owner only, so neither the web server's group nor anyone else may read it."""
    return not mode & _GROUP_OR_OTHER_READ


def file_is_private(key: str, mode: int) -> bool:
    """The reverse of ``file_mode``: whether the file at ``key`` stands for a private object. A backup
    always does (its mode says nothing: Mastodon leaves it ``0666 & ~umask``), any other file when
    ``mode_is_private``."""
    return key.startswith(_NEVER_CHMODDED) or mode_is_private(mode)
