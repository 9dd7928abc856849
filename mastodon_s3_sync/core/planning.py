"""The dry run: rows, objects and bytes per table, partitions, and a time estimate.

One aggregate query per attachment, grouped by what decides the styles
(content type, site upload ``var``), so even a 50-million-row table is one
scan on the database server and no rows travel to the client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mastodon_s3_sync.core.mastodon.tables import MediaTable
from mastodon_s3_sync.core.id_ranges import IdRange

if TYPE_CHECKING:  # resources import this module (PlanRates)
    from mastodon_s3_sync.core.database import MastodonDatabase

DERIVATIVE_SIZE_RATIO = 0.1
"""A derivative style (small, static, icon sizes) is estimated at a tenth of its original."""


@dataclass(frozen=True)
class PlanRates:
    objects_per_second: float = 500.0
    megabytes_per_second: float = 50.0


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


def _style_groups_sql(table: MediaTable, attachment) -> tuple[str, list[str]]:
    """Counts and original bytes per group of rows that share a style set."""
    group_columns = [attachment.column("content_type")] + (["var"] if table.name == "site_uploads" else [])
    selected = ", ".join(group_columns)
    sql = (
        f"SELECT {selected}, count(*), coalesce(sum({attachment.column('file_size')}), 0) FROM {table.name} "
        f"WHERE {attachment.column('file_name')} IS NOT NULL AND {attachment.column('file_name')} <> '' "
        f"GROUP BY {selected}"
    )
    return sql, group_columns


def plan_table(
    database: MastodonDatabase, table: MediaTable, existing: list[IdRange], rows_per_partition: int
) -> TablePlan:
    plan = TablePlan(table.name)
    with database.connection() as connection:
        covered_up_to = max((r.hi for r in existing), default=None)
        [(plan.rows, uncovered)] = database.query(
            f"SELECT count(*), count(*) FILTER (WHERE %s IS NULL OR id > %s) FROM {table.name}",
            (covered_up_to, covered_up_to),
            connection=connection,
        )
        plan.partitions = len(existing) + math.ceil(uncovered / rows_per_partition)
        with_media = " OR ".join(f"{a.column('file_name')} IS NOT NULL" for a in table.attachments)
        [(plan.rows_with_media,)] = database.query(
            f"SELECT count(*) FROM {table.name} WHERE {with_media}", connection=connection
        )
        for attachment in table.attachments:
            sql, group_columns = _style_groups_sql(table, attachment)
            for *group, count, original_bytes in database.query(sql, connection=connection):
                styles = attachment.styles(dict(zip(group_columns, group)))
                plan.objects += count * len(styles)
                plan.original_bytes += int(original_bytes)
                average = int(original_bytes) / count if count else 0
                plan.estimated_derivative_bytes += int(count * (len(styles) - 1) * average * DERIVATIVE_SIZE_RATIO)
    return plan
