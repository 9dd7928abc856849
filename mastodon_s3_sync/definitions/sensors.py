"""Sensors: cut id-range partitions as tables grow; re-sync partitions whose rows changed."""

from __future__ import annotations

import json
import math
from datetime import timedelta

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from mastodon_s3_sync.core.id_ranges import MIN_ID, IdRange, last_range_end, next_ranges, parse_partition_key
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.definitions.jobs import SYNC_JOBS, sync_job_name
from mastodon_s3_sync.definitions.partitions import ID_RANGE_PARTITIONS, partitions_name, stale_partitions
from mastodon_s3_sync.definitions.resources import MastodonDbResource, SyncTuningResource


@sensor(
    name="add_id_range_partitions",
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description="Cuts new full id-range partitions as the media tables grow (keyset steps on the id index).",
)
def add_id_range_partitions(
    context: SensorEvaluationContext, mastodon_db: MastodonDbResource, sync_tuning: SyncTuningResource
) -> SensorResult | SkipReason:
    requests, added = [], []
    with mastodon_db.client().connection() as connection:
        for table in TABLES:
            covered = last_range_end(context.instance.get_dynamic_partitions(partitions_name(table)))
            ranges = next_ranges(connection, table, covered, sync_tuning.partition_rows, include_tail=False)
            if ranges:
                requests.append(ID_RANGE_PARTITIONS[table].build_add_request([r.key for r in ranges]))
                added.append(f"{table}: {len(ranges)}")
    if not requests:
        return SkipReason("no table has grown by a full partition")
    context.log.info(f"new partitions: {', '.join(added)}")
    return SensorResult(dynamic_partitions_requests=requests)


CURSOR_VERSION = 3


def _next_id(raw) -> int:
    """Where a table's pass is, from this cursor or an older one (a version-1 cursor kept no position)."""
    return raw.get("next", MIN_ID) if isinstance(raw, dict) else MIN_ID


def plan_slices(ranges_by_table: dict[str, list[IdRange]], rows_per_tick: int, partition_rows: int) -> int:
    """The number of ticks a pass takes: every table's pass takes as many ticks (each reads
    ``ceil(partitions / ticks)`` of its partitions per tick) and a tick reads about
    ``rows_per_tick`` rows in all."""
    partitions = sum(len(ranges) for ranges in ranges_by_table.values())
    per_tick = max(1, rows_per_tick // max(1, partition_rows))
    return max(1, math.ceil(partitions / per_tick))


def build_resync_changed_rows(interval_seconds: int, rows_per_tick: int) -> SensorDefinition:
    """Re-sync partitions whose rows changed, reading one id slice of each table per tick.

    The ``*_updated_at`` columns have no index, so a change can only be found by reading
    the row. Each tick reads, per table, the next slice of its partitions (``id BETWEEN
    lo AND hi``, a range scan of the primary key), sized so that a tick reads about
    ``rows_per_tick`` rows in all and every table's pass over its partitions takes the same
    number of ticks; the cursor keeps, per table, where the pass is. A slice's read looks back
    to the earliest late window among its partitions (``SYNC_CHANGE_OVERLAP_MINUTES`` before
    their syncs' reads), and whether a partition is stale is decided by its own last read, as
    for ``sync`` (``core.changes``): a change is found by the next pass's read of its slice,
    within one pass (``ceil(rows / rows_per_tick)`` ticks) of becoming visible.
    """

    @sensor(
        name="resync_changed_rows",
        jobs=list(SYNC_JOBS.values()),
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description="Re-syncs partitions whose rows' <att>_updated_at moved past the partition's last sync, "
        "or that became visible after it within SYNC_CHANGE_OVERLAP_MINUTES of their stamp; "
        f"reads a slice of about {rows_per_tick:,} rows per tick (primary key range scans), a full pass "
        "over several ticks.",
    )
    def resync_changed_rows(
        context: SensorEvaluationContext, mastodon_db: MastodonDbResource, sync_tuning: SyncTuningResource
    ):
        loaded = json.loads(context.cursor) if context.cursor else {}
        states = loaded.get("tables", {}) if "version" in loaded else loaded
        instance = context.instance
        ranges_by_table = {
            name: sorted(parse_partition_key(key) for key in instance.get_dynamic_partitions(partitions_name(name)))
            for name in TABLES
        }
        ticks_per_pass = plan_slices(ranges_by_table, rows_per_tick, sync_tuning.partition_rows)
        overlap = timedelta(minutes=sync_tuning.change_overlap_minutes)
        requests, scanned, positions = [], [], {}
        with mastodon_db.client().connection() as connection:
            for name, table in TABLES.items():
                ranges = ranges_by_table[name]
                pending = [r for r in ranges if r.lo >= _next_id(states.get(name))]
                take = pending[: math.ceil(len(ranges) / ticks_per_pass)]
                if take:
                    within = IdRange(take[0].lo, take[-1].hi)
                    stale = stale_partitions(instance, connection, table, overlap, within)
                    scanned.append(f"{name} {len(take)}/{len(ranges)}")
                    requests += [
                        RunRequest(
                            job_name=sync_job_name(name),
                            partition_key=key,
                            run_key=f"{name}:{key}:{state}",
                            tags={"mastodon_s3_sync/reason": "changed rows"},
                        )
                        for key, state in sorted(stale.items())
                    ]
                # the pass is complete when this slice was the rest: the next one starts over
                positions[name] = {"next": MIN_ID if len(take) == len(pending) else take[-1].hi + 1}
        if scanned:
            context.log.info(f"read partitions: {', '.join(scanned)} ({ticks_per_pass} ticks per pass)")
        return SensorResult(run_requests=requests, cursor=json.dumps({"version": CURSOR_VERSION, "tables": positions}))

    return resync_changed_rows
