"""``mastodon-s3-sync`` in a subprocess, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

OUR_PREFIXES = ("SOURCE_", "DESTINATION_", "DB_", "SYNC_")
OUR_NAMES = ("DATABASE_URL", "MASTODON_ENV_FILE")


def ours(name: str) -> bool:
    """Whether a variable configures the sync (the rest of the environment is the machine's)."""
    return name.startswith(OUR_PREFIXES) or name in OUR_NAMES


def run_cli(
    *arguments: str,
    dagster_home: str | Path,
    environment: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run the command line to its end. The process's environment, or, given ``environment``, that
    instead of every variable of ours; either way with ``DAGSTER_HOME`` set to ``dagster_home``."""
    if environment is None:
        base = dict(os.environ)
    else:
        base = {name: value for name, value in os.environ.items() if not ours(name)} | dict(environment)
    return subprocess.run(
        [sys.executable, "-m", "mastodon_s3_sync", *arguments],
        env={**base, "DAGSTER_HOME": str(dagster_home)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_wide(*arguments: str, cwd: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the command line in this process's environment, as in a 200-column terminal (its tables
    unwrapped, so a test can look for whole lines)."""
    return subprocess.run(
        [sys.executable, "-m", "mastodon_s3_sync", *arguments],
        env={**os.environ, "COLUMNS": "200"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
