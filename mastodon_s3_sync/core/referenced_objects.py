"""Rows -> the objects they reference -> batches: the one path that planning a copy,
copying and verifying all read the database through."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mastodon_s3_sync.core.changes import LastRead, LateRows, row_changed_at, stamp_columns
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.errors import DatabaseConnectionLost
from mastodon_s3_sync.core.id_ranges import IdRange
from mastodon_s3_sync.core.mastodon.tables import InvalidRow, MediaObject, MediaTable
from mastodon_s3_sync.core.providers import PRIVATE

MAX_LISTED_PROBLEMS = 1000
"""Problem objects kept per report; the counts stay exact beyond it, so memory stays flat."""


@dataclass(frozen=True)
class ObjectProblem:
    table: str
    row_id: int
    key: str
    reason: str


@dataclass
class ReadStats:
    late_window: timedelta = timedelta(0)
    """How far before the read a row's change puts it in ``last_read.late_rows`` (``core.changes``)."""
    last_read: LastRead | None = None
    """When the rows were read (the database's clock, UTC) and the rows read in the late window."""
    rows: int = 0
    objects: int = 0
    expected_bytes: int = 0
    invalid_rows: int = 0
    invalid_examples: list[ObjectProblem] = field(default_factory=list)
    """The first ``MAX_LISTED_PROBLEMS`` invalid rows."""

    def invalid(self, problem: ObjectProblem) -> None:
        self.invalid_rows += 1
        if len(self.invalid_examples) < MAX_LISTED_PROBLEMS:
            self.invalid_examples.append(problem)

    def for_row(self, row_id: int) -> ReadStats:
        return self

    def read_at(self, snapshot_at: datetime) -> None:
        self.last_read = LastRead(snapshot_at, snapshot_at - self.late_window, LateRows())

    def read_row(self, row_id: int, changed_at: datetime | None) -> None:
        self.rows += 1
        read = self.last_read
        if changed_at is not None and changed_at > read.window_start and read.in_window(changed_at):
            self.last_read = replace(read, late_rows=read.late_rows.plus(row_id, changed_at))


class PartitionedStats:
    """``ReadStats`` per id range, for a read that spans several partitions (a ranged run)."""

    def __init__(self, ranges: Sequence[IdRange], late_window: timedelta = timedelta(0)):
        self.ranges = sorted(ranges)
        self.by_range = {id_range: ReadStats(late_window=late_window) for id_range in self.ranges}
        self._starts = [id_range.lo for id_range in self.ranges]

    def range_of(self, row_id: int) -> IdRange:
        position = bisect.bisect_right(self._starts, row_id) - 1
        if position < 0 or row_id not in self.ranges[position]:
            raise ValueError(f"id {row_id} is in none of the run's partitions")
        return self.ranges[position]

    def for_row(self, row_id: int) -> ReadStats:
        return self.by_range[self.range_of(row_id)]

    def read_at(self, snapshot_at: datetime) -> None:
        for stats in self.by_range.values():
            stats.read_at(snapshot_at)

    @property
    def span(self) -> IdRange:
        """One range over all of them: the partitions of a run are contiguous."""
        return IdRange(self.ranges[0].lo, self.ranges[-1].hi)

    @property
    def rows(self) -> int:
        return sum(stats.rows for stats in self.by_range.values())


def referenced_objects(
    database: MastodonDatabase,
    table: MediaTable,
    permission: str | None,
    id_range: IdRange | None = None,
    stats: ReadStats | PartitionedStats | None = None,
) -> Iterator[MediaObject]:
    """Every object that the table's rows (in ``id_range``, else all) reference, in id order.

    A row whose values cannot name an object is counted in ``stats`` and skipped: the rest go on.
    The scan walks the primary key index (``ORDER BY id``, ``id BETWEEN``). A connection lost
    mid-scan is a ``DatabaseConnectionLost`` that says which rows were being read.
    """
    stats = stats if stats is not None else ReadStats()
    stamps = stamp_columns(table)
    where, parameters = ("t.id BETWEEN %s AND %s", (id_range.lo, id_range.hi)) if id_range else ("TRUE", ())
    try:
        with database.connection() as connection:
            stats.read_at(database.clock(connection))
            for row in database.stream(table.select_sql(where), parameters, connection=connection):
                row_stats = stats.for_row(row["id"])
                row_stats.read_row(row["id"], row_changed_at(row, stamps))
                try:
                    objects = table.objects_for_row(row, permission)
                except InvalidRow as error:
                    row_stats.invalid(ObjectProblem(table.name, row.get("id"), "", str(error)))
                    objects = error.objects  # the row's valid attachments still count
                for media_object in objects:
                    row_stats.objects += 1
                    row_stats.expected_bytes += media_object.expected_size or 0
                    yield media_object
    except DatabaseConnectionLost as lost:
        rows = f"{table.name} rows" + (f" (ids {id_range.lo}-{id_range.hi})" if id_range else "")
        raise lost.reading(f"{rows}, after {stats.rows} rows") from None


def current_acls(
    database: MastodonDatabase, table: MediaTable, permission: str | None, objects: Sequence[MediaObject]
) -> list[str | None]:
    """The ACL each object's row gives it now, its rows read again by id (one query): a plan read
    before a suspension or a deletion must not publish what is private now. An object whose row is
    gone is no longer Mastodon's to publish: private."""
    if not permission:
        return [None] * len(objects)
    ids = sorted({media_object.row_id for media_object in objects})
    with database.connection() as connection:
        acls = {
            row["id"]: table.acl_for(row, permission)
            for row in database.stream(table.select_sql("t.id = ANY(%s)"), (ids,), connection=connection)
        }
    return [acls.get(media_object.row_id, PRIVATE) for media_object in objects]


def batched(
    objects: Iterator[MediaObject], max_objects: int, max_bytes: int | None = None
) -> Iterator[list[MediaObject]]:
    """Batches cut by count and, when given, by expected bytes (the originals' sizes)."""
    batch: list[MediaObject] = []
    batch_bytes = 0
    for media_object in objects:
        batch.append(media_object)
        batch_bytes += media_object.expected_size or 0
        if len(batch) >= max_objects or (max_bytes is not None and batch_bytes >= max_bytes):
            yield batch
            batch, batch_bytes = [], 0
    if batch:
        yield batch
