"""The fast tier starts no server: a test is ``integration`` by what it starts (``support.tiers``)."""

from __future__ import annotations

import sys

import pytest
from mastodon_s3_sync_demo.servers import rclone_s3_server

from mastodon_s3_sync_tests.support.tiers import ServerInFastTier, server_program


@pytest.mark.parametrize(
    ("arguments", "program"),
    [
        (["/venv/bin/rclone", "serve", "s3", "/tmp/root"], "rclone"),
        ([sys.executable, "-m", "moto.server", "-p", "5000"], "moto.server"),
        (["/usr/sbin/sshd", "-D", "-f", "sshd_config"], "sshd"),
        (["/usr/lib/postgresql/16/bin/pg_ctl", "-w", "start"], "pg_ctl"),
        (["dagster", "dev", "-w", "workspace.yaml"], "dagster dev"),
        ("dagster-daemon run", "dagster-daemon"),
        ([b"/usr/bin/celery", b"worker"], "celery"),
        (["dagster", "definitions", "validate"], None),
        ([sys.executable, "-m", "mastodon_s3_sync", "sync"], None),
        ([sys.executable, "-c", "print(1)"], None),
        (["git", "status"], None),
    ],
)
def test_server_programs_are_told_by_name_or_module(arguments, program) -> None:
    assert server_program(arguments) == program


def test_a_fast_tier_test_that_starts_a_server_fails_before_it_starts(request, tmp_path) -> None:
    """This test is in the fast tier: starting rclone from its body is refused before the process
    exists, naming the test (so the conftest hook guards every fast-tier test)."""
    with pytest.raises(ServerInFastTier) as refused:
        with rclone_s3_server(tmp_path / "s3"):
            pass
    assert str(refused.value) == (
        f"{request.node.nodeid} is in the fast tier yet starts rclone: mark it "
        "@pytest.mark.integration, or start the server from a fixture declared @starts_server"
    )


def test_a_fixture_declared_to_start_a_server_marks_its_tests_integration(pytester) -> None:
    """Used directly or through another fixture, a ``@starts_server`` fixture puts the test in the
    integration tier; the fast tier keeps only the test that uses none."""
    pytester.makeini("[pytest]\nmarkers =\n    integration: starts a server\n")
    pytester.makeconftest(
        """
        import pytest
        from mastodon_s3_sync_tests.support.tiers import mark_integration, starts_server

        def pytest_collection_modifyitems(items):
            mark_integration(items)

        @pytest.fixture(scope="session")
        @starts_server
        def server():
            yield "a server"

        @pytest.fixture
        def through(server):
            return server
        """
    )
    pytester.makepyfile(
        """
        def test_direct(server): pass
        def test_through_another_fixture(through): pass
        def test_without_servers(tmp_path): pass
        """
    )
    fast = pytester.runpytest("-m", "not integration", "--collect-only", "-q", "--strict-markers")
    assert [line for line in fast.outlines if "::" in line] == [
        "test_a_fixture_declared_to_start_a_server_marks_its_tests_integration.py::test_without_servers"
    ]
    fast.assert_outcomes(deselected=2)
