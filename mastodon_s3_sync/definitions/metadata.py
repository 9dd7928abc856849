"""How sync results read in the Dagster UI: numeric metadata and markdown problem tables."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import MetadataValue

from mastodon_s3_sync.core.copying import PartitionReport
from mastodon_s3_sync.core.id_ranges import IdRange
from mastodon_s3_sync.core.planning import PlanRates, TablePlan
from mastodon_s3_sync.core.referenced_objects import ObjectProblem
from mastodon_s3_sync.definitions.partitions import read_metadata

LISTED_IN_UI = 50


def problems_markdown(problems: Sequence[ObjectProblem], total: int, limit: int = LISTED_IN_UI) -> str:
    if not problems:
        return "None."
    lines = ["| id | key | problem |", "|---|---|---|"]  # one asset, one table: no table column
    lines += [f"| {p.row_id} | `{p.key}` | {p.reason} |" for p in problems[:limit]]
    if total > limit:
        lines.append(f"\n{limit} of {total} shown.")
    return "\n".join(lines)


def partition_metadata(report: PartitionReport, id_range: IdRange) -> dict[str, MetadataValue]:
    return {
        **read_metadata(report.read),
        "id_lo": MetadataValue.int(id_range.lo),
        "id_hi": MetadataValue.int(id_range.hi),
        "rows": MetadataValue.int(report.rows),
        "objects_planned": MetadataValue.int(report.planned),
        "objects_copied": MetadataValue.int(report.copied),
        "objects_skipped": MetadataValue.int(report.skipped),
        "acls_fixed": MetadataValue.int(report.acls_fixed),
        "objects_missing": MetadataValue.int(report.missing),
        "objects_failed": MetadataValue.int(report.failed),
        "bytes_copied": MetadataValue.int(report.bytes_copied),
        "peak_requests_in_flight": MetadataValue.int(report.peak_in_flight),
        "max_requests_in_flight": MetadataValue.int(report.max_in_flight),
        "invalid_rows": MetadataValue.int(report.invalid_rows),
        "fallback_keys_used": MetadataValue.int(report.fallback_used),
        "missing_at_source": MetadataValue.md(problems_markdown(report.missing_objects, report.missing)),
        "other_problems": MetadataValue.md(
            problems_markdown(report.problems, report.invalid_rows + report.fallback_used)
        ),
    }


def plan_metadata(plan: TablePlan, rates: PlanRates) -> dict[str, MetadataValue]:
    return {
        "rows": MetadataValue.int(plan.rows),
        "rows_with_media": MetadataValue.int(plan.rows_with_media),
        "objects": MetadataValue.int(plan.objects),
        "original_bytes": MetadataValue.int(plan.original_bytes),
        "estimated_bytes": MetadataValue.int(plan.estimated_bytes),
        "partitions": MetadataValue.int(plan.partitions),
        "estimated_hours": MetadataValue.float(round(plan.estimated_seconds(rates) / 3600, 2)),
    }
