"""Progress of the sync in this process, for whoever listens (the command line's live bar).

Ops report here as well as to the Dagster log; nothing listens in a daemon's
run worker, so there it costs nothing. Listeners get deltas: objects planned,
objects done (copied, skipped or missing) and bytes copied; those that want it
(``InFlightListener``) the requests in flight the copy's limiters allow now. A
listener may hear only its own thread: `sync` runs several tables' runs at once,
one thread each.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, runtime_checkable


class ProgressListener(Protocol):
    def planned(self, objects: int) -> None: ...

    def advanced(self, objects: int, bytes_copied: int) -> None: ...


@runtime_checkable
class InFlightListener(Protocol):
    def in_flight(self, requests: int, ceiling: int) -> None:
        """The requests in flight the busier endpoint's limiter allows now, and its ceiling."""


class ProgressHub:
    def __init__(self) -> None:
        self._listeners: list[tuple[ProgressListener, int | None]] = []
        """Each listener with the thread it hears (None: every thread)."""

    def _current(self) -> list[ProgressListener]:
        thread = threading.get_ident()
        return [listener for listener, only in self._listeners if only is None or only == thread]

    @property
    def active(self) -> bool:
        return bool(self._current())

    @contextmanager
    def listening(self, listener: ProgressListener, *, this_thread_only: bool = False) -> Iterator[None]:
        entry = (listener, threading.get_ident() if this_thread_only else None)
        self._listeners.append(entry)
        try:
            yield
        finally:
            self._listeners.remove(entry)

    def planned(self, objects: int) -> None:
        for listener in self._current():
            listener.planned(objects)

    def advanced(self, objects: int, bytes_copied: int) -> None:
        for listener in self._current():
            listener.advanced(objects, bytes_copied)

    def in_flight(self, requests: int, ceiling: int) -> None:
        for listener in self._current():
            if isinstance(listener, InFlightListener):
                listener.in_flight(requests, ceiling)


PROGRESS = ProgressHub()


def in_flight_text(requests: int, ceiling: int) -> str:
    """The progress line's words for the requests in flight: "in flight 180 (max 512)"."""
    return f"in flight {requests} (max {ceiling})"


class BatchDeltas:
    """Turns a batch's cumulative progress reports into deltas for the hub."""

    def __init__(self, hub: ProgressHub = PROGRESS):
        self.hub = hub
        self.objects = 0
        self.bytes = 0

    def __call__(self, done: int, bytes_copied: int, in_flight: int = 0, max_in_flight: int = 0) -> None:
        if in_flight:
            self.hub.in_flight(in_flight, max_in_flight)
        self.hub.advanced(done - self.objects, bytes_copied - self.bytes)
        self.objects, self.bytes = done, bytes_copied
