"""The statements that must stay cheap at 50M rows use Mastodon's primary key indexes.

On Mastodon's real schema (``mastodon_schema.sql``: no index on any ``*_updated_at``)
with a few thousand snowflake-id rows, EXPLAIN shows that partition cutting, the
per-partition row scan and the changed-rows sensor's slice read a range of the
primary key, never the whole table. ``enable_seqscan = off`` asks "can it use the
index": on a table this small a sequential scan is cheaper and would be chosen,
at 50M rows the range is a small fraction and the index wins on cost (the
EXPLAIN ANALYZE at 50M rows is in benchmarks/README.md). The range
condition must be an ``Index Cond`` (a range scan), not a full index walk with a
filter.
"""

from __future__ import annotations

import json
from contextlib import closing
from datetime import datetime

import psycopg2
import pytest
from mastodon_s3_sync_demo.fake_instance.seeding import create_schema

from mastodon_s3_sync.core.changes import changed_rows_sql
from mastodon_s3_sync.core.id_ranges import next_ranges
from mastodon_s3_sync.core.mastodon.tables import TABLES

pytestmark = pytest.mark.integration

MEDIA_ROWS = 6000
ACCOUNT_ROWS = 2000


def snowflake(sequence: str, start: str, step_ms: int) -> str:
    return (
        f"((((extract(epoch FROM timestamp '{start}') * 1000)::bigint + ({sequence})::bigint * {step_ms}) << 16)"
        f" | (({sequence}) & 65535))"
    )


@pytest.fixture
def mastodon(database_url):
    create_schema(database_url)
    with closing(psycopg2.connect(database_url)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO accounts (id, username, domain, created_at, updated_at,
                        avatar_file_name, avatar_content_type, avatar_file_size, avatar_updated_at)
                    SELECT {snowflake("g", "2020-01-01", 60000)}, 'u' || g,
                        CASE WHEN g % 10 <> 0 THEN 'd' || (g % 50) || '.example' END, now(), now(),
                        CASE WHEN g % 2 = 0 THEN md5(g::text) || '.png' END, 'image/png', 100, now()
                    FROM generate_series(1, {ACCOUNT_ROWS}) g"""
            )
            cursor.execute(
                f"""INSERT INTO media_attachments (id, status_id, account_id, created_at, updated_at, remote_url,
                        file_file_name, file_content_type, file_file_size, file_updated_at)
                    SELECT {snowflake("g", "2023-01-01", 1500)}, g, {snowflake("1 + g % 2000", "2020-01-01", 60000)},
                        now(), now(), CASE WHEN g % 3 = 0 THEN 'https://r.example/' || g ELSE '' END,
                        CASE WHEN g % 5 <> 0 THEN md5(g::text) || '.jpg' END, 'image/jpeg', 1000, now()
                    FROM generate_series(1, {MEDIA_ROWS}) g"""
            )
            cursor.execute("VACUUM ANALYZE")
        yield connection


def plan_nodes(cursor, sql: str, parameters: tuple) -> list[dict]:
    cursor.execute("SET enable_seqscan = off")
    cursor.execute("EXPLAIN (FORMAT JSON) " + sql, parameters)
    [[document]] = cursor.fetchall()
    document = json.loads(document) if isinstance(document, str) else document
    nodes, stack = [], [document[0]["Plan"]]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("Plans", []))
    return nodes


def assert_primary_key_range(nodes: list[dict], table: str, *, bounds: tuple[str, ...]) -> None:
    """``table`` is read only through ``<table>_pkey`` with the id bounds as index conditions."""
    described = json.dumps(nodes, indent=1, default=str)
    scans = [node for node in nodes if node.get("Relation Name") == table]
    assert scans, described
    assert not any(node["Node Type"] == "Seq Scan" for node in scans), f"sequential scan of {table}: {described}"
    on_key = [node for node in nodes if node.get("Index Name") == f"{table}_pkey"]
    assert on_key, f"{table}_pkey not used: {described}"
    for node in on_key:
        condition = node.get("Index Cond", "")
        for bound in bounds:
            assert bound in condition, f"{bound!r} not an index condition of {node['Node Type']}: {described}"


def id_at(cursor, table: str, position: int) -> int:
    cursor.execute(f"SELECT id FROM {table} ORDER BY id OFFSET %s LIMIT 1", (position,))
    return cursor.fetchone()[0]


@pytest.mark.parametrize("table", ["media_attachments", "accounts"])
def test_partition_cutting_walks_the_primary_key(mastodon, table):
    with mastodon.cursor() as cursor:
        lo = id_at(cursor, table, 500)
        nodes = plan_nodes(cursor, f"SELECT id FROM {table} WHERE id >= %s ORDER BY id OFFSET %s LIMIT 1", (lo, 199))
        assert_primary_key_range(nodes, table, bounds=("id >=",))
        assert any(node["Node Type"] == "Index Only Scan" for node in nodes), "the heap is not read"
        nodes = plan_nodes(cursor, f"SELECT max(id) FROM {table} WHERE id >= %s", (lo,))
        assert_primary_key_range(nodes, table, bounds=("id >=",))
        cursor.execute("RESET enable_seqscan")
    ranges = next_ranges(mastodon, table, None, 500, include_tail=True)
    assert len(ranges) == -(-{"media_attachments": MEDIA_ROWS, "accounts": ACCOUNT_ROWS}[table] // 500)


@pytest.mark.parametrize("table", ["media_attachments", "accounts"])
def test_partition_row_scan_reads_a_primary_key_range(mastodon, table):
    with mastodon.cursor() as cursor:
        lo, hi = id_at(cursor, table, 1000), id_at(cursor, table, 1499)
        nodes = plan_nodes(cursor, TABLES[table].select_sql("t.id BETWEEN %s AND %s"), (lo, hi))
        assert_primary_key_range(nodes, table, bounds=("id >=", "id <="))
        if table == "media_attachments":  # the joins look up one account and one status per row
            assert not any(node["Node Type"] == "Seq Scan" for node in nodes), nodes


@pytest.mark.parametrize("table", ["media_attachments", "accounts"])
def test_changed_rows_slice_reads_a_primary_key_range(mastodon, table):
    """The sensor's per-tick read: a slice of ids, whatever the unindexed *_updated_at."""
    with mastodon.cursor() as cursor:
        lo, hi = id_at(cursor, table, 100), id_at(cursor, table, 1099)
        sql = changed_rows_sql(TABLES[table], in_id_range=True)
        nodes = plan_nodes(cursor, sql, (datetime(2024, 1, 1), lo, hi))
        assert_primary_key_range(nodes, table, bounds=("id >=", "id <="))
        cursor.execute("RESET enable_seqscan")
        cursor.execute(sql, (datetime(2000, 1, 1), lo, hi))
        assert len(cursor.fetchall()) <= 1000


def test_whole_table_changed_rows_scan_has_no_index(mastodon):
    """What ``sync``'s catch-up runs once per call: nothing Mastodon indexes can serve it,
    which is why the sensor reads slices instead."""
    with mastodon.cursor() as cursor:
        nodes = plan_nodes(cursor, changed_rows_sql(TABLES["media_attachments"]), (datetime(2024, 1, 1),))
        assert not any("updated_at" in node.get("Index Cond", "") for node in nodes)
