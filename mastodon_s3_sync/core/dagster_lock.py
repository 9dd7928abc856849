"""One thread at a time in Dagster's code, when ``sync`` runs several tables' runs in its process.

Dagster's in-process execution is not thread-safe: every run's start reconfigures Python's
logging (``logging.config.dictConfig``, which takes every handler's lock), and that deadlocks
against another thread's run writing an event (seen: two table threads hung within a second).
So ``sync``'s table threads hold ``DAGSTER_LOCK`` while they are in Dagster, and a copy step
lets go of it for the copy itself, where the time goes: copies overlap each other and the other
tables' planning and run bookkeeping, and Dagster's code never runs in two threads at once.
Uncontended (a daemon's run worker, a single-table ``sync``) it costs a lock per call.
It is in core, importing nothing of Dagster's, because both sides hold it: the copy step
(``definitions/assets.py``) and ``sync``'s table threads (``execution/runs.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _ReleasableLock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = threading.local()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock (re-entrant within a thread)."""
        depth = getattr(self._depth, "value", 0)
        if depth == 0:
            self._lock.acquire()
        self._depth.value = depth + 1
        try:
            yield
        finally:
            self._depth.value -= 1
            if self._depth.value == 0:
                self._lock.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let other threads in while this one works outside Dagster; ``held`` takes it back
        for a moment (a log line)."""
        depth = getattr(self._depth, "value", 0)
        if depth:
            self._depth.value = 0
            self._lock.release()
        try:
            yield
        finally:
            if depth:
                self._lock.acquire()
                self._depth.value = depth


DAGSTER_LOCK = _ReleasableLock()
