"""Resources built from the environment.

For Dagster (``as_env_vars=True``) every value that is set becomes an
``EnvVar``, so the UI shows variable names, never values, and runs read the
values themselves. For the CLI's pre-flight checks the same resources are
built with the values, and a missing or malformed value is a ``ConfigError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import EnvVar

from mastodon_s3_sync.config import ConfigError, optional, required
from mastodon_s3_sync.resources.database import DatabaseUnavailable, MastodonDatabase
from mastodon_s3_sync.resources.object_store import DestinationBucket, MediaBucket, SourceBucket, check_distinct
from mastodon_s3_sync.resources.tuning import TUNING_VARIABLES, SyncTuning

__all__ = [
    "DatabaseUnavailable",
    "DestinationBucket",
    "MastodonDatabase",
    "MediaBucket",
    "SourceBucket",
    "SyncTuning",
    "build_resources",
    "check_distinct",
]

DATABASE_FIELDS = {
    "DATABASE_URL": ("database_url", str),
    "DB_HOST": ("db_host", str),
    "DB_PORT": ("db_port", int),
    "DB_NAME": ("db_name", str),
    "DB_USER": ("db_user", str),
    "DB_PASS": ("db_pass", str),
    "DB_SSH_HOST": ("ssh_host", str),
    "DB_SSH_PORT": ("ssh_port", int),
    "DB_SSH_USER": ("ssh_user", str),
    "DB_SSH_KEY_FILE": ("ssh_key_file", str),
    "DB_SSH_PASSWORD": ("ssh_password", str),
    "DB_SSH_KNOWN_HOSTS": ("ssh_known_hosts", str),
}


def _bucket_fields(side: str) -> dict[str, tuple[str, type]]:
    return {
        f"{side}_S3_ENDPOINT": ("endpoint_url", str),
        f"{side}_S3_REGION": ("region_name", str),
        f"{side}_S3_KEY_PREFIX": ("key_prefix", str),
        f"{side}_AWS_ACCESS_KEY_ID": ("aws_access_key_id", str),
        f"{side}_AWS_SECRET_ACCESS_KEY": ("aws_secret_access_key", str),
    }


class _FieldReader:
    def __init__(self, environ: Mapping[str, str], as_env_vars: bool):
        self.environ = environ
        self.as_env_vars = as_env_vars

    def value(self, name: str, kind: type) -> Any:
        if self.as_env_vars:
            return EnvVar.int(name) if kind is int else EnvVar(name)
        raw = self.environ[name]
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {raw!r}") from None

    def fields(self, mapping: Mapping[str, tuple[str, type]], *, keep_empty: tuple[str, ...] = ()) -> dict[str, Any]:
        """The fields whose variables are set (non-empty, unless listed in ``keep_empty``)."""
        return {
            field: self.value(name, kind)
            for name, (field, kind) in mapping.items()
            if optional(self.environ, name) is not None or (name in keep_empty and name in self.environ)
        }

    def bucket_name(self, side: str) -> Any:
        name = f"{side}_S3_BUCKET"
        if self.as_env_vars:
            return EnvVar(name)  # unset, the run fails with Dagster's message naming it
        return required(self.environ, name, f"the {side.lower()} bucket")


def build_resources(
    environ: Mapping[str, str] | None = None, *, as_env_vars: bool = True, only: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The resources by key (``only`` some of them, e.g. for ``plan``, which needs no bucket)."""
    environ = os.environ if environ is None else environ
    reader = _FieldReader(environ, as_env_vars)
    permission = {
        "DESTINATION_S3_PERMISSION": ("permission", str),
        "DESTINATION_S3_STORAGE_CLASS": ("storage_class", str),
    }
    builders = {
        "mastodon_db": lambda: MastodonDatabase(**reader.fields(DATABASE_FIELDS)),
        "source_s3": lambda: SourceBucket(
            bucket=reader.bucket_name("SOURCE"), **reader.fields(_bucket_fields("SOURCE"))
        ),
        "destination_s3": lambda: DestinationBucket(
            bucket=reader.bucket_name("DESTINATION"),
            **reader.fields(_bucket_fields("DESTINATION")),
            **reader.fields(permission, keep_empty=("DESTINATION_S3_PERMISSION",)),
        ),
        "sync_tuning": lambda: SyncTuning(**_FieldReader(environ, False).fields(TUNING_VARIABLES)),
    }
    return {key: build() for key, build in builders.items() if only is None or key in only}
