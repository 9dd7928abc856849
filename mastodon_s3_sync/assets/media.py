"""One graph-backed, id-range-partitioned asset per media table.

plan (reads the range, fans out batches) -> copy (per batch, retried) -> report (fan-in,
materialization metadata). Each copy step carries thousands of objects with
many requests in flight inside it, so step start-up cost stays negligible.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from dagster import (
    AssetsDefinition,
    Backoff,
    DynamicOut,
    DynamicOutput,
    Failure,
    Jitter,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    graph_asset,
    op,
)

from mastodon_s3_sync.config import ConfigError
from mastodon_s3_sync.mastodon.tables import TABLES, MediaObject, MediaTable
from mastodon_s3_sync.partitions import ID_RANGE_PARTITIONS, parse_partition_key
from mastodon_s3_sync.pipeline import BatchReport, PartitionReport, PlanStats, copy_objects, plan_batches
from mastodon_s3_sync.progress import PROGRESS, BatchDeltas
from mastodon_s3_sync.reporting import partition_metadata, problems_markdown
from mastodon_s3_sync.resources import DestinationBucket, MastodonDatabase, SourceBucket, SyncTuning
from mastodon_s3_sync.transfer.engine import BatchProgress

MiB = 1024 * 1024
LOG_INTERVAL = 15.0
"""Seconds between a batch's progress lines in the run log: no event per object."""
COPY_RETRY_POLICY = RetryPolicy(max_retries=3, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


@contextmanager
def configuration_failures() -> Iterator[None]:
    """Show a configuration problem as a one-line failure, not retried (a retry cannot fix it)."""
    try:
        yield
    except ConfigError as error:
        raise Failure(description=str(error), allow_retries=False) from None


def build_media_asset(table: MediaTable) -> AssetsDefinition:
    @op(name=f"{table.name}_plan", out={"batch": DynamicOut(list), "stats": Out(PlanStats)})
    def plan(
        context: OpExecutionContext,
        mastodon_db: MastodonDatabase,
        destination_s3: DestinationBucket,
        sync_tuning: SyncTuning,
    ):
        id_range = parse_partition_key(context.partition_key)
        stats = PlanStats()
        count = 0
        with configuration_failures():
            batches = plan_batches(
                mastodon_db,
                table,
                id_range,
                destination_s3.acl_permission(),
                max_objects=sync_tuning.batch_objects,
                max_bytes=sync_tuning.batch_megabytes * MiB,
                stats=stats,
            )
            for count, batch in enumerate(batches, start=1):
                yield DynamicOutput(batch, output_name="batch", mapping_key=f"batch_{count:05d}")
        if count == 0:  # an empty range still materializes: fan-in needs one upstream batch
            yield DynamicOutput([], output_name="batch", mapping_key="batch_00000")
        PROGRESS.planned(stats.objects)
        context.log.info(
            f"{table.name} {id_range.key}: {stats.rows} rows, {stats.objects} objects in {max(count, 1)} batches, "
            f"{stats.expected_bytes / MiB:.1f} MiB of originals, {len(stats.invalid_rows)} invalid rows"
        )
        yield Output(stats, output_name="stats")

    @op(name=f"{table.name}_copy", retry_policy=COPY_RETRY_POLICY)
    def copy(
        context: OpExecutionContext,
        source_s3: SourceBucket,
        destination_s3: DestinationBucket,
        sync_tuning: SyncTuning,
        batch: list,
    ) -> BatchReport:
        objects: list[MediaObject] = batch

        terminal = BatchDeltas()
        last_logged = time.monotonic()

        def log_progress(progress: BatchProgress) -> None:
            nonlocal last_logged
            terminal(progress.done, progress.bytes_copied)
            if time.monotonic() - last_logged < LOG_INTERVAL and progress.done < progress.total:
                return
            last_logged = time.monotonic()
            context.log.info(
                f"{progress.done}/{progress.total} objects: {progress.copied} copied, {progress.skipped} skipped, "
                f"{progress.missing} missing, {progress.failed} failed, {progress.bytes_copied / MiB:.1f} MiB, "
                f"{progress.objects_per_second:.0f} objects/s"
            )

        with configuration_failures():
            report = copy_objects(
                objects,
                source_s3,
                destination_s3,
                replace(
                    sync_tuning.transfer_settings(destination_s3.storage_class),
                    progress_interval=0.5 if PROGRESS.active else LOG_INTERVAL,
                ),
                on_progress=log_progress,
            )
        if report.failed:
            raise Failure(
                description=f"{len(report.failed)} of {report.objects} objects failed to copy; "
                "the retry skips the ones already copied",
                metadata={"failed_objects": MetadataValue.md(problems_markdown(report.failed, len(report.failed)))},
            )
        return report

    @op(name=f"{table.name}_report")
    def report(context: OpExecutionContext, stats: PlanStats, batch_reports: list) -> Output:
        partition = PartitionReport.combine(stats, batch_reports)
        id_range = parse_partition_key(context.partition_key)
        if partition.missing:
            context.log.warning(f"{partition.missing} referenced objects are missing at the source")
        return Output(
            {"copied": partition.copied, "skipped": partition.skipped, "missing": partition.missing},
            metadata=partition_metadata(partition, id_range),
        )

    @graph_asset(
        name=table.name,
        partitions_def=ID_RANGE_PARTITIONS[table.name],
        group_name="mastodon_media",
        description=f"Every object that rows of `{table.name}` reference, copied to the destination bucket.",
        kinds={"s3", "postgres"},
    )
    def media_asset():
        batches, stats = plan()
        return report(stats, batches.map(copy).collect())

    return media_asset


MEDIA_ASSETS = [build_media_asset(table) for table in TABLES.values()]
