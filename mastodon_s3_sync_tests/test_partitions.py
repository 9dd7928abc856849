"""Id-range partitions: every id in exactly one range, ranges never change, balanced by rows."""

from __future__ import annotations

from contextlib import closing

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mastodon_s3_sync.core.id_ranges import MIN_ID, IdRange, last_range_end, next_ranges, parse_partition_key

TABLE = "ids_under_test"
ids = st.one_of(
    st.just(-99),
    st.integers(min_value=1, max_value=5_000),  # serial ids
    st.integers(min_value=100_000_000_000_000_000, max_value=116_000_000_000_000_000),  # snowflakes
    st.integers(min_value=1_000_000_000, max_value=99_999_999_999_999),  # the odd widths in between
)


@pytest.fixture(scope="module")
def connection(postgres_admin_url):
    from mastodon_s3_sync_demo.servers import fresh_database

    with fresh_database(postgres_admin_url) as url, closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY)")
        yield conn


def insert(connection, new_ids) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {TABLE} VALUES (%s) ON CONFLICT DO NOTHING", [(i,) for i in new_ids])


def ids_in_table(connection) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {TABLE} ORDER BY id")
        return [row[0] for row in cursor]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    waves=st.lists(st.lists(ids, max_size=60), min_size=1, max_size=4),
    rows_per_partition=st.integers(min_value=1, max_value=25),
    tails=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_every_id_in_exactly_one_range_and_ranges_never_change(connection, waves, rows_per_partition, tails):
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE}")
    keys: list[str] = []
    for wave, include_tail in zip(waves, tails):
        insert(connection, wave)  # later waves may insert ids below ranges already cut
        before = list(keys)
        new_ranges = next_ranges(connection, TABLE, last_range_end(keys), rows_per_partition, include_tail=include_tail)
        keys += [id_range.key for id_range in new_ranges]
        assert keys[: len(before)] == before, "existing keys never change"
        ranges = [parse_partition_key(key) for key in keys]
        assert [r.key for r in ranges] == keys, "keys round-trip"
        if ranges:
            assert ranges[0].lo == MIN_ID
            for previous, following in zip(ranges, ranges[1:]):
                assert following.lo == previous.hi + 1, "ranges tile the id space without gaps or overlaps"
        all_ids = ids_in_table(connection)
        covered_up_to = ranges[-1].hi if ranges else None
        for record_id in all_ids:
            covered = covered_up_to is not None and record_id <= covered_up_to
            assert sum(record_id in r for r in ranges) == (1 if covered else 0), "exactly one range, or the tail"
        uncovered = [i for i in all_ids if covered_up_to is None or i > covered_up_to]
        if include_tail:
            assert not uncovered, "with the tail, every row is in a partition"
        else:
            assert len(uncovered) < rows_per_partition, "only a short tail stays uncut"
        for id_range in new_ranges[:-1] if include_tail else new_ranges:
            assert sum(i in id_range for i in all_ids) == rows_per_partition, "full ranges are balanced"
        positive = [key for key in keys if not key.startswith("-")]
        assert positive == sorted(positive), "keys sort in id order"


def test_key_format_names_the_range():
    assert IdRange(5, 20).key == "0000000000000000005-0000000000000000020"
    assert parse_partition_key(IdRange(MIN_ID, 42).key) == IdRange(MIN_ID, 42)
    with pytest.raises(ValueError):
        parse_partition_key("20-5")


def test_cutting_walks_the_index_not_the_table(connection):
    """The statements that cut ranges use the primary key index (no sequential scan)."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE}")
        cursor.execute(f"INSERT INTO {TABLE} SELECT generate_series(1, 50000)")
        cursor.execute(f"ANALYZE {TABLE}")
        cursor.execute(f"EXPLAIN SELECT id FROM {TABLE} WHERE id >= 40000 ORDER BY id OFFSET 99 LIMIT 1")
        plan = " ".join(row[0] for row in cursor)
    assert "Index Only Scan" in plan or "Index Scan" in plan, plan
    assert "Seq Scan" not in plan, plan
