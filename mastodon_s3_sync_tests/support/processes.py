"""Processes a test starts."""

from __future__ import annotations

import signal


def signals_as_from_a_terminal() -> None:
    """In a child process the test starts: SIGINT, SIGTERM and SIGQUIT at their defaults, as an
    interactive shell leaves them to a command. A test run started in the background (``cmd &``, as
    CI may start it) has them ignored, exec passes that on, and Ctrl-C would be a no-op."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
