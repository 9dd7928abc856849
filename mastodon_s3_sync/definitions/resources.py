"""The Dagster resources: ``mastodon_db``, ``source_s3``, ``destination_s3`` and ``sync_tuning``.

Each field is bound to its variable of ``core.settings.VARIABLES`` as an
``EnvVar`` (only the variables that are set, so unset ones keep the field's
default), so the UI shows variable names, never values, and every run reads
the values itself. A resource hands the ops the core object that does the
work (``client()``).

The buckets are dagster-aws ``S3Resource``s, so Dagster users find its fields
and credential options (profile, session token, ``verify``, unsigned). Copy
steps never use a boto3 client, so the resource is what the op gets, not the
client ``S3Resource`` would otherwise build for every step that has it.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from typing import Any

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from mastodon_s3_sync.core import providers
from mastodon_s3_sync.core.buckets import (
    DestinationBucket,
    DestinationDirectory,
    SourceBucket,
    SourceDirectory,
    media_end,
)
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync.core.settings import BY_NAME, VARIABLES, is_set, value, variables_for
from mastodon_s3_sync.core.tuning import Tuning


def _s3_resource_class() -> type:
    """dagster-aws's ``S3Resource``, imported without running ``dagster_aws/__init__.py``.

    That file imports every dagster-aws component (Athena, Secrets Manager, ECR, ... and, through
    them, ``dagster._core.test_utils``): measured 1.4-1.5 s of every Dagster process's start here
    (each run worker, each `sync`), against 0.4 s for ``dagster_aws.s3`` alone (boto3 included).
    The package's submodules import as usual afterwards (``dagster_aws.s3.compute_log_manager``).
    """
    if "dagster_aws" not in sys.modules:
        sys.modules["dagster_aws"] = importlib.util.module_from_spec(importlib.util.find_spec("dagster_aws"))
    from dagster_aws.s3.resources import S3Resource

    return S3Resource


S3Resource = _s3_resource_class()


SECRET_FIELDS = frozenset(
    {"aws_session_token", *(variable.field for variable in VARIABLES if variable.secret and variable.field)}
)
"""The resource fields that hold a credential: those whose variables settings marks ``secret``, and
dagster-aws's session token (run config only)."""


class SecretsHidden:
    """A resource whose ``repr`` and ``str`` leave out its credentials (dagster-aws's fields too)."""

    def __repr_args__(self):
        return [(name, shown) for name, shown in super().__repr_args__() if name not in SECRET_FIELDS]


def _described(name: str, default: Any = None) -> Any:
    return Field(default=default, description=f"{name}: {BY_NAME[name].description}")


class MastodonDbResource(SecretsHidden, ConfigurableResource):
    """Mastodon's PostgreSQL (read-only), with an optional SSH tunnel."""

    database_url: str | None = _described("DATABASE_URL")
    db_host: str = _described("DB_HOST", MastodonDatabase.db_host)
    db_port: int = _described("DB_PORT", MastodonDatabase.db_port)
    db_name: str = _described("DB_NAME", MastodonDatabase.db_name)
    db_user: str = _described("DB_USER", MastodonDatabase.db_user)
    db_pass: str | None = _described("DB_PASS")
    ssh_host: str | None = _described("DB_SSH_HOST")
    ssh_port: int = _described("DB_SSH_PORT", MastodonDatabase.ssh_port)
    ssh_user: str | None = _described("DB_SSH_USER")
    ssh_key_file: str | None = _described("DB_SSH_KEY_FILE")
    ssh_password: str | None = _described("DB_SSH_PASSWORD")
    ssh_known_hosts: str | None = _described("DB_SSH_KNOWN_HOSTS")

    def client(self) -> MastodonDatabase:
        return MastodonDatabase(**self._field_values())

    def _field_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields}


class MediaBucketResource(SecretsHidden, S3Resource):
    """A bucket of Mastodon media: dagster-aws's S3 fields plus the bucket and key prefix."""

    bucket: str | None = Field(default=None, description="the bucket name")
    paperclip_root_path: str | None = Field(
        default=None, description="a directory instead of a bucket (Mastodon's PAPERCLIP_ROOT_PATH)"
    )
    key_prefix: str | None = Field(default=None, description="Mastodon's S3_KEY_PREFIX, joined literally")
    verify: str | None = Field(
        default=None,
        description="*_S3_CA_BUNDLE: a PEM file of CA certificates for the endpoint's TLS certificate "
        "(default: the system's CAs)",
    )

    def get_object_to_set_on_execution_context(self) -> Any:
        return self  # not a boto3 client per step: the copy steps run the transfer engine

    def _bucket_fields(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "paperclip_root_path": self.paperclip_root_path,
            "endpoint_url": self.endpoint_url,
            "region_name": self.region_name,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "aws_session_token": self.aws_session_token,
            "profile_name": self.profile_name,
            "key_prefix": self.key_prefix,
            "verify": self.verify,
        }


class SourceS3Resource(MediaBucketResource):
    """The bucket the instance uses today; read only."""

    def client(self) -> SourceBucket | SourceDirectory:
        return media_end("SOURCE", self._bucket_fields())


class DestinationS3Resource(MediaBucketResource):
    """The bucket the media moves to."""

    permission: str = _described("DESTINATION_S3_PERMISSION", providers.DEFAULT_PERMISSION)
    storage_class: str | None = _described("DESTINATION_S3_STORAGE_CLASS")

    def client(self) -> DestinationBucket | DestinationDirectory:
        fields = {**self._bucket_fields(), "permission": self.permission, "storage_class": self.storage_class}
        return media_end("DESTINATION", fields)


class SyncTuningResource(ConfigurableResource):
    """Tuning knobs (``SYNC_*``); the defaults suit most instances."""

    partition_rows: int = _described("SYNC_PARTITION_ROWS", Tuning.partition_rows)
    batch_objects: int = _described("SYNC_BATCH_OBJECTS", Tuning.batch_objects)
    batch_megabytes: int = _described("SYNC_BATCH_MB", Tuning.batch_megabytes)
    concurrency: int = _described("SYNC_CONCURRENCY", Tuning.concurrency)
    max_in_flight_per_endpoint: int = _described("SYNC_MAX_IN_FLIGHT_PER_ENDPOINT", Tuning.max_in_flight_per_endpoint)
    requests_per_second: float | None = _described("SYNC_REQUESTS_PER_SECOND", Tuning.requests_per_second)
    memory_megabytes: int = _described("SYNC_MEMORY_MB", Tuning.memory_megabytes)
    part_size_megabytes: int = _described("SYNC_PART_SIZE_MB", Tuning.part_size_megabytes)
    multipart_threshold_megabytes: int = _described("SYNC_MULTIPART_THRESHOLD_MB", Tuning.multipart_threshold_megabytes)
    plan_objects_per_second: float = _described("SYNC_PLAN_OBJECTS_PER_SECOND", Tuning.plan_objects_per_second)
    plan_megabytes_per_second: float = _described("SYNC_PLAN_MB_PER_SECOND", Tuning.plan_megabytes_per_second)
    accept_missing: bool = _described("SYNC_ACCEPT_MISSING", Tuning.accept_missing)
    change_overlap_minutes: int = _described("SYNC_CHANGE_OVERLAP_MINUTES", Tuning.change_overlap_minutes)

    def client(self) -> Tuning:
        return Tuning(**{name: getattr(self, name) for name in type(self).model_fields})


RESOURCE_CLASSES: dict[str, type[ConfigurableResource]] = {
    "mastodon_db": MastodonDbResource,
    "source_s3": SourceS3Resource,
    "destination_s3": DestinationS3Resource,
    "sync_tuning": SyncTuningResource,
}


def _env_var(name: str) -> Any:
    return EnvVar.int(name) if BY_NAME[name].kind is int else EnvVar(name)


def _bucket_needed(variable, environ: Mapping[str, str]) -> bool:
    """A side's bucket name, unless its directory is set instead."""
    side, _, rest = variable.name.partition("_")
    return rest == "S3_BUCKET" and not is_set(BY_NAME[f"{side}_PAPERCLIP_ROOT_PATH"], environ)


def build_resources(environ: Mapping[str, str]) -> dict[str, ConfigurableResource]:
    """The resources with each set variable bound as an ``EnvVar``. The bucket names are bound
    even when unset: a run then fails with Dagster's message naming the variable. Tuning is
    bound to its values (not secret, and shown in the UI that way)."""
    resources: dict[str, ConfigurableResource] = {}
    for key, resource_class in RESOURCE_CLASSES.items():
        variables = variables_for(key)
        if key == "sync_tuning":
            fields = {v.field: value(v.name, environ) for v in variables if is_set(v, environ)}
        else:
            fields = {v.field: _env_var(v.name) for v in variables if is_set(v, environ) or _bucket_needed(v, environ)}
        resources[key] = resource_class(**fields)
    return resources
