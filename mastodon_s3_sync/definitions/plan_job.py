"""``plan_migration``: the dry-run figures of every table, as asset observations in the UI."""

from dagster import AssetKey, AssetObservation, OpExecutionContext, job, op

from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.id_ranges import parse_partition_key
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.planning import PlanRates, plan_table
from mastodon_s3_sync.core.tuning import Tuning
from mastodon_s3_sync.definitions.metadata import plan_metadata
from mastodon_s3_sync.definitions.partitions import partitions_name
from mastodon_s3_sync.definitions.resources import MastodonDbResource, SyncTuningResource


def observe_plans(instance, database: MastodonDatabase, tuning: Tuning, tables) -> list:
    """Plan each table and describe it as an ``AssetObservation`` (nothing is copied)."""
    observations = []
    for name in tables:
        existing = [parse_partition_key(key) for key in instance.get_dynamic_partitions(partitions_name(name))]
        plan = plan_table(database, TABLES[name], existing, tuning.partition_rows)
        observations.append(
            (plan, AssetObservation(AssetKey(name), metadata=plan_metadata(plan, PlanRates.tuned(tuning))))
        )
    return observations


@op(description="Counts rows, objects and bytes per table; copies nothing.")
def plan_every_table(context: OpExecutionContext, mastodon_db: MastodonDbResource, sync_tuning: SyncTuningResource):
    for plan, observation in observe_plans(context.instance, mastodon_db.client(), sync_tuning.client(), TABLES):
        context.log.info(f"{plan.table}: {plan.rows} rows, {plan.objects} objects, {plan.estimated_bytes / 1e9:.2f} GB")
        yield observation


@job(description="The migration plan: what a full copy involves, shown on each asset.")
def plan_migration():
    plan_every_table()
