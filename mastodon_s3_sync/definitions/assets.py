"""One graph-backed, id-range-partitioned asset per media table.

plan (reads the run's id ranges, fans out batches) -> copy (per batch, retried) -> report
(fan-in: one materialization per partition, with that partition's figures). Each copy step
carries thousands of objects with many requests in flight inside it, so step start-up cost
stays negligible. A run covers one partition or, in a backfill or `sync`, up to
``SYNC_PARTITIONS_PER_RUN`` contiguous ones (``BackfillPolicy.multi_run``): a run costs a
quarter second of Dagster bookkeeping in `sync` and a new process in a backfill, which small
partitions would otherwise pay each. The
report op yields each partition's own ``AssetMaterialization`` (and no output value), so every
partition keeps its own status and metadata in the UI whichever run it was part of.
"""

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    BackfillPolicy,
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

from mastodon_s3_sync.core.copying import BatchReport, PartitionReport, copy_objects
from mastodon_s3_sync.core.dagster_lock import DAGSTER_LOCK
from mastodon_s3_sync.core.errors import SyncError, TransientError
from mastodon_s3_sync.core.id_ranges import parse_partition_key
from mastodon_s3_sync.core.mastodon.tables import TABLES, MediaObject, MediaTable
from mastodon_s3_sync.core.progress import PROGRESS, BatchDeltas, in_flight_text
from mastodon_s3_sync.core.referenced_objects import PartitionedStats, batched, current_acls, referenced_objects
from mastodon_s3_sync.core.transfer.batch import BatchProgress, TransferSettings
from mastodon_s3_sync.core.tuning import MiB
from mastodon_s3_sync.definitions.metadata import partition_metadata, problems_markdown
from mastodon_s3_sync.definitions.partitions import ID_RANGE_PARTITIONS
from mastodon_s3_sync.definitions.resources import (
    DestinationS3Resource,
    MastodonDbResource,
    SourceS3Resource,
    SyncTuningResource,
)

LOG_INTERVAL = 15.0
"""Seconds between a batch's progress lines in the run log: no event per object."""
COPY_RETRY_POLICY = RetryPolicy(max_retries=3, delay=5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
"""A batch that failed (after the engine's own request retries) is tried again after about 5, 15
and 35 s; the retry skips what the failed attempt copied."""
PLAN_RETRY_POLICY = RetryPolicy(max_retries=3, delay=5, backoff=Backoff.EXPONENTIAL)
"""For a database connection lost mid-scan (a restart, a failover, a terminated backend, a dropped
SSH tunnel): tried again after 5, 15 and 35 s. Permanent errors (``ConfigError``: unreachable,
refused, no permission) fail at once: a retry cannot fix them (``core.errors``)."""


def one_line_failure(error: SyncError) -> Failure:
    """The step's failure, said in the error's one line; the op's RetryPolicy tries again only
    when a retry may help (a ``TransientError``), whatever the error's other classes."""
    return Failure(description=str(error), allow_retries=isinstance(error, TransientError))


@contextmanager
def one_line_failures() -> Iterator[None]:
    """Our errors (and a stop) as one-line failures, retried only when a retry may help."""
    try:
        yield
    except SyncError as error:
        raise one_line_failure(error) from None
    except KeyboardInterrupt:  # `sync` stopping its table threads (runs.py): Dagster would retry it
        raise Failure(
            description="interrupted: `sync` was stopped; it copies the rest when run again", allow_retries=False
        ) from None


def discard_stored_outputs(context: OpExecutionContext, table: MediaTable) -> None:
    """Delete what this run's steps stored, and its retried parents': Dagster's fs io_manager keeps
    every output at DAGSTER_HOME/storage/<run id>/<step key>/<output>, here each batch's object list
    (about 120 bytes per object: some 18 GB over a 150-million-object migration). Once every
    partition of the run is materialized, no re-execution from failure needs them. The run's
    compute logs, beside them, stay."""
    storage = Path(context.instance.storage_directory())
    group = context.instance.get_run_group(context.run_id)
    for run in group[1] if group else []:
        for stored in (storage / run.run_id).glob(f"{table.name}.*"):  # the graph's step keys
            shutil.rmtree(stored, ignore_errors=True)


def run_ranges(context: OpExecutionContext, late_window: timedelta = timedelta(0)) -> PartitionedStats:
    """Empty read figures for each partition the run covers."""
    return PartitionedStats([parse_partition_key(key) for key in context.partition_keys], late_window)


def build_media_asset(table: MediaTable, partitions_per_run: int) -> AssetsDefinition:
    @op(
        name=f"{table.name}_plan",
        out={"batch": DynamicOut(list), "stats": Out(PartitionedStats)},
        retry_policy=PLAN_RETRY_POLICY,
    )
    def plan(
        context: OpExecutionContext,
        mastodon_db: MastodonDbResource,
        destination_s3: DestinationS3Resource,
        sync_tuning: SyncTuningResource,
    ):
        stats = run_ranges(context, timedelta(minutes=sync_tuning.change_overlap_minutes))
        count = 0
        with one_line_failures():
            objects = referenced_objects(
                mastodon_db.client(), table, destination_s3.client().acl_permission(), stats.span, stats
            )
            batches = batched(objects, sync_tuning.batch_objects, sync_tuning.batch_megabytes * MiB)
            for count, batch in enumerate(batches, start=1):
                yield DynamicOutput(batch, output_name="batch", mapping_key=f"batch_{count:05d}")
        if count == 0:  # an empty range still materializes: fan-in needs one upstream batch
            yield DynamicOutput([], output_name="batch", mapping_key="batch_00000")
        totals = list(stats.by_range.values())
        objects_planned = sum(s.objects for s in totals)
        PROGRESS.planned(objects_planned)
        context.log.info(
            f"{table.name} {stats.span.key} ({len(totals)} partitions): {stats.rows} rows, {objects_planned} objects "
            f"in {max(count, 1)} batches, {sum(s.expected_bytes for s in totals) / MiB:.1f} MiB of originals, "
            f"{sum(s.invalid_rows for s in totals)} invalid rows"
        )
        yield Output(stats, output_name="stats")

    @op(name=f"{table.name}_copy", retry_policy=COPY_RETRY_POLICY)
    def copy(
        context: OpExecutionContext,
        mastodon_db: MastodonDbResource,
        source_s3: SourceS3Resource,
        destination_s3: DestinationS3Resource,
        sync_tuning: SyncTuningResource,
        batch: list,
    ) -> BatchReport:
        objects: list[MediaObject] = batch
        ranges = run_ranges(context)

        terminal = BatchDeltas()
        last_logged = time.monotonic()

        def log_progress(progress: BatchProgress) -> None:
            nonlocal last_logged
            terminal(progress.done, progress.bytes_copied, progress.in_flight, progress.max_in_flight)
            if time.monotonic() - last_logged < LOG_INTERVAL and progress.done < progress.total:
                return
            last_logged = time.monotonic()
            with DAGSTER_LOCK.held():
                context.log.info(
                    f"{progress.done}/{progress.total} objects: {progress.copied} copied, {progress.skipped} "
                    f"skipped, {progress.missing} missing, {progress.failed} failed, "
                    f"{progress.bytes_copied / MiB:.1f} MiB, {progress.objects_per_second:.0f} objects/s, "
                    f"{in_flight_text(progress.in_flight, progress.max_in_flight)}"
                )

        source, destination = source_s3.client(), destination_s3.client()
        transfer_settings = replace(
            TransferSettings.tuned(sync_tuning.client(), destination_s3.storage_class),
            progress_interval=0.5 if PROGRESS.active else LOG_INTERVAL,
        )
        with one_line_failures(), DAGSTER_LOCK.released():
            report = copy_objects(
                objects,
                source,
                destination,
                transfer_settings,
                on_progress=log_progress,
                partition_of=lambda media_object: ranges.range_of(media_object.row_id).key,
                # The plan's ACLs may predate a suspension or deletion (a retried step's even more).
                acls_now=partial(current_acls, mastodon_db.client(), table, destination.acl_permission()),
            )
        mostly_missing = report.mostly_missing()
        if mostly_missing and not sync_tuning.accept_missing:
            raise Failure(description=mostly_missing, allow_retries=False)
        if report.failed:
            raise Failure(
                description=f"{len(report.failed)} of {report.objects} objects failed to copy; "
                "the retry skips the ones already copied",
                metadata={"failed_objects": MetadataValue.md(problems_markdown(report.failed, len(report.failed)))},
            )
        return report

    @op(name=f"{table.name}_report", out=Out(is_required=False))
    def report(context: OpExecutionContext, stats: PartitionedStats, batch_reports: list):
        for id_range, read in stats.by_range.items():
            parts = [batch.parts[id_range.key] for batch in batch_reports if id_range.key in batch.parts]
            partition = PartitionReport.combine(read, parts)
            if partition.missing:
                context.log.warning(f"{id_range.key}: {partition.missing} referenced objects are missing at the source")
            yield AssetMaterialization(
                asset_key=AssetKey(table.name), partition=id_range.key, metadata=partition_metadata(partition, id_range)
            )
        discard_stored_outputs(context, table)

    @graph_asset(
        name=table.name,
        partitions_def=ID_RANGE_PARTITIONS[table.name],
        group_name="mastodon_media",
        description=f"Every object that rows of `{table.name}` reference, copied to the destination bucket.",
        kinds={"s3", "postgres"},
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=partitions_per_run),
    )
    def media_asset():
        batches, stats = plan()
        return report(stats, batches.map(copy).collect())

    return media_asset


def build_media_assets(partitions_per_run: int) -> list[AssetsDefinition]:
    return [build_media_asset(table, partitions_per_run) for table in TABLES.values()]
