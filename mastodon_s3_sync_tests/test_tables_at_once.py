"""The pieces that let `sync` run several tables at once in one process: progress heard per
thread, and Dagster's code entered by one thread at a time (fast tier: no servers)."""

from __future__ import annotations

import threading

from mastodon_s3_sync.core.dagster_lock import DAGSTER_LOCK
from mastodon_s3_sync.core.progress import ProgressHub


class Listener:
    def __init__(self) -> None:
        self.heard: list[tuple[str, int]] = []

    def planned(self, objects: int) -> None:
        self.heard.append(("planned", objects))

    def advanced(self, objects: int, bytes_copied: int) -> None:
        self.heard.append(("advanced", objects))


def in_thread(function) -> None:
    thread = threading.Thread(target=function)
    thread.start()
    thread.join()


def test_a_thread_only_listener_hears_its_own_thread_and_a_global_one_hears_all() -> None:
    hub = ProgressHub()
    everywhere, mine, theirs = Listener(), Listener(), Listener()
    ready, done = threading.Event(), threading.Event()

    def other_table() -> None:
        with hub.listening(theirs, this_thread_only=True):
            ready.set()
            hub.planned(7)
            hub.advanced(3, 30)
            done.wait()

    with hub.listening(everywhere), hub.listening(mine, this_thread_only=True):
        thread = threading.Thread(target=other_table)
        thread.start()
        ready.wait()
        hub.planned(5)
        done.set()
        thread.join()
        assert hub.active

    assert mine.heard == [("planned", 5)]
    assert theirs.heard == [("planned", 7), ("advanced", 3)]
    assert sorted(everywhere.heard) == [("advanced", 3), ("planned", 5), ("planned", 7)]
    assert not hub.active, "every listener left"
    in_thread(lambda: hub.planned(1))  # nobody listens: nothing to hear, nothing breaks


def test_the_lock_is_reentrant_and_released_lets_another_thread_in() -> None:
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        with DAGSTER_LOCK.held():
            order.append("other in Dagster")
            inside.set()

    with DAGSTER_LOCK.held(), DAGSTER_LOCK.held():  # re-entrant, as a run inside a table's turn is
        thread = threading.Thread(target=other)
        thread.start()
        assert not inside.wait(0.2), "held: the other thread waits"
        with DAGSTER_LOCK.released():
            assert inside.wait(5), "released: the other thread gets in"
            with DAGSTER_LOCK.held():  # a log line from the copy takes it back for a moment
                order.append("log line")
        order.append("back in Dagster")
        thread.join()
    assert order == ["other in Dagster", "log line", "back in Dagster"]
    with DAGSTER_LOCK.released():  # not held (a daemon's run worker): nothing to give up
        with DAGSTER_LOCK.held():
            pass
