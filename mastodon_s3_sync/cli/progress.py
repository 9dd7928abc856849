"""The terminal's view of progress: a live bar on a terminal, a line every few seconds elsewhere."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from mastodon_s3_sync.core.progress import in_flight_text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        megabytes = task.fields.get("bytes", 0) / 1e6
        in_flight = task.fields.get("in_flight", "")
        return Text(f"{megabytes:,.1f} MB  {task.speed or 0:,.0f} objects/s" + (f"  {in_flight}" if in_flight else ""))


def _bars() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


@contextmanager
def live_board() -> Iterator[Progress | None]:
    """One live display for the bars of tables synced at the same time (rich shows one live
    display at a time); None off a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    board = _bars()
    board.start()
    try:
        yield board
    finally:
        board.stop()


class TerminalProgress:
    """A live bar (objects, bytes, rate, requests in flight, ETA) when attached to a terminal, else a line
    every 10 s. With ``board`` the bar is one of that display's."""

    def __init__(self, label: str, total: int | None = None, interval: float = 10.0, board: Progress | None = None):
        self.label = label
        self.total = total or 0
        self.done = 0
        self.bytes = 0
        self.in_flight_words = ""
        self.interval = interval
        self.started = time.monotonic()
        self.last_line = self.started
        self.live = sys.stderr.isatty()
        self._bar: Progress | None = board
        self._own_bar = board is None

    def __enter__(self) -> TerminalProgress:
        if self.live:
            if self._own_bar:
                self._bar = _bars()
                self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total or None, bytes=0)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar and self._own_bar:
            self._bar.stop()
        elif not self._bar:
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

    def in_flight(self, requests: int, ceiling: int) -> None:
        self.in_flight_words = in_flight_text(requests, ceiling)
        if self._bar:
            self._bar.update(self._task, in_flight=self.in_flight_words)

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
            + (f", {self.in_flight_words}" if self.in_flight_words else "")
            + (f", about {remaining:,.0f} s left" if remaining else ""),
            file=sys.stderr,
            flush=True,
        )
