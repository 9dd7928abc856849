"""One Dagster run over several contiguous partitions (what backfills and `sync` launch):
every partition still gets its own materialization with its own figures."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from dagster import AssetKey, DagsterRun, DagsterRunStatus, build_schedule_context, instance_for_test

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.id_ranges import IdRange, parse_partition_key
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync.definitions.partitions import (
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    add_new_partitions,
    partitions_in_progress,
    partitions_name,
    range_tags,
)
from mastodon_s3_sync.definitions.resources import build_resources
from mastodon_s3_sync.definitions.schedules import build_catch_up_schedule
from mastodon_s3_sync.execution.runs import QUIET_CONSOLE, contiguous_groups
from mastodon_s3_sync_tests.support.migration import make_migration


def test_a_ranged_run_materializes_each_partition_with_its_own_figures(
    database_url, rclone_source, rclone_destination, dagster_instance, environment
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    environment(migration.environment())
    database = configured()["mastodon_db"]
    keys = add_new_partitions(dagster_instance, database, "media_attachments", 4, include_tail=True)
    assert len(keys) >= 3
    job = build_definitions().resolve_job_def("sync_media_attachments")
    run = job.execute_in_process(
        run_config=QUIET_CONSOLE, instance=dagster_instance, tags={RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]}
    )
    assert run.success

    assert set(dagster_instance.get_materialized_partitions(AssetKey("media_attachments"))) == set(keys)
    events = run.get_asset_materialization_events()
    assert sorted(event.materialization.partition for event in events) == sorted(keys), "one per partition"
    rows = migration.instance.rows["media_attachments"]
    expected = migration.instance.expected_for("media_attachments")
    missing = migration.instance.missing_for("media_attachments")
    for event in events:
        key = event.materialization.partition
        id_range = parse_partition_key(key)
        metadata = {name: value.value for name, value in event.materialization.metadata.items()}
        assert (metadata["id_lo"], metadata["id_hi"]) == (id_range.lo, id_range.hi)
        assert metadata["rows"] == sum(1 for row in rows if row["id"] in id_range), key
        assert metadata["objects_copied"] == sum(1 for obj in expected if obj.row_id in id_range), key
        assert metadata["objects_missing"] == sum(1 for _, row_id, _ in missing if row_id in id_range), key
        # requests in flight per endpoint: from SYNC_CONCURRENCY (64) up to the ceiling at most
        assert metadata["max_requests_in_flight"] == 512, key
        assert 64 <= metadata["peak_requests_in_flight"] <= 512 or not metadata["objects_copied"], key
    assert dagster_instance.get_dynamic_partitions(partitions_name("media_attachments")) == keys


def test_pending_partitions_are_grouped_into_unbroken_runs() -> None:
    every = [f"k{i}" for i in range(10)]
    assert contiguous_groups(every, ["k7", "k1", "k2", "k3", "k5", "k6", "k9"], 2) == [
        ["k1", "k2"],
        ["k3"],
        ["k5", "k6"],
        ["k7"],
        ["k9"],
    ]
    assert contiguous_groups(every, every, 20) == [every]
    assert contiguous_groups(every, [], 5) == []


def test_partitions_in_progress_are_those_an_unfinished_run_covers() -> None:
    """A run of one partition or of a range covers its partitions while not started, started or canceling,
    whether it is the table's sync job or a backfill from the asset page; a finished run, another
    table's run and a range that only overlaps a partition do not."""
    k = [IdRange(lo, lo + 9).key for lo in range(0, 100, 10)]  # k[0] = 0-9, k[1] = 10-19, ...
    part = IdRange(45, 54).key  # half of k[4] and half of k[5]: covers neither

    def run(run_id, tags, status=DagsterRunStatus.STARTED, job="sync_accounts", assets=None):
        return DagsterRun(job_name=job, run_id=run_id, status=status, tags=tags, asset_selection=assets)

    with instance_for_test() as instance:
        for dagster_run in [
            run("single", {PARTITION_TAG: k[0]}, DagsterRunStatus.NOT_STARTED),
            run("ranged", range_tags([k[2], k[3], k[4]])),
            run(
                "asset-page",
                range_tags([k[6], k[7]]),
                DagsterRunStatus.CANCELING,
                "__ASSET_JOB",
                {AssetKey("accounts")},
            ),
            run("overlap", {RANGE_START_TAG: part, RANGE_END_TAG: part}),
            run("done", {PARTITION_TAG: k[1]}, DagsterRunStatus.SUCCESS),
            run("failed", range_tags([k[8], k[9]]), DagsterRunStatus.FAILURE),
            run("other-table", {PARTITION_TAG: k[1]}, job="sync_media_attachments"),
        ]:
            instance.add_run(dagster_run)
        found = partitions_in_progress(instance, "accounts", k)
    assert found == {
        k[0]: "single",
        k[2]: "ranged",
        k[3]: "ranged",
        k[4]: "ranged",
        k[6]: "asset-page",
        k[7]: "asset-page",
    }


def test_the_catch_up_schedule_leaves_what_a_ranged_run_in_progress_covers(
    database_url, rclone_source, rclone_destination, dagster_instance, environment
):
    """A backfill's ranged run still going (tags ``dagster/asset_partition_range_start``/``_end``, no
    ``dagster/partition``) covers its partitions: the schedule requests only the others."""
    migration = make_migration(database_url, rclone_source, rclone_destination)
    environment({**migration.environment(), "SYNC_PARTITION_ROWS": "4"})
    keys = add_new_partitions(dagster_instance, configured()["mastodon_db"], "media_attachments", 4, include_tail=True)
    assert len(keys) >= 4
    dagster_instance.add_run(
        DagsterRun(
            job_name="__ASSET_JOB",
            run_id="backfill-range",
            status=DagsterRunStatus.STARTED,
            tags=range_tags(keys[:3]),
            asset_selection={AssetKey("media_attachments")},
        )
    )
    schedule = build_catch_up_schedule("media_attachments", "0 * * * *")
    with build_schedule_context(  # as a context manager: else its instance's state outlives the test
        instance=dagster_instance,
        resources=build_resources(os.environ),
        scheduled_execution_time=datetime.now(UTC),
        repository_def=build_definitions().get_repository_def(),
    ) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert [request.partition_key for request in requests] == keys[3:]
