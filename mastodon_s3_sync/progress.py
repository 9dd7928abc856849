"""Progress of the sync in this process, for the command line's live bar or periodic lines.

Ops report here as well as to the Dagster log; nothing listens in a daemon's
run worker, so there it costs nothing. Listeners get deltas: objects planned,
objects done (copied, skipped or missing) and bytes copied.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


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


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        megabytes = task.fields.get("bytes", 0) / 1e6
        return Text(f"{megabytes:,.1f} MB  {task.speed or 0:,.0f} objects/s")


class TerminalProgress:
    """A live bar (objects, bytes, rate, ETA) when attached to a terminal, else a line every 10 s."""

    def __init__(self, label: str, total: int | None = None, interval: float = 10.0):
        self.label = label
        self.total = total or 0
        self.done = 0
        self.bytes = 0
        self.interval = interval
        self.started = time.monotonic()
        self.last_line = self.started
        self.live = sys.stderr.isatty()
        self._bar: Progress | None = None

    def __enter__(self) -> TerminalProgress:
        if self.live:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total or None, bytes=0)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar:
            self._bar.stop()
        else:
            self._print_line()

    def planned(self, objects: int) -> None:
        self.total += objects
        if self._bar:
            self._bar.update(self._task, total=self.total)

    def advanced(self, objects: int, bytes_copied: int) -> None:
        self.done += objects
        self.bytes += bytes_copied
        if self._bar:
            self._bar.update(self._task, advance=objects, bytes=self.bytes)
        elif time.monotonic() - self.last_line >= self.interval:
            self._print_line()

    def _print_line(self) -> None:
        self.last_line = time.monotonic()
        elapsed = max(1e-6, self.last_line - self.started)
        rate = self.done / elapsed
        remaining = (self.total - self.done) / rate if rate and self.total > self.done else 0
        of_total = f"/{self.total}" if self.total else ""
        print(
            f"{self.label}: {self.done}{of_total} objects"
            + (f", {self.bytes / 1e6:,.1f} MB" if self.bytes else "")
            + f", {rate:,.0f} objects/s"
            + (f", about {remaining:,.0f} s left" if remaining else ""),
            file=sys.stderr,
            flush=True,
        )
