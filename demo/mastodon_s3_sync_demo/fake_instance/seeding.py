"""Writing a fake instance: Mastodon's schema and rows into PostgreSQL, objects into a bucket or a directory."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mastodon_s3_sync.core.mastodon.layout import with_key_prefix
from mastodon_s3_sync_demo.fake_instance.instance import build_fake_instance
from mastodon_s3_sync_demo.fake_instance.model import FakeInstance

SCHEMA_SQL = Path(__file__).parent.parent / "schema" / "mastodon_schema.sql"
"""Mastodon's DDL for the tables the sync reads (and ``statuses``); ``make schema`` regenerates it."""
CACHE_CONTROL = "public, max-age=315576000, immutable"


def create_schema(database_url: str) -> None:
    """Create Mastodon's tables (``SCHEMA_SQL``) on a fresh database."""
    import psycopg2

    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute(SCHEMA_SQL.read_text())
    conn.close()


def adapt(value: Any) -> Any:
    """A column value as psycopg2 takes it (a dict as json)."""
    from psycopg2.extras import Json

    return Json(value) if isinstance(value, dict) else value


def move_sequence_past_rows(cursor, table: str) -> None:
    """Move a serial ``id`` sequence past the inserted rows. A snowflake table's sequence
    belongs to no column (``timestamp_id()`` draws from it): ``pg_get_serial_sequence`` is
    NULL there, and so is ``setval`` of it, which changes nothing."""
    from psycopg2 import sql

    cursor.execute(
        sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
            sql.Literal(table), sql.Identifier(table)
        )
    )


def insert_rows(database_url: str, instance: FakeInstance) -> None:
    """Insert the instance's rows (media tables and statuses) and move the serial sequences past them."""
    import psycopg2
    from psycopg2 import sql

    tables = [*instance.rows.items(), ("statuses", instance.statuses)]
    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        for table, table_rows in tables:
            for row in table_rows:
                columns = list(row)
                cursor.execute(
                    sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                        sql.Identifier(table),
                        sql.SQL(", ").join(map(sql.Identifier, columns)),
                        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                    ),
                    [adapt(row[column]) for column in columns],
                )
            if table_rows:
                move_sequence_past_rows(cursor, table)
    conn.close()


def ensure_bucket(s3_client, bucket: str) -> None:
    """Create ``bucket`` unless it exists."""
    from botocore.exceptions import ClientError

    try:
        s3_client.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = s3_client.meta.region_name
    extra = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3_client.create_bucket(Bucket=bucket, **extra)


def put_all(s3_client, bucket: str, key_prefix: str, objects: Iterable[tuple[str, Any, str]], workers: int) -> None:
    """PUT (key, body or body factory, content_type) objects under ``key_prefix``, concurrently."""

    def put(item: tuple[str, Any, str]) -> None:
        key, body, content_type = item
        s3_client.put_object(
            Bucket=bucket,
            Key=with_key_prefix(key_prefix, key),
            Body=body() if callable(body) else body,
            ContentType=content_type,
            CacheControl=CACHE_CONTROL,
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(put, objects):
            pass


def upload_objects(s3_client, bucket: str, key_prefix: str, instance: FakeInstance, *, workers: int = 8) -> None:
    """Put every expected object and orphan (never the missing ones) into ``bucket``."""
    ensure_bucket(s3_client, bucket)
    put_all(s3_client, bucket, key_prefix, instance.source_objects(), workers)


def seed(
    database_url: str,
    s3_client,
    bucket: str,
    key_prefix: str = "",
    *,
    instance: FakeInstance | None = None,
) -> FakeInstance:
    """Create the schema on a fresh database, insert the rows, fill the source bucket."""
    instance = instance or build_fake_instance()
    create_schema(database_url)
    insert_rows(database_url, instance)
    upload_objects(s3_client, bucket, key_prefix, instance)
    return instance


def write_files(root: Path, instance: FakeInstance) -> None:
    """Write every expected object and orphan (never the missing ones) as Paperclip's filesystem
    storage does: ``<root>/<key>`` (no key prefix on disk), files 0644 and directories 0755."""
    for key, body, _ in instance.source_objects():
        path = root.joinpath(*key.split("/"))
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_bytes(body)
        path.chmod(0o644)


def seed_disk(database_url: str, root: Path, *, instance: FakeInstance | None = None) -> FakeInstance:
    """Create the schema on a fresh database, insert the rows, write the files under ``root``: a disk instance."""
    instance = instance or build_fake_instance()
    create_schema(database_url)
    insert_rows(database_url, instance)
    write_files(root, instance)
    return instance
