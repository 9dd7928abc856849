"""Fixtures and hooks: real services for the tests (PostgreSQL, rclone and moto S3 servers), the
environment, one in-process sync. The helpers are in ``support/``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test
from mastodon_s3_sync_demo.servers import S3Server, fresh_database, moto_s3_server, postgres_server, rclone_s3_server

from mastodon_s3_sync_tests.support import cli, sync, tiers

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items) -> None:
    tiers.mark_integration(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if item.get_closest_marker("integration"):
        return (yield)
    with tiers.servers_refused(item.nodeid):
        return (yield)


@pytest.fixture(scope="session")
@tiers.starts_server
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
@tiers.starts_server
def rclone_source(tmp_path_factory) -> Iterator[S3Server]:
    with rclone_s3_server(tmp_path_factory.mktemp("rclone-source")) as server:
        yield server


@pytest.fixture(scope="session")
@tiers.starts_server
def rclone_destination(tmp_path_factory) -> Iterator[S3Server]:
    with rclone_s3_server(tmp_path_factory.mktemp("rclone-destination")) as server:
        yield server


@pytest.fixture(scope="session")
@tiers.starts_server
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


@pytest.fixture
def environment(monkeypatch):
    """Set a migration's variables (and nothing else of ours) in the process environment."""

    def apply(variables: dict[str, str]) -> None:
        for name in list(os.environ):
            if cli.ours(name):
                monkeypatch.delenv(name)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return apply


@pytest.fixture
def work_dir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture
def sync_once(dagster_instance):
    """``sync_once(*tables)``: the tables synced once into the test's Dagster instance (``support.sync``)."""

    def sync_tables_once(*tables: str, **options):
        return sync.sync_into(dagster_instance, tables, **options)

    return sync_tables_once
