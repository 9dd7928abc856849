"""Volume for tests and benchmarks: ``seed_bulk`` (media_attachments only) and ``seed_bulk_all_tables``.

Unlike the hand-written instance, no oracle for the layout code: ``seed_bulk_all_tables``
takes its keys from ``TABLES`` (``seed_bulk``'s local jpeg media are plain enough to write).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from mastodon_s3_sync_demo.fake_instance.model import T0, FakeTable, content_type_for
from mastodon_s3_sync_demo.fake_instance.seeding import adapt, ensure_bucket, move_sequence_past_rows, put_all
from mastodon_s3_sync_demo.fake_instance.tables import FAKE_TABLES

BULK_START_ID = 114_000_000_000_000_000
"""A ``seed_bulk`` start id above every id of the hand-written instance."""
BULK_CREATED = T0 + timedelta(days=30)
"""``created_at`` and ``updated_at`` of every bulk row."""


def _bulk_body(filler: bytes, key: str, length: int) -> Callable[[], bytes]:
    """Makes, when uploaded, a body of ``length`` bytes unique to ``key``: its SHA-256, then ``filler``."""

    def make() -> bytes:
        head = hashlib.sha256(key.encode()).digest()
        tail = length - len(head)
        repeats = tail // len(filler) + 1
        return (head + (filler * repeats)[:tail])[:length]

    return make


def _bulk_id_partition(record_id: int) -> str:
    """Independent of layout.py: 9 digits below 10^9, else at least 12, in whole groups of 3."""
    digits = f"{record_id:09d}" if record_id < 1_000_000_000 else f"{record_id:012d}"
    return "/".join(digits[i : i + 3] for i in range(0, len(digits) - len(digits) % 3, 3))


def seed_bulk(
    database_url: str,
    s3_client,
    bucket: str,
    key_prefix: str = "",
    *,
    rows: int,
    start_id: int = BULK_START_ID,
    seed: int = 0,
    size_scale: float = 0.01,
    account_id: int = 1,
    workers: int = 16,
) -> list[str]:
    """Add ``rows`` local jpeg media_attachments (original + small) with ids from ``start_id``, and their objects.

    Sizes follow a realistic mix scaled by ``size_scale`` (1.0: originals mostly
    20-200 KB, some up to 4 MB, smalls 5-40 KB; the default 0.01 keeps a run
    tiny). The schema must exist (``seed`` or ``create_schema``). Returns the
    keys (relative to the key prefix) that a sync must copy.
    """
    import psycopg2
    from psycopg2.extras import Json, execute_values

    rng = random.Random(seed)
    filler = random.Random(seed + 1).randbytes(1 << 20)

    def size(kilobytes: float, minimum: int) -> int:
        return max(minimum, int(kilobytes * 1024 * size_scale))

    db_rows = []
    objects = []
    created = BULK_CREATED
    for index in range(rows):
        record_id = start_id + index
        name = hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()[:16] + ".jpeg"
        roll = rng.random()
        if roll < 0.80:
            original_size = size(rng.uniform(20, 200), 64)
        elif roll < 0.95:
            original_size = size(rng.uniform(200, 1000), 64)
        else:
            original_size = size(rng.uniform(1000, 4000), 64)
        small_size = size(rng.uniform(5, 40), 48)
        partition = _bulk_id_partition(record_id)
        for style, length in (("original", original_size), ("small", small_size)):
            key = f"media_attachments/files/{partition}/{style}/{name}"
            objects.append((key, _bulk_body(filler, key, length), "image/jpeg"))
        db_rows.append(
            (
                record_id,
                account_id,
                name,
                "image/jpeg",
                original_size,
                created,
                "",
                created,
                created,
                0,
                Json({"original": {"width": 1280, "height": 960}, "small": {"width": 640, "height": 480}}),
                1,
            )
        )

    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        execute_values(
            cursor,
            "INSERT INTO media_attachments (id, account_id, file_file_name, file_content_type, file_file_size,"
            " file_updated_at, remote_url, created_at, updated_at, type, file_meta, file_storage_schema_version)"
            " VALUES %s",
            db_rows,
            page_size=1000,
        )
    conn.close()

    ensure_bucket(s3_client, bucket)
    put_all(s3_client, bucket, key_prefix, objects, workers)
    return [key for key, _, _ in objects]


class BulkRows:
    """One table's share of ``seed_bulk_all_tables``: what its generator draws on (its own random
    stream, so adding a table changes no other's rows; sizes, names, ids) and where its rows go."""

    # Derivative sizes by style: (low, high) in kB.
    DERIVATIVE_KB = {"small": (5, 40), "static": (2, 40), "@1x": (10, 60), "@2x": (20, 120), "ico": (1, 8)}

    def __init__(
        self,
        table: FakeTable,
        budget: int,
        *,
        seed: int,
        size_scale: float,
        ids: Iterator[int],
        inserted: dict[str, list[dict[str, Any]]],
        sizes: dict[str, int],
    ):
        self.table = table
        self.budget = budget
        """Objects to reference in all."""
        self.seed = seed
        self.rng = random.Random(f"{seed}:{table.name}")
        self.size_scale = size_scale
        self.created = BULK_CREATED
        self._ids = ids
        self._inserted = inserted
        self._sizes = sizes

    def rows_of(self, table: str) -> list[dict[str, Any]]:
        """The rows to insert into ``table`` (those of tables generated earlier, statuses, this one's)."""
        return self._inserted.setdefault(table, [])

    def next_id(self) -> int:
        return next(self._ids)

    def kilobytes(self, low: float, high: float, minimum: int = 48) -> int:
        return max(minimum, int(self.rng.uniform(low, high) * 1024 * self.size_scale))

    def photo_size(self) -> int:
        """Originals mostly 20-200 kB, some up to 1 MB, a few up to 4 MB (as ``seed_bulk``)."""
        roll = self.rng.random()
        if roll < 0.80:
            return self.kilobytes(20, 200)
        return self.kilobytes(200, 1000) if roll < 0.95 else self.kilobytes(1000, 4000)

    def name(self, extension: str) -> str:
        return hashlib.sha256(f"{self.seed}:{self.rng.random()}".encode()).hexdigest()[:16] + "." + extension

    def blank(self) -> dict[str, Any]:
        """A row of this table without files."""
        row: dict[str, Any] = {"created_at": self.created, "updated_at": self.created}
        for attachment in self.table.attachments:
            row |= {f"{attachment}_{suffix}": None for suffix in ("file_name", "content_type", "file_size")}
            row[f"{attachment}_updated_at"] = None
            if self.table.storage_schema_version:
                row[f"{attachment}_storage_schema_version"] = None
        return row

    def attach(self, row: dict[str, Any], attachment: str, file_name: str, content_type: str, size: int, version=1):
        row |= {
            f"{attachment}_file_name": file_name,
            f"{attachment}_content_type": content_type,
            f"{attachment}_file_size": size,
            f"{attachment}_updated_at": self.created,
        }
        if self.table.storage_schema_version:
            row[f"{attachment}_storage_schema_version"] = version

    def _derivative_size(self, style: str, file_name: str) -> int:
        if style == "small" and not file_name.endswith((".jpeg", ".png", ".webp")):
            return self.kilobytes(20, 80)  # a video's or gif's first frame as png
        if style.isdigit():
            return self.kilobytes(int(style) / 40, int(style) / 4 + 2, minimum=64)  # app icon / favicon sizes
        return self.kilobytes(*self.DERIVATIVE_KB.get(style, (5, 40)))

    def _objects(self, row: dict[str, Any]) -> list:
        from mastodon_s3_sync.core.mastodon.tables import TABLES

        return TABLES[self.table.name].objects_for_row(row, "public-read")

    def add(self, row: dict[str, Any]) -> int:
        """Keep ``row`` and size its objects; the number of objects."""
        found = self._objects(row)
        for media_object in found:
            file_name = row[f"{media_object.attachment}_file_name"]
            self._sizes[media_object.key] = (
                row[f"{media_object.attachment}_file_size"]
                if media_object.style == "original"
                else self._derivative_size(media_object.style, file_name)
            )
        self.rows_of(self.table.name).append(row)
        return len(found)

    def fill(self, make_row: Callable[[int, int], dict[str, Any]]) -> None:
        """Add ``make_row(index, objects still to reference)`` until the budget is spent exactly
        (a row that would overspend it is drawn again)."""
        remaining, index = self.budget, 0
        while remaining > 0:
            row = make_row(index, remaining)
            if len(self._objects(row)) <= remaining:
                remaining -= self.add(row)
                index += 1


def seed_bulk_all_tables(
    database_url: str,
    client,
    bucket: str,
    objects: int,
    prefix: str = "",
    *,
    start_id: int = BULK_START_ID,
    serial_start_id: int = 100_000,
    seed: int = 0,
    size_scale: float = 1.0,
    workers: int = 16,
) -> list[str]:
    """Add rows to every media table that reference ``objects`` objects in all, and those objects.

    Each table's generator (``tables/<table>.py``) says its share and its mix; the shares
    follow a typical instance: media_attachments about 60 % of the objects (jpeg/png/webp
    with ``small``, gif and video with a ``.png`` small, some video/audio thumbnails, audio
    original only; half of them remote under ``cache/``, some remote ones evicted), accounts
    about 15 % (mostly remote with domains, ``cache/`` where storage_schema_version = 1; gif
    avatars and headers add ``static``), preview_cards about 15 % (always remote), custom
    emojis about 6 % (original + static), preview_card_providers (icon + static),
    site_uploads (one row per ``var``, every style; the legacy favicon ``ico`` included) and
    backups about 1 %. Sizes, at ``size_scale`` 1.0: small derivatives (1-80 kB), originals
    mostly 10-200 kB, a few of 1-4 MB (large photos, videos, audio, backups). Snowflake
    tables get ids from ``start_id`` (media rows get ``statuses`` rows too), serial ones
    from ``serial_start_id`` + 1 (their sequences are moved past them). The schema must exist.

    The keys are computed from the inserted rows read back with each table's
    ``select_sql``, by ``TABLES[table].objects_for_row`` (every style, optional
    ones too), so they are exactly what a sync reads; every one of them is
    uploaded, nothing else. Returns the keys (relative to the key prefix).
    """
    import psycopg2
    from psycopg2.extras import RealDictCursor

    from mastodon_s3_sync.core.mastodon.tables import TABLES

    budgets = {name: fake.bulk_budget(objects) for name, fake in FAKE_TABLES.items() if fake.bulk_budget}
    [rest] = [name for name in FAKE_TABLES if name not in budgets]
    budgets[rest] = objects - sum(budgets.values())
    inserted: dict[str, list[dict[str, Any]]] = {}
    sizes: dict[str, int] = {}
    """key -> size, from the rows as generated; the read-back rows must name exactly these keys."""
    snowflake = itertools.count(start_id)
    for name, fake in FAKE_TABLES.items():
        ids = snowflake if fake.snowflake_ids else itertools.count(serial_start_id + 1)
        generator = BulkRows(
            fake, budgets[name], seed=seed, size_scale=size_scale, ids=ids, inserted=inserted, sizes=sizes
        )
        fake.bulk_rows(generator)

    _insert_bulk_rows(database_url, inserted)
    # The keys, from the rows as the sync reads them.
    keys: list[str] = []
    with psycopg2.connect(database_url) as conn, conn.cursor(cursor_factory=RealDictCursor) as cursor:
        for table in FAKE_TABLES:
            ids = [row["id"] for row in inserted.get(table, [])]
            if not ids:
                continue
            cursor.execute(TABLES[table].select_sql("t.id BETWEEN %s AND %s"), (min(ids), max(ids)))
            for row in cursor:
                keys += [media_object.key for media_object in TABLES[table].objects_for_row(row, "public-read")]
    conn.close()
    if sorted(keys) != sorted(sizes) or len(set(keys)) != len(keys):
        raise AssertionError("the rows read back reference other objects than the rows generated")

    ensure_bucket(client, bucket)
    filler = random.Random(seed + 1).randbytes(1 << 20)
    objects_to_put = [(key, _bulk_body(filler, key, sizes[key]), content_type_for(key)) for key in keys]
    put_all(client, bucket, prefix, objects_to_put, workers)
    return keys


def _insert_bulk_rows(database_url: str, inserted: dict[str, list[dict[str, Any]]]) -> None:
    """One INSERT per table and row shape, and the serial sequences moved past the rows."""
    import psycopg2
    from psycopg2 import sql
    from psycopg2.extras import execute_values

    with psycopg2.connect(database_url) as conn, conn.cursor() as cursor:
        for table, table_rows in inserted.items():
            for columns in {tuple(row) for row in table_rows}:  # rows of one shape per INSERT
                execute_values(
                    cursor,
                    sql.SQL("INSERT INTO {} ({}) VALUES %s")
                    .format(sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
                    .as_string(cursor),
                    [[adapt(row[c]) for c in columns] for row in table_rows if tuple(row) == columns],
                    page_size=1000,
                )
            if table_rows:
                move_sequence_past_rows(cursor, table)
    conn.close()
