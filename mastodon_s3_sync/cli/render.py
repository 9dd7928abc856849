"""Reports for the terminal and files: the plan table, the verify table, problem-key exports."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mastodon_s3_sync.core.cached_media import CachedMedia, age_labels
from mastodon_s3_sync.core.planning import PlanRates, TablePlan
from mastodon_s3_sync.core.verification import Finding, Problem, TableVerification


def _human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    raise AssertionError("unreachable")


def _human_duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def _plan_cells(plan: TablePlan, rates: PlanRates) -> tuple[str, ...]:
    return (
        plan.table,
        f"{plan.rows:,}",
        f"{plan.rows_with_media:,}",
        f"{plan.objects:,}",
        _human_bytes(plan.original_bytes),
        _human_bytes(plan.estimated_bytes),
        f"{plan.partitions:,}",
        _human_duration(plan.estimated_seconds(rates)),
    )


def plan_table_view(plans: Sequence[TablePlan], rates: PlanRates) -> Table:
    view = Table(
        title=f"Plan (estimated at {rates.objects_per_second:,.0f} objects/s, {rates.megabytes_per_second:,.0f} MB/s)"
    )
    for column in (
        "table",
        "rows",
        "rows with media",
        "objects",
        "originals",
        "all styles (est.)",
        "partitions",
        "time (est.)",
    ):
        view.add_column(column, justify="left" if column == "table" else "right")
    total = TablePlan("total")
    for plan in plans:
        view.add_row(*_plan_cells(plan, rates))
        total.rows += plan.rows
        total.rows_with_media += plan.rows_with_media
        total.objects += plan.objects
        total.original_bytes += plan.original_bytes
        total.estimated_derivative_bytes += plan.estimated_derivative_bytes
        total.partitions += plan.partitions
    view.add_row(*_plan_cells(total, rates), style="bold")
    return view


def cached_media_view(report: CachedMedia) -> Table:
    """Cached remote media by age (files and originals' bytes), the trimming candidates."""
    view = Table(title="Cached remote media (cache/) by age of the row: files, originals' bytes")
    view.add_column("kind")
    for label in age_labels():
        view.add_column(label, justify="right")
    for kind, figures in report.by_age.items():
        view.add_row(kind, *(f"{f.files:,} / {_human_bytes(f.bytes)}" for f in figures))
    return view


def tootctl_lines(report: CachedMedia) -> list[str]:
    lines = [
        f"{command}: {figures.files:,} rows, {_human_bytes(figures.bytes)} of originals"
        for command, figures in report.tootctl.items()
    ]
    if not any(command.endswith("--prune-profiles") for command in report.tootctl):
        lines.append("(no follows table: the profile figures without --include-follows are not known)")
    return lines


def verify_table_view(results: Sequence[TableVerification]) -> Table:
    view = Table(title="Verify")
    view.add_column("table")
    columns = ("expected", "present", *(problem.value.replace("_", " ") for problem in Problem), "unproven", "ACLs")
    for column in columns:
        view.add_column(column, justify="right")
    for result in results:
        counts = result.counts
        view.add_row(
            result.table,
            f"{result.expected:,}",
            f"{result.present:,}",
            *(f"{counts[problem]:,}" for problem in Problem),
            f"{result.content_unproven:,}",
            _acl_cell(result),
        )
    return view


def _acl_cell(result: TableVerification) -> str:
    if not result.acl_checked:
        return "not kept"
    return f"{result.acl_unreadable:,} not read" if result.acl_unreadable else "checked"


class FindingsFile:
    """Every problem key, written as it is found: CSV (``.csv``) or JSON Lines (anything else)."""

    FIELDS = ("table", "row_id", "key", "problem", "detail")

    def __init__(self, path: Path):
        self.path = path
        self.written = 0
        self._output = path.open("w", newline="")
        self._csv = csv.writer(self._output) if path.suffix.lower() == ".csv" else None
        if self._csv:
            self._csv.writerow(self.FIELDS)

    def __call__(self, finding: Finding) -> None:
        values = (finding.table, finding.row_id, finding.key, finding.problem.value, finding.detail)
        if self._csv:
            self._csv.writerow(values)
        else:
            self._output.write(json.dumps(dict(zip(self.FIELDS, values))) + "\n")
        self.written += 1

    def close(self) -> None:
        self._output.close()


def print_view(view: Table) -> None:
    Console(width=160).print(view)
