"""Statements against the fake instance's database, as Mastodon (or a moderator) would change it."""

from __future__ import annotations

from contextlib import closing

import psycopg2


def run_statement(database_url: str, sql: str, parameters: tuple = ()) -> list[tuple]:
    """Run ``sql`` in a transaction of its own, committed; its rows (``RETURNING``), if any."""
    with closing(psycopg2.connect(database_url)) as connection, connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return cursor.fetchall() if cursor.description else []
