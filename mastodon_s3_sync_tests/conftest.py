"""Real services for the tests: PostgreSQL, rclone and moto S3 servers, sshd."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test
from mastodon_s3_sync_demo.fake_instance.model import FakeInstance
from mastodon_s3_sync_demo.fake_instance.seeding import seed
from mastodon_s3_sync_demo.servers import S3Server, fresh_database, moto_s3_server, postgres_server, rclone_s3_server

SERVER_FIXTURES = frozenset(
    {"postgres_admin_url", "database_url", "rclone_source", "rclone_destination", "moto", "sshd"}
)
"""Tests that use these are the ``integration`` tier: ``pytest -m "not integration"`` runs without servers."""

SOURCE_BUCKET = "mastodon-source"
DESTINATION_BUCKET = "mastodon-destination"


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def rclone_source(tmp_path_factory) -> Iterator[S3Server]:
    with rclone_s3_server(tmp_path_factory.mktemp("rclone-source")) as server:
        yield server


@pytest.fixture(scope="session")
def rclone_destination(tmp_path_factory) -> Iterator[S3Server]:
    with rclone_s3_server(tmp_path_factory.mktemp("rclone-destination")) as server:
        yield server


@pytest.fixture(scope="session")
def moto() -> Iterator[S3Server]:
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def database_url(postgres_admin_url) -> Iterator[str]:
    with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def dagster_instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


@dataclass
class Migration:
    """A seeded fake instance and where its media is going."""

    database_url: str
    source: S3Server
    source_bucket: str
    source_prefix: str
    destination: S3Server
    destination_bucket: str
    destination_prefix: str
    instance: FakeInstance
    permission: str = "public-read"

    def environment(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "SOURCE_S3_BUCKET": self.source_bucket,
            "SOURCE_S3_ENDPOINT": self.source.endpoint_url,
            "SOURCE_S3_REGION": self.source.region,
            "SOURCE_S3_KEY_PREFIX": self.source_prefix,
            "SOURCE_AWS_ACCESS_KEY_ID": self.source.access_key,
            "SOURCE_AWS_SECRET_ACCESS_KEY": self.source.secret_key,
            "DESTINATION_S3_BUCKET": self.destination_bucket,
            "DESTINATION_S3_ENDPOINT": self.destination.endpoint_url,
            "DESTINATION_S3_REGION": self.destination.region,
            "DESTINATION_S3_KEY_PREFIX": self.destination_prefix,
            "DESTINATION_AWS_ACCESS_KEY_ID": self.destination.access_key,
            "DESTINATION_AWS_SECRET_ACCESS_KEY": self.destination.secret_key,
            "DESTINATION_S3_PERMISSION": self.permission,
        }

    def destination_keys(self) -> set[str]:
        client = self.destination.client()
        keys = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.destination_bucket):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys


_bucket_counter = iter(range(1, 1_000_000))


def unique_bucket(name: str) -> str:
    return f"{name}-{os.getpid()}-{next(_bucket_counter)}"


def make_migration(
    database_url: str,
    source: S3Server,
    destination: S3Server,
    *,
    source_prefix: str = "",
    destination_prefix: str = "",
    same_bucket: bool = False,
    permission: str = "public-read",
) -> Migration:
    source_bucket = unique_bucket(SOURCE_BUCKET)
    destination_bucket = source_bucket if same_bucket else unique_bucket(DESTINATION_BUCKET)
    source.create_bucket(source_bucket)
    if not same_bucket:
        destination.create_bucket(destination_bucket)
    instance = seed(database_url, source.client(), source_bucket, source_prefix)
    return Migration(
        database_url,
        source,
        source_bucket,
        source_prefix,
        destination,
        destination_bucket,
        destination_prefix,
        instance,
        permission,
    )


@pytest.fixture
def environment(monkeypatch):
    """Set a migration's variables (and nothing else of ours) in the process environment."""

    def apply(variables: dict[str, str]) -> None:
        for name in list(os.environ):
            if name.startswith(("SOURCE_", "DESTINATION_", "DB_", "SYNC_")) or name in (
                "DATABASE_URL",
                "MASTODON_ENV_FILE",
            ):
                monkeypatch.delenv(name)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return apply


@pytest.fixture
def work_dir(tmp_path) -> Path:
    return tmp_path


def signals_as_from_a_terminal() -> None:
    """In a child process the test starts: SIGINT, SIGTERM and SIGQUIT at their defaults, as an
    interactive shell leaves them to a command. A test run started in the background (``cmd &``, as
    CI may start it) has them ignored, exec passes that on, and Ctrl-C would be a no-op."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
