"""One in-process sync, as ``mastodon-s3-sync sync`` runs it, with what the environment gives now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dagster import DagsterInstance, Definitions

from mastodon_s3_sync.core.configured import configured
from mastodon_s3_sync.definitions.definitions import build_definitions
from mastodon_s3_sync.execution.runs import TableSyncResult, sync_tables


def sync_into(
    instance: DagsterInstance,
    tables: Sequence[str],
    *,
    definitions: Definitions | None = None,
    environ: Mapping[str, str] | None = None,
    **options,
) -> list[TableSyncResult]:
    """Sync ``tables`` once into ``instance``: the code location's definitions (unless given) and
    the database and tuning the environment (or ``environ``) configures; ``options`` go to
    ``sync_tables``. One result per table, in order."""
    resources = configured(environ, only=("mastodon_db", "sync_tuning"))
    return sync_tables(
        definitions or build_definitions(),
        instance,
        list(tables),
        resources["mastodon_db"],
        resources["sync_tuning"],
        **options,
    )
