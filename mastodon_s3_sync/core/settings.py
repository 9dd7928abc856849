"""Configuration: one table of every variable the tool reads, and the one place that reads them.

``VARIABLES`` drives everything that deals with configuration: the Dagster
resources bind their fields to these names as ``EnvVar``s (the UI shows names,
never values), the CLI and the schedules read typed values through ``value``
and ``resource_values``, a bad value is a one-line ``ConfigError`` naming the
variable, and the README's configuration reference is rendered from it
(``python -m mastodon_s3_sync.core.settings``; a test keeps the two equal).

Values come from the process environment, a ``.env`` in the working directory
(as ``dagster dev`` loads it) and, when ``MASTODON_ENV_FILE`` names the
instance's ``.env.production``, its database and S3 settings (translated to the
``SOURCE_*`` names), or for a disk instance its directory (``SOURCE_PAPERCLIP_ROOT_PATH``). Explicitly set variables always win. Nothing here runs at
import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values, load_dotenv

from mastodon_s3_sync.core.errors import ConfigError
from mastodon_s3_sync.core.tuning import Tuning

BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class Variable:
    name: str
    section: str
    description: str
    resource: str | None = None
    """The resource key whose field this variable sets (``mastodon_db``, ``source_s3``, ...)."""
    field: str | None = None
    kind: type = str
    default: Any = None
    secret: bool = False
    keep_empty: bool = False
    """Set but empty means something (``DESTINATION_S3_PERMISSION=``: send no ACL)."""

    def parse(self, raw: str) -> Any:
        if self.kind is str:
            return raw
        if self.kind is bool:
            if raw.strip().lower() not in BOOLEANS:
                raise ConfigError(f"{self.name} must be true or false, not {raw!r}")
            return BOOLEANS[raw.strip().lower()]
        try:
            return self.kind(raw)
        except ValueError:
            noun = "a whole number" if self.kind is int else "a number"
            raise ConfigError(f"{self.name} must be {noun}, not {raw!r}") from None


DATABASE = "Database (Mastodon's own names)"
TUNNEL = "SSH tunnel to the database (on when DB_SSH_HOST is set)"
SOURCE = "Source bucket"
DESTINATION = "Destination bucket"
TUNING = "Tuning"
SCHEDULING = "Schedules and sensors"
DAGSTER = "Dagster instance"
HOSTS = "Several hosts (Celery workers; on when CELERY_BROKER_URL is set)"


def _bucket_variables(side: str, section: str) -> list[Variable]:
    resource = f"{side.lower()}_s3"
    return [
        Variable(
            f"{side}_S3_BUCKET",
            section,
            f"the bucket name (required, unless {side}_PAPERCLIP_ROOT_PATH is set)",
            resource,
            "bucket",
        ),
        Variable(
            f"{side}_PAPERCLIP_ROOT_PATH",
            section,
            "a directory instead of a bucket: Mastodon's `PAPERCLIP_ROOT_PATH` (its `public/system`), files at "
            "`<root>/[cache/]<class>/<attachment>/<id_partition>/<style>/<filename>`, no key prefix"
            + (
                "; read only"
                if side == "SOURCE"
                else "; files are written under a temporary name and renamed, with Paperclip's modes "
                "(0666 and directories 0777, less the umask: 0644 and 0755 under umask 022); what Mastodon keeps "
                "private (media of suspended accounts and of deleted-but-kept statuses) is 0600 less the umask, "
                "as Mastodon chmods it on disk, and `verify`, the ACL refresh and `--fix-acls` check and set these modes"
            ),
            resource,
            "paperclip_root_path",
        ),
        Variable(
            f"{side}_S3_ENDPOINT",
            section,
            "endpoint URL, e.g. `https://s3.eu-central-003.backblazeb2.com`; empty for AWS S3. Custom endpoints use path-style addressing",
            resource,
            "endpoint_url",
        ),
        Variable(
            f"{side}_S3_REGION", section, "signing region (default us-east-1; `auto` for R2)", resource, "region_name"
        ),
        Variable(
            f"{side}_S3_KEY_PREFIX",
            section,
            "Mastodon's S3_KEY_PREFIX, joined literally as Mastodon does (`media/` gives `media//accounts/...`)",
            resource,
            "key_prefix",
        ),
        Variable(
            f"{side}_AWS_ACCESS_KEY_ID",
            section,
            "access key (default: boto3's credential chain)",
            resource,
            "aws_access_key_id",
            secret=True,
        ),
        Variable(
            f"{side}_AWS_SECRET_ACCESS_KEY", section, "secret key", resource, "aws_secret_access_key", secret=True
        ),
        Variable(
            f"{side}_S3_CA_BUNDLE",
            section,
            "PEM file of CA certificates that the endpoint's TLS certificate is verified with, for a private CA "
            "or a self-signed certificate (default: the system's CAs; verification is never off)",
            resource,
            "verify",
        ),
    ]


def _tuning(name: str, description: str, field: str, kind: type) -> Variable:
    """A tuning knob: its default is the ``Tuning`` dataclass's own."""
    return Variable(name, TUNING, description, "sync_tuning", field, kind, getattr(Tuning, field))


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "MASTODON_ENV_FILE",
        DATABASE,
        "the instance's `.env.production`: its `DB_*`, `DATABASE_URL`, `S3_BUCKET`, `S3_ENDPOINT`, `S3_REGION`, `S3_KEY_PREFIX`, `S3_ALIAS_HOST` (or `S3_CLOUDFRONT_HOST`), `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` become the database and `SOURCE_*` settings (explicit variables win). Without `S3_ENABLED=true` the instance keeps its media on disk, and its `PAPERCLIP_ROOT_PATH`, by default `public/system` beside the file (Mastodon's `config/initializers/paperclip.rb`), becomes `SOURCE_PAPERCLIP_ROOT_PATH`",
    ),
    Variable(
        "DATABASE_URL",
        DATABASE,
        "`postgresql://user:pass@host:port/db`; wins over the `DB_*` settings",
        "mastodon_db",
        "database_url",
        secret=True,
    ),
    Variable("DB_HOST", DATABASE, "host (default localhost)", "mastodon_db", "db_host"),
    Variable("DB_PORT", DATABASE, "port (default 5432)", "mastodon_db", "db_port", int),
    Variable("DB_NAME", DATABASE, "database (default mastodon_production)", "mastodon_db", "db_name"),
    Variable("DB_USER", DATABASE, "user (default mastodon)", "mastodon_db", "db_user"),
    Variable("DB_PASS", DATABASE, "password", "mastodon_db", "db_pass", secret=True),
    Variable(
        "DB_SSH_HOST", TUNNEL, "SSH host; `DB_HOST`/`DB_PORT` are then resolved on that host", "mastodon_db", "ssh_host"
    ),
    Variable("DB_SSH_PORT", TUNNEL, "SSH port (default 22)", "mastodon_db", "ssh_port", int),
    Variable("DB_SSH_USER", TUNNEL, "SSH user", "mastodon_db", "ssh_user"),
    Variable("DB_SSH_KEY_FILE", TUNNEL, "private key file (OpenSSH format)", "mastodon_db", "ssh_key_file"),
    Variable("DB_SSH_PASSWORD", TUNNEL, "password, instead of a key", "mastodon_db", "ssh_password", secret=True),
    Variable(
        "DB_SSH_KNOWN_HOSTS",
        TUNNEL,
        "known_hosts file holding the host key, `ssh-keyscan -p PORT HOST >> file` (default ~/.ssh/known_hosts)",
        "mastodon_db",
        "ssh_known_hosts",
    ),
    *_bucket_variables("SOURCE", SOURCE),
    *_bucket_variables("DESTINATION", DESTINATION),
    Variable(
        "SOURCE_S3_ALIAS_HOST",
        SOURCE,
        "Mastodon's S3_ALIAS_HOST now: the host media URLs name (a CDN or proxy), for `plan`'s word on whether "
        "URLs change",
    ),
    Variable(
        "DESTINATION_S3_ALIAS_HOST",
        DESTINATION,
        "the S3_ALIAS_HOST the instance will use after the cut-over (a host name, or a URL whose scheme gives "
        "S3_PROTOCOL): `check` reads its probe there and writes it into the `.env.production` block; unset, "
        "the bucket's URL at its endpoint",
    ),
    Variable(
        "DESTINATION_S3_PERMISSION",
        DESTINATION,
        "canned ACL for public media (default public-read); set but empty sends no ACL at all (Cloudflare R2, buckets with ACLs disabled). Backups, media of suspended accounts and of deleted-but-kept statuses get `private`",
        "destination_s3",
        "permission",
        keep_empty=True,
    ),
    Variable(
        "DESTINATION_S3_STORAGE_CLASS",
        DESTINATION,
        "storage class, e.g. `STANDARD_IA` (default: the provider's)",
        "destination_s3",
        "storage_class",
    ),
    _tuning("SYNC_PARTITION_ROWS", "rows per id-range partition", "partition_rows", int),
    _tuning("SYNC_BATCH_OBJECTS", "objects per copy step", "batch_objects", int),
    _tuning("SYNC_BATCH_MB", "expected megabytes per copy step", "batch_megabytes", int),
    _tuning(
        "SYNC_CONCURRENCY",
        "requests in flight per endpoint and copy step to start with; the limit then grows while the objects/s "
        "rise with it (a long round trip) and the provider does not throttle, up to SYNC_MAX_IN_FLIGHT_PER_ENDPOINT",
        "concurrency",
        int,
    ),
    _tuning(
        "SYNC_MAX_IN_FLIGHT_PER_ENDPOINT",
        "the most requests in flight per endpoint and copy step, however long the round trip (so a small provider "
        "is not flooded); set it to SYNC_CONCURRENCY for a fixed limit",
        "max_in_flight_per_endpoint",
        int,
    ),
    _tuning(
        "SYNC_REQUESTS_PER_SECOND",
        "requests per second per endpoint, for providers with hard limits (default: no limit; the limiter also backs off by itself on 503 SlowDown and 429, honouring Retry-After)",
        "requests_per_second",
        float,
    ),
    _tuning("SYNC_MEMORY_MB", "object bytes held at once per step", "memory_megabytes", int),
    _tuning("SYNC_PART_SIZE_MB", "multipart part size", "part_size_megabytes", int),
    _tuning(
        "SYNC_MULTIPART_THRESHOLD_MB",
        "objects above this size are copied in parts",
        "multipart_threshold_megabytes",
        int,
    ),
    _tuning(
        "SYNC_PLAN_OBJECTS_PER_SECOND", "the rate `plan` estimates the time with", "plan_objects_per_second", float
    ),
    _tuning(
        "SYNC_PLAN_MB_PER_SECOND", "the bandwidth `plan` estimates the time with", "plan_megabytes_per_second", float
    ),
    _tuning(
        "SYNC_ACCEPT_MISSING",
        "go on when most referenced objects are missing at the source (an instance that really lost its media)",
        "accept_missing",
        bool,
    ),
    _tuning(
        "SYNC_CHANGE_OVERLAP_MINUTES",
        "how long before it becomes visible a row change may be stamped (Mastodon stamps `*_updated_at`, `deleted_at` "
        "and `suspended_at` with the app server's clock, before a commit that can follow a minutes-long transcode): "
        "changed-row detection and the ACL refresh look back this far, so late commits and slow app clocks are not missed",
        "change_overlap_minutes",
        int,
    ),
    Variable(
        "SYNC_PARTITIONS_PER_RUN",
        TUNING,
        "contiguous partitions one Dagster run may cover, in backfills and `sync` (each keeps its own status "
        "and metadata); a run costs a quarter second of bookkeeping in `sync`, a process start (4-5 s of CPU) in a backfill",
        kind=int,
        default=20,
    ),
    Variable(
        "SYNC_TABLES_AT_ONCE",
        TUNING,
        "tables `sync` copies at the same time, each in its own runs: one table's planning and Dagster "
        "bookkeeping overlap another's copying (requests in flight add up: each copy step has its own limit per endpoint); "
        "one at a time when SYNC_REQUESTS_PER_SECOND is set, a limit per copy step",
        kind=int,
        default=2,
    ),
    Variable("SYNC_SCHEDULE_CRON", SCHEDULING, "when the catch-up schedules run", default="0 * * * *"),
    Variable(
        "SYNC_ACL_REFRESH_CRON",
        SCHEDULING,
        "when the ACL refresh schedule brings suspensions and deletions to the destination",
        default="*/15 * * * *",
    ),
    Variable("SYNC_VERIFY_CRON", SCHEDULING, "when the daily verify schedule runs", default="30 4 * * *"),
    Variable(
        "SYNC_CHANGES_ROWS_PER_TICK",
        SCHEDULING,
        "rows (all tables together) the changed-rows sensor reads per tick, an id slice of each table; a full "
        "pass takes rows / this many ticks (see benchmarks/README.md)",
        kind=int,
        default=5_000_000,
    ),
    Variable(
        "SYNC_CHANGES_INTERVAL_SECONDS",
        SCHEDULING,
        "seconds between the changed-rows sensor's ticks",
        kind=int,
        default=3600,
    ),
    Variable("DAGSTER_HOME", DAGSTER, "where runs are recorded (default ./.dagster_home)"),
    Variable("DAGSTER_PG_HOST", DAGSTER, "set to keep Dagster's records in PostgreSQL (dagster-postgres.yaml)"),
    Variable("DAGSTER_PG_PORT", DAGSTER, "its port"),
    Variable("DAGSTER_PG_USER", DAGSTER, "its user"),
    Variable("DAGSTER_PG_PASSWORD", DAGSTER, "its password", secret=True),
    Variable("DAGSTER_PG_DB", DAGSTER, "its database"),
    Variable(
        "CELERY_BROKER_URL",
        HOSTS,
        "the Redis that queues runs for the copy hosts' workers (`redis://host:6379/0`); set, the CLI and "
        "`make dev` use dagster-celery.yaml, `sync` submits its runs and `mastodon-s3-sync worker` takes them",
        secret=True,
    ),
    Variable(
        "CELERY_RESULT_BACKEND",
        HOSTS,
        "the Redis where workers record task states and run heartbeats, read by the daemon's health check "
        "(default: CELERY_BROKER_URL); `redis://` or `rediss://` only",
        secret=True,
    ),
    Variable(
        "CELERY_WORKER_LOST_SECONDS",
        HOSTS,
        "a run whose worker has sent no heartbeat for this long (host gone, worker killed) is failed and "
        "retried on another worker",
        kind=int,
        default=120,
    ),
    Variable(
        "DAGSTER_COMPUTE_LOGS_BUCKET",
        HOSTS,
        "the bucket where every host keeps runs' stdout and stderr, so the UI shows them (required with "
        "CELERY_BROKER_URL); at DESTINATION_S3_ENDPOINT, with the destination's credentials",
    ),
    Variable("DAGSTER_COMPUTE_LOGS_PREFIX", HOSTS, "key prefix in that bucket", default="dagster-compute-logs"),
)
BY_NAME: dict[str, Variable] = {variable.name: variable for variable in VARIABLES}

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
    "S3_CLOUDFRONT_HOST": "SOURCE_S3_ALIAS_HOST",
    "S3_ALIAS_HOST": "SOURCE_S3_ALIAS_HOST",  # after the legacy name: it wins, as in Mastodon
    "AWS_ACCESS_KEY_ID": "SOURCE_AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "SOURCE_AWS_SECRET_ACCESS_KEY",
}
"""Mastodon's ``.env.production`` name -> the name this tool reads."""


def variables_for(resource: str) -> list[Variable]:
    return [variable for variable in VARIABLES if variable.resource == resource]


def source_settings_from_mastodon_env(path: str | Path) -> dict[str, str]:
    """The database and source variables that an instance's ``.env.production`` sets: its bucket
    with ``S3_ENABLED=true``, else its directory (``disk_root_of_instance``)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"MASTODON_ENV_FILE: {file} is not a readable file")
    values = {name: value for name, value in dotenv_values(file).items() if value not in (None, "")}
    mapped = {ours: values[theirs] for theirs, ours in MASTODON_TO_SOURCE.items() if theirs in values}
    if values.get("S3_ENABLED", "").lower() != "true":
        if values.get("SWIFT_ENABLED", "").lower() == "true":
            raise ConfigError(
                f"MASTODON_ENV_FILE: {file} keeps media in OpenStack Swift, which this tool does not read"
            )
        database = {ours: value for ours, value in mapped.items() if not ours.startswith("SOURCE_")}
        return {
            **database,
            "SOURCE_PAPERCLIP_ROOT_PATH": disk_root_of_instance(file, values.get("PAPERCLIP_ROOT_PATH")),
        }
    if "S3_BUCKET" not in values:
        raise ConfigError(f"MASTODON_ENV_FILE: S3_BUCKET is missing from {file}")
    return mapped


def disk_root_of_instance(env_file: Path, paperclip_root_path: str | None) -> str:
    """Where a disk instance keeps its media: ``PAPERCLIP_ROOT_PATH``, by default ``:rails_root/public/system``
    (``config/initializers/paperclip.rb``). The Rails root is the env file's directory; a relative path
    is taken from there (where Mastodon's processes run)."""
    rails_root = env_file.absolute().parent
    configured = (paperclip_root_path or ":rails_root/public/system").replace(":rails_root", str(rails_root))
    return str(rails_root / configured)


def instance_web_domain(environ: Mapping[str, str] | None = None) -> str | None:
    """The instance's host (``WEB_DOMAIN``, else ``LOCAL_DOMAIN``) as its ``MASTODON_ENV_FILE`` says, if set."""
    env_file = (os.environ if environ is None else environ).get("MASTODON_ENV_FILE")
    if not env_file or not Path(env_file).is_file():
        return None
    values = dotenv_values(env_file)
    return values.get("WEB_DOMAIN") or values.get("LOCAL_DOMAIN") or None


def load_environment(environ: dict[str, str] | None = None) -> None:
    """Fill ``environ`` (default ``os.environ``) from ``./.env`` and ``MASTODON_ENV_FILE``."""
    target = os.environ if environ is None else environ
    if environ is None:
        load_dotenv(Path.cwd() / ".env", override=False)
    env_file = target.get("MASTODON_ENV_FILE")
    if env_file:
        for name, value in source_settings_from_mastodon_env(env_file).items():
            if not (name == "SOURCE_PAPERCLIP_ROOT_PATH" and target.get("SOURCE_S3_BUCKET")):  # a bucket set wins
                target.setdefault(name, value)


def is_set(variable: Variable, environ: Mapping[str, str]) -> bool:
    """Non-empty, or present at all for a variable whose empty value means something."""
    raw = environ.get(variable.name)
    return raw not in (None, "") or (variable.keep_empty and raw is not None)


def value(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The variable's typed value, or its default when it is not set."""
    environ = os.environ if environ is None else environ
    variable = BY_NAME[name]
    return variable.parse(environ[name]) if is_set(variable, environ) else variable.default


def resource_values(resource: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Field -> typed value for each variable of ``resource`` that is set (unset fields keep
    their defaults)."""
    environ = os.environ if environ is None else environ
    return {
        variable.field: variable.parse(environ[variable.name])
        for variable in variables_for(resource)
        if is_set(variable, environ)
    }


def required(name: str, what: str, environ: Mapping[str, str] | None = None) -> str:
    found = value(name, environ)
    if found in (None, ""):
        raise ConfigError(f"{name} is not set: it names {what}")
    return found


def reference_markdown() -> str:
    """The README's configuration reference, one table per section."""
    lines: list[str] = []
    for section in dict.fromkeys(variable.section for variable in VARIABLES):
        lines += [f"**{section}**", "", "| variable | meaning |", "|---|---|"]
        for variable in (v for v in VARIABLES if v.section == section):
            shown = str(variable.default).lower() if variable.kind is bool else variable.default
            default = f" (default `{shown}`)" if variable.default is not None else ""
            secret = " Secret: never logged." if variable.secret else ""
            lines.append(f"| `{variable.name}` | {variable.description}{default}.{secret} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
