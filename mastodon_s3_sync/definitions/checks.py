"""One asset check per media asset: red until every referenced object is at the destination
with the source's size and headers and Mastodon's ACL (the same checks as ``verify``).

Severity: ERROR when something is wrong or missing (or the source looks misconfigured), WARN when
nothing is wrong but some objects' content or ACL could not be proven: the check still fails
(nothing unproven passes), but it reads as "run ``verify --deep``", not as damage found."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from mastodon_s3_sync.core import settings
from mastodon_s3_sync.core.errors import SourceMostlyMissing
from mastodon_s3_sync.core.id_ranges import parse_partition_key
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.referenced_objects import ObjectProblem
from mastodon_s3_sync.core.verification import Problem, verify_table
from mastodon_s3_sync.definitions.metadata import problems_markdown
from mastodon_s3_sync.definitions.resources import DestinationS3Resource, MastodonDbResource, SourceS3Resource

CHECK_NAME = "referenced_objects_at_destination"


def build_destination_check(table: str) -> AssetChecksDefinition:
    @asset_check(
        asset=AssetKey(table),
        name=CHECK_NAME,
        description=f"Every object that `{table}` rows reference and the source has is at the destination, "
        "with the same size, Content-Type and Cache-Control, and the ACL Mastodon would set.",
    )
    def destination_complete(
        context: AssetCheckExecutionContext,
        mastodon_db: MastodonDbResource,
        source_s3: SourceS3Resource,
        destination_s3: DestinationS3Resource,
    ) -> AssetCheckResult:
        # Inside a partition's run (an asset-page materialization or backfill includes the
        # check), a quick listing-based check of that range; alone, the whole table, thoroughly.
        in_partition = context.has_partition_key
        try:
            result = verify_table(
                mastodon_db.client(),
                TABLES[table],
                source_s3.client(),
                destination_s3.client(),
                thorough=not in_partition,
                id_range=parse_partition_key(context.partition_key) if in_partition else None,
                accept_missing=settings.value("SYNC_ACCEPT_MISSING"),
            )
        except SourceMostlyMissing as error:
            return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, description=str(error))
        counts = result.counts
        wrong = [f for f in result.findings if f.problem is not Problem.MISSING_AT_SOURCE]
        problems = [ObjectProblem(f.table, f.row_id, f.key, f"{f.problem.value} {f.detail}".strip()) for f in wrong]
        unproven = result.unproven()
        return AssetCheckResult(
            passed=result.complete,
            severity=AssetCheckSeverity.ERROR if result.wrong else AssetCheckSeverity.WARN,
            description="; ".join(unproven) if unproven else None,
            metadata={
                "expected": MetadataValue.int(result.expected),
                "present": MetadataValue.int(result.present),
                **{problem.value: MetadataValue.int(counts[problem]) for problem in Problem},
                "content_unproven": MetadataValue.int(result.content_unproven),
                "acl_checked": MetadataValue.bool(result.acl_checked),
                "acl_unreadable": MetadataValue.int(result.acl_unreadable),
                "scope": MetadataValue.text(f"partition {context.partition_key}" if in_partition else "whole table"),
                "problems": MetadataValue.md(problems_markdown(problems, len(problems))),
            },
        )

    return destination_complete


DESTINATION_CHECKS = [build_destination_check(table) for table in TABLES]
