"""Which synced partitions have rows that changed since they were read.

Mastodon moves ``<att>_updated_at`` whenever an attachment's file changes (a
replaced avatar, re-fetched remote media, eviction). A partition is stale when
one of its rows moved past the database time at which the partition's last
successful sync read its rows (``db_snapshot_at`` in the materialization; the
database's own clock, so no skew between machines).

These columns have no index in Mastodon (nor has ``updated_at``), so finding
changes reads rows. ``sync`` reads the whole table once per call (one
sequential scan); the changed-rows sensor reads one id slice per tick
(``id BETWEEN lo AND hi``: a range scan of the primary key, bounded by the
slice's rows, see ``orchestration.sensors``) and covers the table over a pass
of several ticks.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime

from mastodon_s3_sync.core.id_ranges import IdRange
from mastodon_s3_sync.core.mastodon.tables import MediaTable


def changed_at_sql(table: MediaTable) -> str:
    """SQL: the latest ``<att>_updated_at`` of a row (NULLs ignored, as GREATEST does)."""
    stamps = [attachment.column("updated_at") for attachment in table.attachments]
    return stamps[0] if len(stamps) == 1 else f"GREATEST({', '.join(stamps)})"


def changed_rows_sql(table: MediaTable, *, in_id_range: bool = False) -> str:
    """Rows changed after ``%s``; with ``in_id_range`` only those with ``id BETWEEN %s AND %s``
    (parameters: since[, lo, hi])."""
    changed_at = changed_at_sql(table)
    where = f"{changed_at} > %s"
    if in_id_range:
        where += " AND id BETWEEN %s AND %s"
    return f"SELECT id, {changed_at} FROM {table.name} WHERE {where}"


def changes_by_partition(
    connection, table: MediaTable, since: datetime, ranges: Iterable[IdRange], within: IdRange | None = None
) -> dict[str, datetime]:
    """Partition key -> the latest change among its rows changed after ``since``;
    with ``within``, only rows (and partitions) in that id range are read."""
    ordered = sorted(ranges)
    if within is not None:
        ordered = [r for r in ordered if within.lo <= r.lo and r.hi <= within.hi]
    starts = [id_range.lo for id_range in ordered]
    latest: dict[str, datetime] = {}
    with connection.cursor() as cursor:
        if within is None:
            cursor.execute(changed_rows_sql(table), (since,))
        else:
            cursor.execute(changed_rows_sql(table, in_id_range=True), (since, within.lo, within.hi))
        for record_id, changed_at in cursor:
            position = bisect.bisect_right(starts, record_id) - 1
            if position < 0 or record_id not in ordered[position]:
                continue  # not in a partition yet: the next partition cut covers it
            key = ordered[position].key
            if key not in latest or changed_at > latest[key]:
                latest[key] = changed_at
    return latest
