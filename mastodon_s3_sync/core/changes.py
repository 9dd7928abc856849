"""Which synced partitions have rows that changed since they were read.

Mastodon moves ``<att>_updated_at`` whenever an attachment's file changes (a
replaced avatar, re-fetched remote media, eviction). A partition is stale when
one of its rows moved past the database time at which the partition's last
successful sync read its rows (``db_snapshot_at`` in the materialization; the
database's own clock, so no skew between machines). These columns have no
index in Mastodon, so finding changes scans the table: the sensor runs it on
a long interval with a cursor, ``sync`` once per call.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime

from mastodon_s3_sync.core.mastodon.tables import MediaTable
from mastodon_s3_sync.core.id_ranges import IdRange


def changed_rows_sql(table: MediaTable) -> str:
    stamps = [f"{attachment.column('updated_at')}" for attachment in table.attachments]
    changed_at = stamps[0] if len(stamps) == 1 else f"GREATEST({', '.join(stamps)})"
    return f"SELECT id, {changed_at} FROM {table.name} WHERE {changed_at} > %s"


def changes_by_partition(
    connection, table: MediaTable, since: datetime, ranges: Iterable[IdRange]
) -> dict[str, datetime]:
    """Partition key -> the latest change among its rows changed after ``since``."""
    ordered = sorted(ranges)
    starts = [id_range.lo for id_range in ordered]
    latest: dict[str, datetime] = {}
    with connection.cursor() as cursor:
        cursor.execute(changed_rows_sql(table), (since,))
        for record_id, changed_at in cursor:
            position = bisect.bisect_right(starts, record_id) - 1
            if position < 0 or record_id not in ordered[position]:
                continue  # not in a partition yet: the next partition cut covers it
            key = ordered[position].key
            if key not in latest or changed_at > latest[key]:
                latest[key] = changed_at
    return latest
