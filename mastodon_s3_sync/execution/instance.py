"""Which Dagster instance the command line and ``make dev`` use: DAGSTER_HOME and its dagster.yaml.
``make dev`` prepares it with ``python -m mastodon_s3_sync.execution.instance``, so the instance file is
chosen here only."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.core.settings import load_environment

DAGSTER_PG_VARIABLES = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
CELERY_REQUIRED_VARIABLES = ("DAGSTER_COMPUTE_LOGS_BUCKET",)
"""Besides DAGSTER_PG_*: with runs on several hosts, their compute logs must be where the UI can read them."""
CHECKOUT = Path(__file__).resolve().parents[2]
"""The project's checkout, when installed from one (``pip install -e``): it holds the instance files."""


def instance_file() -> str:
    """The instance file the variables select: dagster-celery.yaml when CELERY_BROKER_URL is set (runs
    on worker hosts, records in PostgreSQL), dagster-postgres.yaml when DAGSTER_PG_HOST is, else dagster.yaml."""
    if os.environ.get("CELERY_BROKER_URL"):
        return "dagster-celery.yaml"
    if os.environ.get("DAGSTER_PG_HOST"):
        return "dagster-postgres.yaml"
    return "dagster.yaml"


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (default ./.dagster_home), given ./dagster-celery.yaml when CELERY_BROKER_URL is set,
    ./dagster-postgres.yaml when DAGSTER_PG_HOST is (Dagster's storage in that PostgreSQL) or else
    ./dagster.yaml, unless it has its own."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    name = instance_file()
    celery = name == "dagster-celery.yaml"
    postgres = celery or bool(os.environ.get("DAGSTER_PG_HOST"))
    missing = [variable for variable in DAGSTER_PG_VARIABLES if postgres and variable not in os.environ]
    if celery:
        missing += [variable for variable in CELERY_REQUIRED_VARIABLES if not os.environ.get(variable)]
        if missing:
            raise ConfigError(
                "CELERY_BROKER_URL is set, so runs go to workers on other hosts, Dagster keeps its records in "
                f"PostgreSQL and the runs' logs in a bucket: set {', '.join(missing)}"
            )
    elif missing:
        raise ConfigError(
            f"DAGSTER_PG_HOST is set, so Dagster keeps its records in PostgreSQL: set {', '.join(missing)}"
        )
    template = Path.cwd() / name
    if celery and not template.is_file():
        template = CHECKOUT / name  # a worker host started outside the checkout
    if not (home / "dagster.yaml").exists():
        if template.is_file():
            shutil.copy(template, home / "dagster.yaml")
        elif celery:
            raise ConfigError(
                f"CELERY_BROKER_URL is set but there is no {name} here to put in DAGSTER_HOME: run from the "
                f"project's directory, or copy {name} to {home / 'dagster.yaml'}"
            )
    return home


def in_process_instance():
    """DAGSTER_HOME's instance for the runs ``sync`` executes in its own process, leaving their stdout
    and stderr alone. Dagster's capture redirects the whole process's file descriptors (through two
    ``tail`` processes per run), which runs in several threads cannot share; these runs print
    nothing of their own (their log is in the event log, shown by the UI) and the terminal keeps
    the progress display. With SQLite storage (dagster.yaml) the runs' events go through
    ``dagster_internals.ReusingSqliteEventLogStorage``: the same files, at less cost per run."""
    from mastodon_s3_sync.dagster_internals import (
        NO_OUTPUT_CAPTURE,
        REUSING_EVENT_LOG_STORAGE,
        event_logs_directory,
        instance_from_dir,
    )

    home = os.environ["DAGSTER_HOME"]
    overrides = dict(NO_OUTPUT_CAPTURE)
    if not _storage_configured(Path(home) / "dagster.yaml"):
        overrides["event_log_storage"] = {
            **REUSING_EVENT_LOG_STORAGE,
            "config": {"base_dir": event_logs_directory(home)},  # where Dagster's default keeps them
        }
    return instance_from_dir(home, overrides)


STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")


def _storage_configured(instance_yaml: Path) -> bool:
    """Whether the instance file chooses its storage (PostgreSQL, say); else it is Dagster's SQLite default."""
    import yaml

    config = yaml.safe_load(instance_yaml.read_text()) if instance_yaml.is_file() else None
    return any(key in (config or {}) for key in STORAGE_KEYS)


def main() -> int:
    """``make dev``: DAGSTER_HOME prepared as the command line prepares it (``.env`` read first)."""
    load_environment()
    try:
        home = ensure_dagster_home()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"DAGSTER_HOME={home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
