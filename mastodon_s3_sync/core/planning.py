"""The dry run: rows, objects and bytes per table, partitions, and a time estimate.

One aggregate query per table, grouped by what decides the styles (content
type, site upload ``var``) of each attachment, so even a 50-million-row table
is one scan on the database server (parallel where PostgreSQL can) and no rows
travel to the client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.id_ranges import IdRange
from mastodon_s3_sync.core.mastodon.tables import MediaTable
from mastodon_s3_sync.core.tuning import Tuning

DERIVATIVE_SIZE_RATIO = 0.1
"""A derivative style (small, static, icon sizes) is estimated at a tenth of its original."""


@dataclass(frozen=True)
class PlanRates:
    objects_per_second: float
    megabytes_per_second: float

    @classmethod
    def tuned(cls, tuning: Tuning) -> PlanRates:
        """The rates ``SYNC_PLAN_OBJECTS_PER_SECOND`` and ``SYNC_PLAN_MB_PER_SECOND`` give."""
        return cls(tuning.plan_objects_per_second, tuning.plan_megabytes_per_second)


@dataclass
class TablePlan:
    table: str
    rows: int = 0
    rows_with_media: int = 0
    objects: int = 0
    original_bytes: int = 0
    estimated_derivative_bytes: int = 0
    partitions: int = 0
    """Partitions the table has now plus those its unpartitioned rows will need."""

    @property
    def estimated_bytes(self) -> int:
        return self.original_bytes + self.estimated_derivative_bytes

    def estimated_seconds(self, rates: PlanRates) -> float:
        return max(self.objects / rates.objects_per_second, self.estimated_bytes / 1e6 / rates.megabytes_per_second)


def plan_sql(table: MediaTable) -> tuple[str, list[str]]:
    """One pass over the table (parameters: covered_up_to twice): per group of rows sharing
    each attachment's file name state (``IS NULL``, ``= ''``) and style-deciding columns
    (content type, the table's ``style_columns``), the rows, the rows past the partitions, and
    each attachment's original bytes. Returns the SQL and the names of its group columns.

    The group columns are plain columns and comparisons, whose few distinct values
    PostgreSQL's statistics know, so it aggregates in a hash table (with parallel workers
    on a large table) rather than sorting the rows; only the groups reach the client."""
    group_sql = []
    for attachment in table.attachments:
        name = attachment.column("file_name")
        group_sql += [f"{name} IS NULL", f"{name} = ''", attachment.column("content_type")]
    group_sql += list(table.style_columns)
    group_names = [f"g{n}" for n in range(len(group_sql))]
    sizes = [
        f"coalesce(sum({a.column('file_size')}) FILTER (WHERE {a.column('file_name')} <> ''), 0)"
        for a in table.attachments
    ]
    sql = (
        f"SELECT {', '.join(group_sql)}, count(*), count(*) FILTER (WHERE %s::bigint IS NULL OR id > %s::bigint), "
        f"{', '.join(sizes)} FROM {table.name} GROUP BY {', '.join(str(n + 1) for n in range(len(group_sql)))}"
    )
    return sql, group_names


def plan_table(
    database: MastodonDatabase, table: MediaTable, existing: list[IdRange], rows_per_partition: int
) -> TablePlan:
    plan = TablePlan(table.name)
    covered_up_to = max((r.hi for r in existing), default=None)
    sql, group_names = plan_sql(table)
    counts: dict[tuple, list[int]] = {}  # (attachment index, content type, style columns) -> [files, bytes]
    uncovered = 0
    for record in database.query(sql, (covered_up_to, covered_up_to)):
        groups = record[: len(group_names)]
        rows, rows_uncovered, *sizes = record[len(group_names) :]
        plan.rows += rows
        uncovered += rows_uncovered
        style_values = tuple(groups[3 * len(table.attachments) :])
        attachments = [groups[3 * index : 3 * index + 3] for index in range(len(table.attachments))]
        if any(not is_null for is_null, _, _ in attachments):  # any file name, even an empty one
            plan.rows_with_media += rows
        for index, (is_null, is_empty, content_type) in enumerate(attachments):
            if is_null or is_empty:
                continue
            totals = counts.setdefault((index, content_type, style_values), [0, 0])
            totals[0] += rows
            totals[1] += int(sizes[index])
    plan.partitions = len(existing) + math.ceil(uncovered / rows_per_partition)
    for (index, content_type, style_values), (count, original_bytes) in counts.items():
        attachment = table.attachments[index]
        style_row = {attachment.column("content_type"): content_type, **dict(zip(table.style_columns, style_values))}
        styles = attachment.styles(style_row)
        plan.objects += count * len(styles)
        plan.original_bytes += original_bytes
        average = original_bytes / count if count else 0
        plan.estimated_derivative_bytes += int(count * (len(styles) - 1) * average * DERIVATIVE_SIZE_RATIO)
    return plan
