"""Database-side scale figures: plan, partition cutting, the changed-rows sensor, at 1M-50M rows.

Builds a Mastodon database with SQL only (``generate_series``; no objects) on
Mastodon's real schema (``demo/mastodon_s3_sync_demo/schema/mastodon_schema.sql``),
grows it from size to size, and at each size measures what runs against
Mastodon's database:

- ``plan``: ``plan_table`` for media_attachments and accounts (the dry run);
- ``cut``: ``next_ranges`` over the whole table at ``--partition-rows`` rows per
  partition (what the first ``sync``/catch-up tick does; later ticks walk only
  the new rows);
- ``catch-up``: ``next_ranges`` with the tail after 1 % growth (a catch-up tick);
- ``sensor``: one tick of ``resync_changed_rows`` against a Dagster instance in
  which every partition is synced (a materialization with ``db_snapshot_at``),
  with a few rows changed since: its wall time, the time its statements spent
  in PostgreSQL, the rows it read, and the projection per hour and per full pass;
- ``full scan``: the statement the sensor ran before (every table, every tick),
  for comparison, and what ``sync``'s own catch-up still runs once per call.

Rows (sizes are media_attachments rows; accounts are a tenth):

- media_attachments: snowflake ids ``(epoch_ms << 16) | seq`` over ~2.4 years,
  70 % remote (``remote_url``), 40 % of the remote ones evicted (NULL file),
  a content type mix (jpeg/png/webp/gif/mp4/mp3), thumbnails for audio/video
  and a few others, ``account_id``/``status_id`` filled;
- accounts: snowflake ids, 95 % remote (20,000 domains), half of the remote
  ones evicted (NULL avatar and header), 1 % suspended.

Mastodon's secondary indexes are dropped before loading (none of the measured
statements can use them: they filter on ``id`` or on unindexed columns) and the
tables are UNLOGGED to load fast; the primary keys stay. VACUUM ANALYZE after
each growth, as autovacuum would on a live instance.

    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000,10000000,50000000
    .venv/bin/python benchmarks/bench_scale.py --sizes 1000000 --drop     # quick check

The database (``--database``, default ``mss_scale_bench_<user>``) is kept between
invocations (grown, never shrunk) unless ``--drop``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
import time
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg2
import psycopg2.extensions

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "demo")]

SCHEMA_SQL = ROOT / "demo" / "mastodon_s3_sync_demo" / "schema" / "mastodon_schema.sql"
MEDIA_START = "2023-01-01 00:00:00"
MEDIA_STEP_MS = 1500  # 50M rows over ~2.4 years
ACCOUNT_START = "2016-04-01 00:00:00"
ACCOUNT_STEP_MS = 15000

# ---------------------------------------------------------------- building


def admin_url(args) -> str:
    return f"postgresql://{args.user}@{args.host}:{args.port}/postgres"


def database_url(args) -> str:
    return f"postgresql://{args.user}@{args.host}:{args.port}/{args.database}"


def ensure_database(args) -> bool:
    """Create the database with Mastodon's schema if missing; True when created."""
    with closing(psycopg2.connect(admin_url(args))) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.database,))
            if cursor.fetchone():
                return False
            cursor.execute(f'CREATE DATABASE "{args.database}"')
    with closing(psycopg2.connect(database_url(args))) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(SCHEMA_SQL.read_text())
            # secondary indexes off (see the module docstring); UNLOGGED for loading speed
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename IN ('media_attachments', 'accounts', 'statuses') AND indexname NOT LIKE '%%_pkey'"
            )
            for (index,) in cursor.fetchall():
                cursor.execute(f'DROP INDEX "{index}"')
            for table in ("media_attachments", "accounts", "statuses"):
                cursor.execute(f"ALTER TABLE {table} SET UNLOGGED")
    return True


def drop_database(args) -> None:
    with closing(psycopg2.connect(admin_url(args))) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{args.database}"')


def snowflake(sequence: str, start: str, step_ms: int) -> str:
    """SQL: the snowflake id of the ``sequence``-th row, ``step_ms`` apart from ``start``."""
    return (
        f"((((extract(epoch FROM timestamp '{start}') * 1000)::bigint + ({sequence})::bigint * {step_ms}) << 16)"
        f" | (({sequence}) & 65535))"
    )


def created(sequence: str, start: str, step_ms: int) -> str:
    return f"(timestamp '{start}' + ({sequence}) * interval '{step_ms} milliseconds')"


def grow_accounts(cursor, have: int, want: int) -> None:
    j = "g"
    at = created(j, ACCOUNT_START, ACCOUNT_STEP_MS)
    remote = f"({j} % 20 <> 0)"  # 95 % remote
    evicted = f"({remote} AND {j} % 2 = 1)"  # half of the remote ones
    cursor.execute(
        f"""
        INSERT INTO accounts (id, username, domain, created_at, updated_at, uri, url,
            avatar_file_name, avatar_content_type, avatar_file_size, avatar_updated_at, avatar_storage_schema_version,
            header_file_name, header_content_type, header_file_size, header_updated_at, header_storage_schema_version,
            avatar_remote_url, header_remote_url, suspended_at)
        SELECT {snowflake(j, ACCOUNT_START, ACCOUNT_STEP_MS)}, 'u' || {j},
            CASE WHEN {remote} THEN 'd' || ({j} % 20000) || '.example' END,
            {at}, {at} + ({j} % 97) * interval '1 day', '', NULL,
            CASE WHEN NOT {evicted} AND {j} % 10 <> 3 THEN substr(md5({j}::text), 1, 16) || '.png' END,
            CASE WHEN NOT {evicted} AND {j} % 10 <> 3 THEN (ARRAY['image/png', 'image/jpeg', 'image/gif', 'image/webp'])[1 + {j} % 4] END,
            CASE WHEN NOT {evicted} AND {j} % 10 <> 3 THEN 20000 + ({j} * 7) % 400000 END,
            CASE WHEN {j} % 10 <> 3 THEN {at} END, 1,
            CASE WHEN NOT {evicted} AND {j} % 3 = 0 THEN substr(md5(({j} + 1)::text), 1, 16) || '.jpeg' END,
            CASE WHEN NOT {evicted} AND {j} % 3 = 0 THEN 'image/jpeg' END,
            CASE WHEN NOT {evicted} AND {j} % 3 = 0 THEN 50000 + ({j} * 13) % 900000 END,
            CASE WHEN {j} % 3 = 0 THEN {at} END, 1,
            CASE WHEN {remote} THEN 'https://d' || ({j} % 20000) || '.example/a/' || {j} || '.png' END, '',
            CASE WHEN {j} % 100 = 7 THEN {at} + interval '30 days' END
        FROM generate_series({have + 1}::bigint, {want}::bigint) AS g
        """
    )


def grow_media(cursor, have: int, want: int, accounts: int) -> None:
    i = "g"
    at = created(i, MEDIA_START, MEDIA_STEP_MS)
    remote = f"({i} % 10 < 7)"  # 70 % remote
    evicted = f"({remote} AND ({i} / 10) % 5 < 2)"  # 40 % of the remote ones
    kind = f"((({i} * 2654435761) % 1000003) % 20)"  # content type mix, independent of the above
    content_type = (
        f"(ARRAY['image/jpeg','image/jpeg','image/jpeg','image/jpeg','image/jpeg','image/jpeg','image/jpeg',"
        f"'image/jpeg','image/jpeg','image/jpeg','image/jpeg','image/png','image/png','image/png','image/webp',"
        f"'image/gif','video/mp4','video/mp4','audio/mpeg','image/jpeg'])[1 + {kind}]"
    )
    with_thumbnail = f"(NOT {evicted} AND ({kind} IN (16, 17, 18) OR {i} % 50 = 0))"
    account = snowflake(f"1 + ({i} * 7919) % {accounts}", ACCOUNT_START, ACCOUNT_STEP_MS)
    cursor.execute(
        f"""
        INSERT INTO media_attachments (id, status_id, account_id, created_at, updated_at, type, remote_url,
            file_file_name, file_content_type, file_file_size, file_updated_at, file_storage_schema_version,
            thumbnail_file_name, thumbnail_content_type, thumbnail_file_size, thumbnail_updated_at,
            thumbnail_storage_schema_version, blurhash)
        SELECT {snowflake(i, MEDIA_START, MEDIA_STEP_MS)},
            CASE WHEN {i} % 25 <> 0 THEN {snowflake(i, MEDIA_START, MEDIA_STEP_MS)} + 1 END, {account},
            {at}, {at} + ({i} % 13) * interval '1 minute', CASE WHEN {kind} IN (16, 17) THEN 2 ELSE 0 END,
            CASE WHEN {remote} THEN 'https://r' || ({i} % 5000) || '.example/m/' || {i} || '.jpg' ELSE '' END,
            CASE WHEN NOT {evicted} THEN substr(md5({i}::text), 1, 16) || '.jpg' END,
            CASE WHEN NOT {evicted} THEN {content_type} END,
            CASE WHEN NOT {evicted} THEN 10000 + ({i} * 7919) % 2000000 END,
            CASE WHEN NOT {evicted} THEN {at} END, 1,
            CASE WHEN {with_thumbnail} THEN substr(md5(({i} + 7)::text), 1, 16) || '.png' END,
            CASE WHEN {with_thumbnail} THEN 'image/png' END,
            CASE WHEN {with_thumbnail} THEN 5000 + ({i} * 31) % 100000 END,
            CASE WHEN {with_thumbnail} THEN {at} END,
            CASE WHEN {with_thumbnail} THEN 1 END,
            'UEHLh[WB2yk8pyoJadR*.7kCMdnj'
        FROM generate_series({have + 1}::bigint, {want}::bigint) AS g
        """
    )


def row_count(cursor, table: str) -> int:
    cursor.execute(f"SELECT count(*) FROM {table}")
    return cursor.fetchone()[0]


def grow(args, media_rows: int) -> float:
    """Grow the database to ``media_rows`` media rows (accounts a tenth); seconds spent."""
    started = time.perf_counter()
    with closing(psycopg2.connect(database_url(args))) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
            cursor.execute("SET maintenance_work_mem = '1GB'")
            accounts_have, media_have = row_count(cursor, "accounts"), row_count(cursor, "media_attachments")
            accounts_want = media_rows // 10
            chunk = 5_000_000
            for lo in range(accounts_have, accounts_want, chunk):
                grow_accounts(cursor, lo, min(lo + chunk, accounts_want))
            for lo in range(media_have, media_rows, chunk):
                grow_media(cursor, lo, min(lo + chunk, media_rows), accounts_want)
                print(f"  media_attachments: {min(lo + chunk, media_rows):,} rows", flush=True)
            if accounts_want > accounts_have or media_rows > media_have:
                cursor.execute("VACUUM ANALYZE accounts")
                cursor.execute("VACUUM ANALYZE media_attachments")
    return time.perf_counter() - started


# ---------------------------------------------------------------- measuring


class Timed:
    """Seconds spent in ``execute`` (PostgreSQL plus the result's transfer) by every cursor
    opened while patched in: what a tick costs Mastodon's database."""

    seconds = 0.0
    statements = 0

    @classmethod
    @contextmanager
    def patched(cls):
        original_execute = psycopg2.extensions.cursor.execute

        class Cursor(psycopg2.extensions.cursor):
            def execute(self, sql, parameters=None):
                started = time.perf_counter()
                try:
                    return original_execute(self, sql, parameters)
                finally:
                    cls.seconds += time.perf_counter() - started
                    cls.statements += 1

        connect = psycopg2.connect
        psycopg2.connect = lambda *a, **k: connect(*a, **{"cursor_factory": Cursor, **k})
        cls.seconds, cls.statements = 0.0, 0
        try:
            yield cls
        finally:
            psycopg2.connect = connect


def timed(function, *arguments, **keywords):
    started = time.perf_counter()
    result = function(*arguments, **keywords)
    return time.perf_counter() - started, result


def legacy_plan_seconds(url: str, table) -> float:
    """The plan's statements before this change: two counts and a GROUP BY per attachment."""
    started = time.perf_counter()
    with closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), count(*) FILTER (WHERE NULL::bigint IS NULL) FROM {table.name}")
        with_media = " OR ".join(f"{a.column('file_name')} IS NOT NULL" for a in table.attachments)
        cursor.execute(f"SELECT count(*) FROM {table.name} WHERE {with_media}")
        for a in table.attachments:
            name = a.column("file_name")
            cursor.execute(
                f"SELECT {a.column('content_type')}, count(*), coalesce(sum({a.column('file_size')}), 0) "
                f"FROM {table.name} WHERE {name} IS NOT NULL AND {name} <> '' GROUP BY 1"
            )
            cursor.fetchall()
    return time.perf_counter() - started


def explain(url: str, sql: str, parameters: tuple = ()) -> str:
    with closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, parameters)
        return "\n".join(row[0] for row in cursor.fetchall())


def measure(args, media_rows: int) -> tuple[dict, dict]:
    from dagster import AssetKey, AssetMaterialization, DagsterInstance, build_sensor_context

    from mastodon_s3_sync.core.changes import changed_rows_sql
    from mastodon_s3_sync.core.database import MastodonDatabase
    from mastodon_s3_sync.core.id_ranges import next_ranges
    from mastodon_s3_sync.core.mastodon.tables import TABLES
    from mastodon_s3_sync.core.planning import plan_sql, plan_table
    from mastodon_s3_sync.definitions.partitions import partitions_name, unsynced_partitions
    from mastodon_s3_sync.definitions.resources import MastodonDbResource, SyncTuningResource
    from mastodon_s3_sync.definitions.sensors import build_resync_changed_rows

    url = database_url(args)
    database = MastodonDatabase(database_url=url)
    figures: dict = {"media rows": media_rows}
    explains: dict = {}
    tables = ["media_attachments", "accounts"]

    for name in tables:
        seconds, plan = timed(plan_table, database, TABLES[name], [], args.partition_rows)
        figures[f"plan {name} s"] = seconds
        figures[f"{name} rows"] = plan.rows
        figures[f"{name} objects"] = plan.objects
        if args.legacy:
            figures[f"plan before {name} s"] = legacy_plan_seconds(url, TABLES[name])

    ranges = {}
    with closing(psycopg2.connect(url)) as connection:
        for name in tables:
            seconds, ranges[name] = timed(next_ranges, connection, name, None, args.partition_rows, include_tail=True)
            figures[f"cut {name} s"] = seconds
            figures[f"{name} partitions"] = len(ranges[name])
            # a catch-up tick after 1 % growth: the walk over the new rows only
            kept = ranges[name][: max(1, int(len(ranges[name]) * 0.99))]
            seconds, _ = timed(next_ranges, connection, name, kept[-1].hi, args.partition_rows, include_tail=True)
            figures[f"catch-up cut {name} s"] = seconds

    # Dagster: every partition synced at the database's current time, then a few rows changed
    with tempfile.TemporaryDirectory() as home:
        instance = DagsterInstance.local_temp(home)
        with closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT now() AT TIME ZONE 'UTC'")
            (snapshot,) = cursor.fetchone()
        started = time.perf_counter()
        for name in tables:
            keys = [r.key for r in ranges[name]]
            instance.add_dynamic_partitions(partitions_name(name), keys)
            for key in keys:
                instance.report_runless_asset_event(
                    AssetMaterialization(
                        AssetKey(name), partition=key, metadata={"db_snapshot_at": snapshot.isoformat()}
                    )
                )
        figures["record syncs s"] = time.perf_counter() - started
        changed = {}
        with closing(psycopg2.connect(url)) as connection, connection, connection.cursor() as cursor:
            for name in tables:
                stamp = "avatar_updated_at" if name == "accounts" else "file_updated_at"
                # the last row of every 25th partition or so changes after the sync
                picks = [r.hi for r in ranges[name][:: max(1, len(ranges[name]) // 25)]]  # real ids
                cursor.execute(
                    f"UPDATE {name} SET {stamp} = now() AT TIME ZONE 'UTC' + interval '1 second' WHERE id = ANY(%s) RETURNING id",
                    (picks,),
                )
                changed[name] = {next(r.key for r in ranges[name] if row_id in r) for (row_id,) in cursor.fetchall()}
        figures["instance: unsynced_partitions s"] = timed(unsynced_partitions, instance, "media_attachments")[0]
        figures["instance: get_materialized_partitions s"] = timed(
            instance.get_materialized_partitions, AssetKey("media_attachments")
        )[0]

        sensor = build_resync_changed_rows(args.interval, rows_per_tick=args.rows_per_tick)
        resources = {
            "mastodon_db": MastodonDbResource(database_url=url),
            "sync_tuning": SyncTuningResource(partition_rows=args.partition_rows),
        }
        cursor_value, found, tick_db, tick_wall = None, set(), [], []
        passes = 0
        while True:
            context = build_sensor_context(instance=instance, resources=resources, cursor=cursor_value)
            with Timed.patched() as timing:
                wall, result = timed(sensor, context)
            tick_db.append(timing.seconds)
            tick_wall.append(wall)
            found |= {(r.job_name.removeprefix("sync_"), r.partition_key) for r in result.run_requests}
            cursor_value = result.cursor
            media_state = json.loads(cursor_value)["tables"]["media_attachments"]
            if media_state["next"] == -(2**63):
                passes += 1
                break
        expected = {(name, key) for name in tables for key in changed[name]}
        assert found == expected, f"the sensor found {len(found)} stale partitions, {len(expected)} changed"
        ticks_per_hour = 3600 / args.interval
        figures["sensor ticks per pass"] = len(tick_db)
        figures["sensor tick DB s (max)"] = max(tick_db)
        figures["sensor tick DB s (mean)"] = sum(tick_db) / len(tick_db)
        figures["sensor tick wall s (max)"] = max(tick_wall)
        figures["sensor DB s per hour"] = max(tick_db) * ticks_per_hour
        figures["sensor pass hours"] = len(tick_db) * args.interval / 3600
        figures["stale found/changed"] = f"{len(found)}/{len(expected)}"

        # before: every table scanned whole every tick (and sync's catch-up, once per call)
        since = snapshot - timedelta(seconds=1)
        full = 0.0
        with closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
            for name in TABLES:
                started = time.perf_counter()
                cursor.execute(changed_rows_sql(TABLES[name]), (since,))
                cursor.fetchall()
                full += time.perf_counter() - started
        figures["full scan (before: per tick) s"] = full
        figures["full scan DB s per hour"] = full * ticks_per_hour

        if args.explain:
            media = ranges["media_attachments"]
            per_tick = max(1, args.rows_per_tick // args.partition_rows)
            ticks = max(1, -(-sum(len(r) for r in ranges.values()) // per_tick))
            take = media[: -(-len(media) // ticks)]
            middle = media[len(media) // 2]
            explains["plan (media_attachments, one pass)"] = explain(
                url, plan_sql(TABLES["media_attachments"])[0], (None, None)
            )
            explains["cut step (next_ranges)"] = explain(
                url,
                "SELECT id FROM media_attachments WHERE id >= %s ORDER BY id OFFSET %s LIMIT 1",
                (middle.lo, args.partition_rows - 1),
            )
            explains[f"sensor slice ({len(take)} partitions of media_attachments)"] = explain(
                url, changed_rows_sql(TABLES["media_attachments"], in_id_range=True), (since, take[0].lo, take[-1].hi)
            )
            explains["partition row scan (select_sql, one partition)"] = explain(
                url, TABLES["media_attachments"].select_sql("t.id BETWEEN %s AND %s"), (middle.lo, middle.hi)
            )
            explains["before: whole-table changed-rows scan"] = explain(
                url, changed_rows_sql(TABLES["media_attachments"]), (since,)
            )
        instance.dispose()
    return figures, explains


def table_size(args) -> str:
    with closing(psycopg2.connect(database_url(args))) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('media_attachments')), "
            "pg_size_pretty(pg_total_relation_size('accounts'))"
        )
        media, accounts = cursor.fetchone()
        return f"media_attachments {media}, accounts {accounts}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000,50000000", help="media_attachments rows, comma-separated")
    parser.add_argument("--database", default=f"mss_scale_bench_{getpass.getuser()}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--partition-rows", type=int, default=20_000)
    parser.add_argument("--rows-per-tick", type=int, default=None, help="the sensor's budget (default: its own)")
    parser.add_argument("--interval", type=int, default=3600, help="the sensor's interval, seconds")
    parser.add_argument("--no-legacy", dest="legacy", action="store_false", help="skip the old plan statements")
    parser.add_argument("--no-explain", dest="explain", action="store_false")
    parser.add_argument("--json", type=Path, help="append each size's figures to this JSON-lines file")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args()
    if args.rows_per_tick is None:
        from mastodon_s3_sync.definitions.sensors import DEFAULT_ROWS_PER_TICK

        args.rows_per_tick = DEFAULT_ROWS_PER_TICK
    try:
        if ensure_database(args):
            print(f"created {args.database}")
        results = []
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"growing to {size:,} media rows ...", flush=True)
            built = grow(args, size)
            print(f"  {built:.0f} s; {table_size(args)}", flush=True)
            figures, explains = measure(args, size)
            figures["build s"] = built
            figures["size"] = table_size(args)
            results.append(figures)
            for key, value in figures.items():
                print(f"  {key:40} {value:.2f}" if isinstance(value, float) else f"  {key:40} {value}", flush=True)
            for title, text in explains.items():
                print(f"\n--- EXPLAIN (ANALYZE, BUFFERS): {title}\n{text}", flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps({"figures": figures, "explains": explains}, default=str) + "\n")
        print()
        keys = [k for k in results[0] if k != "size"]
        print(" | ".join(["figure"] + [f"{r['media rows']:,}" for r in results]))
        for key in keys:
            cells = [
                f"{r[key]:.2f}"
                if isinstance(r[key], float)
                else f"{r[key]:,}"
                if isinstance(r[key], int)
                else str(r[key])
                for r in results
            ]
            print(" | ".join([key] + cells))
    finally:
        if args.drop:
            drop_database(args)


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_HOME", tempfile.mkdtemp(prefix="bench-scale-"))
    main()
