"""Which read a partition's last sync recorded, found in the instance's records however many
materializations other partitions have (runless materializations in a test instance)."""

from __future__ import annotations

from dagster import AssetKey, AssetMaterialization, MetadataValue

from mastodon_s3_sync.definitions.partitions import SNAPSHOT_AT, snapshot_times

TABLE = "media_attachments"


def materialize(instance, partition: str, snapshot_at: str) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization(
            AssetKey(TABLE), partition=partition, metadata={SNAPSHOT_AT: MetadataValue.text(snapshot_at)}
        )
    )


def test_a_partition_synced_often_does_not_hide_another(dagster_instance):
    """45 newer syncs of one partition once filled the page of records the other's was looked up in:
    that partition looked never synced, so its changed rows were never looked for."""
    materialize(dagster_instance, "b", "2026-01-01T00:00:00")
    for minute in range(45):
        materialize(dagster_instance, "a", f"2026-01-02T00:{minute:02d}:00")
    assert {key: value.isoformat() for key, value in snapshot_times(dagster_instance, TABLE, ["a", "b"]).items()} == {
        "a": "2026-01-02T00:44:00",
        "b": "2026-01-01T00:00:00",
    }


def test_a_latest_materialization_without_a_read_looks_further_back(dagster_instance):
    materialize(dagster_instance, "a", "2026-01-01T00:00:00")
    for _ in range(120):  # reported by hand, without a read: more than one page of records
        materialize(dagster_instance, "a", "")
    assert {key: value.isoformat() for key, value in snapshot_times(dagster_instance, TABLE, ["a", "c"]).items()} == {
        "a": "2026-01-01T00:00:00"
    }
