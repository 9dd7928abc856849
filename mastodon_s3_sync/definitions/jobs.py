"""One job per media asset, ``sync_<asset>``, partitioned like its asset."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from mastodon_s3_sync.core.mastodon.tables import TABLES

SYNC_RUN_TAG = "mastodon_s3_sync/copies"
"""Every sync_<asset> run carries it and dagster.yaml's run coordinator limits runs by it; runs
from the asset page (__ASSET_JOB) are limited by the ``dagster/partition`` rule there."""


def sync_job_name(table: str) -> str:
    return f"sync_{table}"


# Steps run in the run's own process: a copy step is thousands of objects with
# many requests in flight, so a process per step would add seconds and no speed.
SYNC_JOBS = {
    table: define_asset_job(
        sync_job_name(table),
        selection=AssetSelection.assets(table).without_checks(),
        executor_def=in_process_executor,
        tags={SYNC_RUN_TAG: "true"},
    )
    for table in TABLES
}


VERIFY_JOB = define_asset_job(
    "verify_destination",
    selection=AssetSelection.all_asset_checks(),
    executor_def=in_process_executor,
    description="Runs every asset's destination check (what `mastodon-s3-sync verify` checks).",
)
