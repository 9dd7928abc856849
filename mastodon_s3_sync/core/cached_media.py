"""What to trim before a move: the cached copies of remote media, by age, and what
``tootctl media remove`` would free. Read-only: the tool never changes the database.

Cached remote media are the rows docs/mastodon-storage.md calls remote (kept under ``cache/``
from storage schema version 1): media attachments with a ``remote_url``, avatars and headers
and custom emojis of accounts/emojis with a ``domain``, and every preview card. Ages are by the
row's ``created_at``; bytes are the originals' ``<att>_file_size`` (derived styles come on top).

``tootctl media remove --days N`` selects, as Mastodon's ``lib/mastodon/cli/media.rb`` does:
- by default: ``MediaAttachment.cached`` (``remote_url <> ''`` and ``file_file_name`` not NULL)
  with ``created_at <= now - N days``, skipping a blank file; it frees ``file_file_size +
  thumbnail_file_size``;
- ``--prune-profiles``: remote accounts with ``last_webfingered_at`` and ``updated_at`` both
  ``<= now - N days``, with an avatar or a header, not following or followed by anyone (unless
  ``--include-follows``); it frees ``header_file_size + avatar_file_size``;
- ``--remove-headers``: the same accounts that have a header; it frees ``header_file_size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mastodon_s3_sync.core.database import MastodonDatabase

AGE_BUCKETS = ((0, 7), (7, 30), (30, 90), (90, None))
"""Age in days: [low, high) (None: no upper bound)."""


@dataclass(frozen=True)
class CachedKind:
    label: str
    table: str
    attachment: str
    remote_sql: str


CACHED_KINDS = (
    CachedKind("remote media attachments", "media_attachments", "file", "remote_url <> ''"),
    CachedKind("remote media thumbnails", "media_attachments", "thumbnail", "remote_url <> ''"),
    CachedKind("remote avatars", "accounts", "avatar", "domain IS NOT NULL"),
    CachedKind("remote headers", "accounts", "header", "domain IS NOT NULL"),
    CachedKind("remote custom emojis", "custom_emojis", "image", "domain IS NOT NULL"),
    CachedKind("preview cards", "preview_cards", "image", "true"),
)


@dataclass
class Figures:
    files: int = 0
    bytes: int = 0


@dataclass
class CachedMedia:
    by_age: dict[str, list[Figures]] = field(default_factory=dict)
    """Label -> figures per ``AGE_BUCKETS`` entry."""
    tootctl: dict[str, Figures] = field(default_factory=dict)
    """A ``tootctl media remove`` command line -> the rows it would clear (files: rows) and bytes."""
    days: int = 7


def age_labels() -> list[str]:
    return [
        f"< {high} days" if low == 0 else f"> {low} days" if high is None else f"{low}-{high} days"
        for low, high in AGE_BUCKETS
    ]


def _age_sql(kind: CachedKind) -> str:
    name, size = f"{kind.attachment}_file_name", f"{kind.attachment}_file_size"
    columns = []
    for low, high in AGE_BUCKETS:
        window = f"created_at <= %(now)s - interval '{low} days'"
        if high is not None:
            window += f" AND created_at > %(now)s - interval '{high} days'"
        columns += [f"count(*) FILTER (WHERE {window})", f"coalesce(sum({size}) FILTER (WHERE {window}), 0)"]
    return f"SELECT {', '.join(columns)} FROM {kind.table} WHERE {kind.remote_sql} AND coalesce({name}, '') <> ''"


def _profiles_sql(sizes: str, having: str, follows: bool) -> str:
    not_followed = (
        " AND NOT EXISTS (SELECT 1 FROM follows f WHERE f.account_id = a.id OR f.target_account_id = a.id)"
        if follows
        else ""
    )
    return (
        f"SELECT count(*), coalesce(sum({sizes}), 0) FROM accounts a WHERE a.domain IS NOT NULL "
        "AND a.last_webfingered_at <= %(cutoff)s AND a.updated_at <= %(cutoff)s "
        f"AND ({having}){not_followed}"
    )


def tootctl_queries(has_follows: bool) -> dict[str, str]:
    """``tootctl media remove`` options -> the SQL of what it would clear (parameter ``cutoff``)."""
    avatar = "coalesce(a.avatar_file_name, '') <> ''"
    header = "coalesce(a.header_file_name, '') <> ''"
    queries = {
        "": "SELECT count(*), coalesce(sum(coalesce(file_file_size, 0) + coalesce(thumbnail_file_size, 0)), 0) "
        "FROM media_attachments WHERE remote_url <> '' AND file_file_name IS NOT NULL AND file_file_name <> '' "
        "AND created_at <= %(cutoff)s",
    }
    profiles = "coalesce(a.header_file_size, 0) + coalesce(a.avatar_file_size, 0)"
    for flag, sizes, having in (
        (" --prune-profiles", profiles, f"{avatar} OR {header}"),
        (" --remove-headers", "coalesce(a.header_file_size, 0)", header),
    ):
        queries[flag + " --include-follows"] = _profiles_sql(sizes, having, follows=False)
        if has_follows:
            queries[flag] = _profiles_sql(sizes, having, follows=True)
    return queries


def cached_media(database: MastodonDatabase, days: int = 7, now: datetime | None = None) -> CachedMedia:
    """The cached remote media by age, and what ``tootctl media remove --days days`` would free, at
    ``now`` (default: the database's clock, in UTC as Mastodon's timestamps are)."""
    report = CachedMedia(days=days)
    with database.connection() as connection:
        now = now or database.clock(connection)
        for kind in CACHED_KINDS:
            [record] = database.query(_age_sql(kind), {"now": now}, connection)
            report.by_age[kind.label] = [Figures(record[i], int(record[i + 1])) for i in range(0, len(record), 2)]
        [(has_follows,)] = database.query("SELECT to_regclass('follows') IS NOT NULL", (), connection)
        for options, sql in tootctl_queries(has_follows).items():
            [(rows, size)] = database.query(sql, {"cutoff": now - timedelta(days=days)}, connection)
            report.tootctl[f"tootctl media remove --days {days}{options}"] = Figures(rows, int(size))
    return report
