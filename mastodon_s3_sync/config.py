"""Configuration from the environment: names of DESIGN.md, checked with clear errors.

Values come from the process environment, a ``.env`` in the working directory
(as ``dagster dev`` loads it) and, when ``MASTODON_ENV_FILE`` names the
instance's ``.env.production``, its database and S3 settings (translated to the
``SOURCE_*`` names). Explicitly set variables always win.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values, load_dotenv

MASTODON_ENV_FILE = "MASTODON_ENV_FILE"

DATABASE_VARIABLES = ("DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASS")
SSH_VARIABLES = (
    "DB_SSH_HOST",
    "DB_SSH_PORT",
    "DB_SSH_USER",
    "DB_SSH_KEY_FILE",
    "DB_SSH_PASSWORD",
    "DB_SSH_KNOWN_HOSTS",
)
SECRET_VARIABLES = frozenset(
    {
        "DATABASE_URL",
        "DB_PASS",
        "DB_SSH_PASSWORD",
        "SOURCE_AWS_ACCESS_KEY_ID",
        "SOURCE_AWS_SECRET_ACCESS_KEY",
        "DESTINATION_AWS_ACCESS_KEY_ID",
        "DESTINATION_AWS_SECRET_ACCESS_KEY",
    }
)

MASTODON_TO_SOURCE = {
    "DATABASE_URL": "DATABASE_URL",
    "DB_HOST": "DB_HOST",
    "DB_PORT": "DB_PORT",
    "DB_NAME": "DB_NAME",
    "DB_USER": "DB_USER",
    "DB_PASS": "DB_PASS",
    "S3_BUCKET": "SOURCE_S3_BUCKET",
    "S3_ENDPOINT": "SOURCE_S3_ENDPOINT",
    "S3_REGION": "SOURCE_S3_REGION",
    "S3_KEY_PREFIX": "SOURCE_S3_KEY_PREFIX",
    "AWS_ACCESS_KEY_ID": "SOURCE_AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "SOURCE_AWS_SECRET_ACCESS_KEY",
}
"""Mastodon's ``.env.production`` name -> the name this tool reads."""


class ConfigError(Exception):
    """A configuration problem, said in one line that names the variable."""


def source_settings_from_mastodon_env(path: str | Path) -> dict[str, str]:
    """The database and source-bucket variables that an instance's ``.env.production`` sets."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{MASTODON_ENV_FILE}: {file} is not a readable file")
    values = {name: value for name, value in dotenv_values(file).items() if value not in (None, "")}
    if values.get("S3_ENABLED", "").lower() != "true":
        raise ConfigError(
            f"{MASTODON_ENV_FILE}: S3_ENABLED is not true in {file}; this instance keeps its media on local disk"
        )
    if "S3_BUCKET" not in values:
        raise ConfigError(f"{MASTODON_ENV_FILE}: S3_BUCKET is missing from {file}")
    return {ours: values[theirs] for theirs, ours in MASTODON_TO_SOURCE.items() if theirs in values}


def load_environment(environ: dict[str, str] | None = None) -> None:
    """Fill ``environ`` (default ``os.environ``) from ``./.env`` and ``MASTODON_ENV_FILE``."""
    target = os.environ if environ is None else environ
    if environ is None:
        load_dotenv(Path.cwd() / ".env", override=False)
    env_file = target.get(MASTODON_ENV_FILE)
    if env_file:
        for name, value in source_settings_from_mastodon_env(env_file).items():
            target.setdefault(name, value)


def optional(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value if value not in (None, "") else None


def required(environ: Mapping[str, str], name: str, what: str) -> str:
    value = optional(environ, name)
    if value is None:
        raise ConfigError(f"{name} is not set: it names {what}")
    return value


def integer(environ: Mapping[str, str], name: str, default: int) -> int:
    value = optional(environ, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
