"""The SQLite event log of the runs ``sync`` executes in its own process: Dagster's, minus two costs
that every run pays again.

Dagster's ``SqliteEventLogStorage`` keeps each run's events in a database file of its own
(``DAGSTER_HOME/history/runs/<run id>.db``). For each new file it loads its alembic migration
scripts twice (to find the head revision, then to stamp it), and for each event it creates and
disposes a SQLAlchemy engine, whose compiled-statement cache goes with it. Measured on a run of
an empty partition (35 events, ``benchmarks/bench_end_to_end.py --breakdown``): 0.40 s of CPU
with Dagster's class, 0.29 s with this one; every run of every partition pays it.

Here a new run's file is a copy of one that Dagster's own code initialized (same schema, same
alembic stamp, same WAL mode), made once per process, and each file's engine is kept while its run
goes on. What is stored is Dagster's format: the webserver, the daemon and the daemon's run
workers read and write these same files with Dagster's class.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

ENGINES_KEPT = 8
"""Run files whose engine stays open (NullPool: an engine holds no connection between events)."""


class ReusingSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._template: str | None = None
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None) or create_engine(
            self.conn_string_for_shard(shard),
            poolclass=NullPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        self._engines[shard] = engine  # the most recently used last
        while len(self._engines) > ENGINES_KEPT:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator:
        """Dagster's ``_connect``, with the shard's engine kept instead of created and disposed."""
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """A new run file starts as a copy of the template. It appears under its name at once
        (a hard link), so another process never opens it half written; if another process
        created the file first, Dagster's own check of its schema and stamp runs instead."""
        database = engine.url.database
        if for_index_shard or not database or os.path.exists(database):
            super()._initdb(engine, for_index_shard)
            return
        staged = f"{database}.{os.getpid()}.new"  # not *.db: Dagster's listing of run files skips it
        shutil.copyfile(self._run_template(), staged)
        try:
            os.link(staged, database)
        except FileExistsError:
            super()._initdb(engine)
        finally:
            os.unlink(staged)

    def _run_template(self) -> str:
        """An empty run file, initialized by Dagster's own ``_initdb`` (once per process)."""
        if self._template is None:
            directory = tempfile.mkdtemp(prefix="mastodon-s3-sync-run-events-")
            engine = create_engine(f"sqlite:///{directory}/template.db", poolclass=NullPool)
            super()._initdb(engine)
            engine.dispose()
            self._template = f"{directory}/template.db"
        return self._template

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
        if self._template is not None:
            shutil.rmtree(os.path.dirname(self._template), ignore_errors=True)
            self._template = None
        super().dispose()
