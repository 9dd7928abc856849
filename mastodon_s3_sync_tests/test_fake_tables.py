"""A media table is added in one place: its description (core/mastodon/tables.py) and its fake
table beside it (demo/.../fake_instance/tables/). These fail until everything derived from
those two holds the new table."""

from __future__ import annotations

import re

import pytest
from mastodon_s3_sync_demo.fake_instance.instance import build_fake_instance
from mastodon_s3_sync_demo.fake_instance.seeding import SCHEMA_SQL
from mastodon_s3_sync_demo.fake_instance.tables import FAKE_TABLES, TABLE_NAMES
from mastodon_s3_sync_demo.schema import generate

from mastodon_s3_sync.core.mastodon.tables import TABLES, Attachment, MediaTable
from mastodon_s3_sync.core.planning import plan_sql

INSTANCE = build_fake_instance()


def test_every_described_table_has_a_fake_table_with_cases() -> None:
    assert set(FAKE_TABLES) == set(TABLES)
    assert set(TABLE_NAMES) == set(TABLES)
    for table in TABLES:
        assert INSTANCE.row_counts[table] > 0, f"{table}: no hand-written case"
        assert INSTANCE.expected_for(table), f"{table}: no case references an object"


def test_fake_tables_agree_with_the_descriptions() -> None:
    """The fake tables are written apart from tables.py (the oracle borrows nothing); they must agree."""
    for table, description in TABLES.items():
        fake = FAKE_TABLES[table]
        assert fake.attachments == {a.name: a.directory for a in description.attachments}, table
        assert {a.has_storage_schema_version for a in description.attachments} == {fake.storage_schema_version}


def test_every_table_is_in_the_schema_generators_list_and_the_generated_schema() -> None:
    schema = SCHEMA_SQL.read_text()
    emitted = re.findall(r"^CREATE TABLE (\w+) \(", schema, re.M)
    assert list(generate.TABLES) == [name for fake in FAKE_TABLES.values() for name in fake.schema_tables]
    assert emitted == list(generate.TABLES), "run `make schema`"
    assert set(TABLES) <= set(emitted)


def test_every_table_has_a_bulk_share_and_one_takes_the_rest() -> None:
    assert [name for name, fake in FAKE_TABLES.items() if fake.bulk_budget is None] == ["media_attachments"]
    assert all(callable(fake.bulk_rows) for fake in FAKE_TABLES.values())


@pytest.mark.parametrize("table", TABLES)
def test_styles_read_only_the_content_type_and_the_style_columns(table: str) -> None:
    """The dry run groups by these columns alone (planning.plan_sql): a styles function reading any
    other column needs it in ``style_columns``."""
    description = TABLES[table]
    for attachment in description.attachments:
        for content_type in ("image/jpeg", "image/gif", "video/mp4", "audio/mpeg", None):
            row = {attachment.column("content_type"): content_type}
            row |= {column: None for column in description.style_columns}
            assert "original" in attachment.styles(row)


def test_the_dry_run_groups_by_a_tables_style_columns() -> None:
    table = MediaTable(
        name="example_uploads",
        attachments=(Attachment("file", "files", lambda row: {"original": None}),),
        is_remote=lambda row: False,
        style_columns=("kind", "variant"),
    )
    sql, group_names = plan_sql(table)
    assert group_names == ["g0", "g1", "g2", "g3", "g4"]
    assert sql.startswith(
        "SELECT file_file_name IS NULL, file_file_name = '', file_content_type, kind, variant, count(*),"
    )
    assert sql.endswith("FROM example_uploads GROUP BY 1, 2, 3, 4, 5")
    assert "var" not in plan_sql(TABLES["backups"])[0]
    assert plan_sql(TABLES["site_uploads"])[0].startswith(
        "SELECT file_file_name IS NULL, file_file_name = '', file_content_type, var, count(*),"
    )


def test_select_sql_reads_the_style_columns() -> None:
    assert TABLES["site_uploads"].select_sql("true") == (
        "SELECT t.id, t.file_file_name, t.file_content_type, t.file_file_size, t.file_updated_at, t.var"
        " FROM site_uploads t WHERE true ORDER BY t.id"
    )
