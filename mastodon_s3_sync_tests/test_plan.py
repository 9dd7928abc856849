"""``plan`` counts rows, objects and bytes exactly as the fake instance has them; copies nothing."""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.planning import DERIVATIVE_SIZE_RATIO, PlanRates, plan_table
from mastodon_s3_sync_tests.support.cli import run_wide
from mastodon_s3_sync_tests.support.migration import make_migration


def originals(instance, table):
    """(count, bytes) of the originals the rows reference, from the hand-written rows."""
    count = size = 0
    for row in instance.rows[table]:
        for attachment in TABLES[table].attachments:
            if row[attachment.column("file_name")]:
                count += 1
                size += row[attachment.column("file_size")] or 0
    return count, size


def test_plan_figures_match_the_fake_instance(database_url, rclone_source, rclone_destination, environment):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    environment(migration.environment())
    database = configured()["mastodon_db"]
    for table in TABLES:
        plan = plan_table(database, TABLES[table], [], 4)
        referenced = len(migration.instance.expected_for(table)) + len(migration.instance.missing_for(table))
        count, size = originals(migration.instance, table)
        assert plan.rows == migration.instance.row_counts[table], table
        assert plan.objects == referenced, table
        assert plan.original_bytes == size, table
        derivatives = referenced - count
        assert plan.estimated_derivative_bytes <= size * derivatives * DERIVATIVE_SIZE_RATIO + 1, table
        assert plan.partitions == -(-plan.rows // 4), table
    media = plan_table(database, TABLES["media_attachments"], [], 4)
    rates = PlanRates(objects_per_second=10, megabytes_per_second=1000)
    assert media.estimated_seconds(rates) == media.objects / 10


def test_plan_command_reports_and_records_observations(
    database_url, rclone_source, rclone_destination, tmp_path, environment
):
    migration = make_migration(database_url, rclone_source, rclone_destination)
    variables = {"DATABASE_URL": migration.database_url, "DAGSTER_HOME": str(tmp_path / "home")}
    environment(variables)  # no bucket variables: plan needs only the database
    result = run_wide("plan", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "media_attachments" in result.stdout and "total" in result.stdout
    assert migration.destination_keys() == set(), "plan copies nothing"
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        for table in TABLES:
            [record] = instance.fetch_observations(AssetKey(table), limit=1).records
            metadata = record.asset_observation.metadata
            assert metadata["rows"].value == migration.instance.row_counts[table]
