"""Which Dagster instance the command line and ``make dev`` use: DAGSTER_HOME and its dagster.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mastodon_s3_sync.core.settings import ConfigError

DAGSTER_PG_VARIABLES = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (default ./.dagster_home), given ./dagster-postgres.yaml when DAGSTER_PG_HOST
    is set (Dagster's storage in that PostgreSQL) or else ./dagster.yaml, unless it has its own."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    postgres = bool(os.environ.get("DAGSTER_PG_HOST"))
    missing = [name for name in DAGSTER_PG_VARIABLES if postgres and name not in os.environ]
    if missing:
        raise ConfigError(
            f"DAGSTER_PG_HOST is set, so Dagster keeps its records in PostgreSQL: set {', '.join(missing)}"
        )
    template = Path.cwd() / ("dagster-postgres.yaml" if postgres else "dagster.yaml")
    if not (home / "dagster.yaml").exists() and template.is_file():
        shutil.copy(template, home / "dagster.yaml")
    return home


