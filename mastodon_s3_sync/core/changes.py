"""Which synced partitions have rows that changed since they were read.

Mastodon moves ``<att>_updated_at`` whenever an attachment's file changes (a replaced avatar,
re-fetched remote media, eviction) and sets it when a row gets its file. It stamps it with the
app server's clock, and the row becomes visible when its transaction commits, which can be
minutes later (a video transcode). A row's snowflake id comes from its insert time, so a late
commit can also add a row to a partition that is already synced. Comparing stamps with the
database time at which the partition's last sync read its rows (``db_snapshot_at``) therefore
misses a row stamped before that read but visible only after it, or stamped by a slow clock.

The late window closes that gap: each sync records the rows it read whose change lies in
``(db_snapshot_at - overlap, db_snapshot_at]`` (``SYNC_CHANGE_OVERLAP_MINUTES``) as a count and
an order-independent fingerprint (``LateRows``). A partition is stale when one of its rows
changed after ``db_snapshot_at``, or when the rows in its window are no longer those the sync
read (``PartitionCheck``). So a change stamped at most the overlap before it became visible is
found, and a re-synced partition is not stale again: its new read saw its window as it is.

These columns have no index in Mastodon (nor has ``updated_at``), so finding
changes reads rows. ``sync`` reads the whole table once per call (one
sequential scan); the changed-rows sensor reads one id slice per tick
(``id BETWEEN lo AND hi``: a range scan of the primary key, bounded by the
slice's rows, see ``definitions.sensors``) and covers the table over a pass
of several ticks.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from mastodon_s3_sync.core.id_ranges import IdRange
from mastodon_s3_sync.core.mastodon.tables import MediaTable, Row

FINGERPRINT_MODULUS = 2**64


def stamp_columns(table: MediaTable) -> tuple[str, ...]:
    """The ``<att>_updated_at`` columns of a table's rows."""
    return tuple(attachment.column("updated_at") for attachment in table.attachments)


def changed_at_sql(table: MediaTable) -> str:
    """SQL: the latest ``<att>_updated_at`` of a row (NULLs ignored, as GREATEST does)."""
    stamps = stamp_columns(table)
    return stamps[0] if len(stamps) == 1 else f"GREATEST({', '.join(stamps)})"


def row_changed_at(row: Row, stamps: tuple[str, ...]) -> datetime | None:
    """What ``changed_at_sql`` says of a row read with ``MediaTable.select_sql`` (``stamps``: the
    table's ``stamp_columns``, worked out once per read)."""
    latest = None
    for column in stamps:
        stamp = row[column]
        if stamp is not None and (latest is None or stamp > latest):
            latest = stamp
    return latest


def changed_rows_sql(table: MediaTable, *, in_id_range: bool = False) -> str:
    """Rows changed after ``%s``; with ``in_id_range`` only those with ``id BETWEEN %s AND %s``
    (parameters: since[, lo, hi])."""
    changed_at = changed_at_sql(table)
    where = f"{changed_at} > %s"
    if in_id_range:
        where += " AND id BETWEEN %s AND %s"
    return f"SELECT id, {changed_at} FROM {table.name} WHERE {where}"


@dataclass(frozen=True)
class LateRows:
    """A set of (row id, change time) pairs as a count and a fingerprint: the sum of each pair's
    hash modulo 2**64, so the same rows give the same figures in whatever order they are read."""

    count: int = 0
    fingerprint: int = 0

    def plus(self, row_id: int, changed_at: datetime) -> LateRows:
        digest = hashlib.blake2b(f"{row_id}:{changed_at.isoformat()}".encode(), digest_size=8).digest()
        return LateRows(self.count + 1, (self.fingerprint + int.from_bytes(digest, "big")) % FINGERPRINT_MODULUS)


@dataclass(frozen=True)
class LastRead:
    """What a partition's sync read: when (``snapshot_at``, the database's clock) and, in its
    late window ``(window_start, snapshot_at]``, which rows."""

    snapshot_at: datetime
    window_start: datetime
    late_rows: LateRows | None
    """None: recorded before late windows were kept (then any row in the window counts as late)."""

    def in_window(self, changed_at: datetime) -> bool:
        return self.window_start < changed_at <= self.snapshot_at


@dataclass
class PartitionCheck:
    """The rows a check reads of one synced partition (those changed after its window's start),
    against what its last sync read."""

    read: LastRead
    after: LateRows = field(default_factory=LateRows)
    """Rows changed after the sync's read."""
    window: LateRows = field(default_factory=LateRows)
    """Rows in the sync's late window, as they are now."""

    def see(self, row_id: int, changed_at: datetime) -> None:
        if changed_at > self.read.snapshot_at:
            self.after = self.after.plus(row_id, changed_at)
        elif self.read.in_window(changed_at):
            self.window = self.window.plus(row_id, changed_at)

    @property
    def stale(self) -> bool:
        if self.after.count:
            return True
        if self.read.late_rows is None:
            return self.window.count > 0
        return self.window != self.read.late_rows

    @property
    def state(self) -> str:
        """The partition as this check found it: the same until it is synced again or another of
        its rows changes (a run key that requests each needed re-sync once)."""
        rows = self.after.count + self.window.count
        fingerprint = (self.after.fingerprint + self.window.fingerprint) % FINGERPRINT_MODULUS
        return f"{self.read.snapshot_at.isoformat()}+{rows}:{fingerprint:016x}"


def check_partitions(
    connection, table: MediaTable, checks: Mapping[IdRange, PartitionCheck], within: IdRange | None = None
) -> None:
    """Read the rows of the checked partitions changed after the earliest of their windows' starts
    into their checks; with ``within``, only rows in that id range are read."""
    if not checks:
        return
    ordered = sorted(checks)
    starts = [id_range.lo for id_range in ordered]
    since = min(check.read.window_start for check in checks.values())
    with connection.cursor() as cursor:
        if within is None:
            cursor.execute(changed_rows_sql(table), (since,))
        else:
            cursor.execute(changed_rows_sql(table, in_id_range=True), (since, within.lo, within.hi))
        for record_id, changed_at in cursor:
            position = bisect.bisect_right(starts, record_id) - 1
            if position >= 0 and record_id in ordered[position]:  # else: not checked (not synced)
                checks[ordered[position]].see(record_id, changed_at)
