"""Progress of the sync in this process, for whoever listens (the command line's live bar).

Ops report here as well as to the Dagster log; nothing listens in a daemon's
run worker, so there it costs nothing. Listeners get deltas: objects planned,
objects done (copied, skipped or missing) and bytes copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class ProgressListener(Protocol):
    def planned(self, objects: int) -> None: ...

    def advanced(self, objects: int, bytes_copied: int) -> None: ...


class ProgressHub:
    def __init__(self) -> None:
        self._listeners: list[ProgressListener] = []

    @property
    def active(self) -> bool:
        return bool(self._listeners)

    @contextmanager
    def listening(self, listener: ProgressListener) -> Iterator[None]:
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    def planned(self, objects: int) -> None:
        for listener in self._listeners:
            listener.planned(objects)

    def advanced(self, objects: int, bytes_copied: int) -> None:
        for listener in self._listeners:
            listener.advanced(objects, bytes_copied)


PROGRESS = ProgressHub()


class BatchDeltas:
    """Turns a batch's cumulative progress reports into deltas for the hub."""

    def __init__(self, hub: ProgressHub = PROGRESS):
        self.hub = hub
        self.objects = 0
        self.bytes = 0

    def __call__(self, done: int, bytes_copied: int) -> None:
        self.hub.advanced(done - self.objects, bytes_copied - self.bytes)
        self.objects, self.bytes = done, bytes_copied
