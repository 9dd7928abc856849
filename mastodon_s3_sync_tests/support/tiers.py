"""The two tiers: a test that starts a server is ``integration``, and ``pytest -m "not integration"``
(the fast tier) starts none.

A fixture that starts a server says so with ``@starts_server``; every test that uses it, directly or
through other fixtures, is marked ``integration`` at collection. Whatever else starts a server
program while a fast-tier test runs (a helper called in the test's body, a fixture not declared)
fails that test before the program starts, naming it: the mark follows what a test starts.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER_PROGRAMS = frozenset(
    {
        "rclone",
        "moto_server",
        "moto.server",
        "postgres",
        "pg_ctl",
        "initdb",
        "sshd",
        "celery",
        "dagster-webserver",
        "dagster-daemon",
    }
)
"""Programs (or ``python -m`` modules) that are servers, as ``mastodon_s3_sync_demo.servers`` and the
Dagster and Celery tests start them."""
DAGSTER_SERVER_COMMANDS = frozenset({"dev", "api", "code-server"})
"""``dagster`` subcommands that serve (the rest, such as ``definitions validate``, exit)."""


def starts_server(fixture_function: Callable) -> Callable:
    """Declare that a fixture starts a server: put it under ``@pytest.fixture``."""
    fixture_function.starts_server = True
    return fixture_function


def mark_integration(items: Sequence[pytest.Item]) -> None:
    """Mark ``integration`` every test that uses a fixture declared ``@starts_server``."""
    for item in items:
        definitions = getattr(item, "_fixtureinfo", None)
        if definitions is None:
            continue
        if any(
            getattr(definition.func, "starts_server", False)
            for name in item.fixturenames
            for definition in definitions.name2fixturedefs.get(name, ())
        ):
            item.add_marker(pytest.mark.integration)


def server_program(arguments: str | bytes | os.PathLike | Sequence) -> str | None:
    """The server a new process would run, by its program's name or its ``-m`` module; else None."""
    if isinstance(arguments, str | bytes | os.PathLike):
        words = os.fsdecode(arguments).split()
    else:
        words = [os.fsdecode(word) for word in arguments]
    if not words:
        return None
    program = Path(words[0]).name
    if "-m" in words[:-1]:
        program = words[words.index("-m") + 1]
    if program in SERVER_PROGRAMS:
        return program
    if program == "dagster" and len(words) > 1 and words[1] in DAGSTER_SERVER_COMMANDS:
        return f"dagster {words[1]}"
    return None


class ServerInFastTier(RuntimeError):
    """A test outside the ``integration`` tier tried to start a server."""


@contextmanager
def servers_refused(test: str) -> Iterator[None]:
    """While the block runs, starting a server program raises ``ServerInFastTier`` naming ``test``.

    ``subprocess.Popen`` is wrapped for the block only, not watched by an audit hook: a Python audit
    hook would run on every audited event of the whole session (``id()``, ``sys._getframe``...)."""
    original = subprocess.Popen.__init__

    def refuse_servers(popen, args, *positional, **options) -> None:
        program = server_program(args)
        if program is not None:
            raise ServerInFastTier(
                f"{test} is in the fast tier yet starts {program}: mark it "
                "@pytest.mark.integration, or start the server from a fixture declared @starts_server"
            )
        original(popen, args, *positional, **options)

    subprocess.Popen.__init__ = refuse_servers
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original
