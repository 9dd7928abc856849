"""One Dagster run over several contiguous partitions (what backfills and `sync` launch):
every partition still gets its own materialization with its own figures."""

from __future__ import annotations

from dagster import AssetKey

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.id_ranges import parse_partition_key
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync.definitions.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    add_new_partitions,
    partitions_name,
)
from mastodon_s3_sync.execution.runs import QUIET_CONSOLE, contiguous_groups
from mastodon_s3_sync_tests.conftest import make_migration


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
