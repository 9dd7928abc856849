"""The late window (``core.changes``): what a sync records of the rows it read, and when a
partition is stale against that record. Pure logic, no servers."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from mastodon_s3_sync.core.changes import LastRead, LateRows, PartitionCheck, row_changed_at, stamp_columns
from mastodon_s3_sync.core.id_ranges import MIN_ID
from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync.core.referenced_objects import ReadStats
from mastodon_s3_sync.definitions.partitions import last_read, read_metadata
from mastodon_s3_sync.definitions.sensors import _next_id

READ = datetime(2025, 5, 1, 12, 0, 0, 123456)
"""The database's clock when the sync read the partition."""
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def late_rows(*rows: tuple[int, datetime]) -> LateRows:
    found = LateRows()
    for row_id, changed_at in rows:
        found = found.plus(row_id, changed_at)
    return found


def test_fingerprint_is_a_set_of_id_and_change_time():
    a, b, c = (1, READ - MINUTE), (2, READ - 2 * MINUTE), (3, READ)
    assert late_rows(a, b, c) == late_rows(c, a, b), "order-independent"
    assert late_rows(a, b, c).count == 3 and late_rows().count == 0
    assert late_rows(a, b) != late_rows(a, (2, READ - 3 * MINUTE)), "the same row with another stamp differs"
    assert late_rows(a, b) != late_rows(a, (4, b[1])), "another row with the same stamp differs"
    assert late_rows(a) != late_rows(a, b) and late_rows(b) != late_rows()
    assert all(0 <= late_rows(*[(i, READ)] * i).fingerprint < 2**64 for i in range(1, 50))


def test_row_changed_at_is_the_latest_stamp_ignoring_nulls():
    accounts = stamp_columns(TABLES["accounts"])
    assert accounts == ("avatar_updated_at", "header_updated_at")
    older_avatar = {"avatar_updated_at": READ - HOUR, "header_updated_at": READ - MINUTE}
    assert row_changed_at(older_avatar, accounts) == READ - MINUTE
    assert row_changed_at({"avatar_updated_at": READ, "header_updated_at": READ - MINUTE}, accounts) == READ
    assert row_changed_at({"avatar_updated_at": None, "header_updated_at": READ}, accounts) == READ
    assert row_changed_at({"avatar_updated_at": None, "header_updated_at": None}, accounts) is None
    assert row_changed_at({"image_updated_at": READ}, stamp_columns(TABLES["custom_emojis"])) == READ


RECORDED = [(10, READ - 5 * MINUTE), (11, READ - 59 * MINUTE)]
"""The rows the sync read in its window (READ - 1 h, READ]."""


@pytest.mark.parametrize(
    ("now_in_window", "recorded", "stale", "why"),
    [
        ([], [], False, "nothing changed near the read"),
        (RECORDED, RECORDED, False, "the window holds what the sync read"),
        (RECORDED[::-1], RECORDED, False, "in another order"),
        ([*RECORDED, (12, READ - 5 * MINUTE)], RECORDED, True, "a row committed after the read, stamped before"),
        ([(12, READ - MINUTE)], [], True, "a row stamped by an app clock a minute slow"),
        ([(12, READ)], [], True, "stamped at the read's very time, committed after it"),
        ([(10, READ - 2 * MINUTE), RECORDED[1]], RECORDED, True, "a row stamped again, still before the read"),
        (RECORDED[:1], RECORDED, True, "a row read then is gone (deleted): one harmless re-sync"),
        ([], None, False, "recorded before late windows: nothing in the window"),
        (RECORDED, None, True, "recorded before late windows: rows in it are late once"),
    ],
)
def test_staleness_within_the_window(now_in_window, recorded, stale, why):
    read = LastRead(READ, READ - HOUR, None if recorded is None else late_rows(*recorded))
    check = PartitionCheck(read)
    for row_id, changed_at in now_in_window:
        check.see(row_id, changed_at)
    assert check.stale is stale, why


@pytest.mark.parametrize(
    ("changed_at", "stale"),
    [
        (READ + timedelta(microseconds=1), True),  # changed after the read: stale, as before windows
        (READ + HOUR, True),
        (READ - HOUR, False),  # the window's start is outside it: a commit that late is beyond the overlap
        (READ - 2 * HOUR, False),
    ],
)
def test_outside_the_window(changed_at, stale):
    check = PartitionCheck(LastRead(READ, READ - HOUR, LateRows()))
    check.see(7, changed_at)
    assert check.stale is stale


def test_a_sync_records_its_window_as_a_later_check_reads_it():
    """The plan's ``ReadStats`` and the check's ``PartitionCheck`` fold the same rows alike: a
    partition read with rows in its window is not stale on its own; one more row is."""
    stats = ReadStats(late_window=HOUR)
    stats.read_at(READ)
    rows = [(1, READ - 2 * HOUR), (2, READ - 30 * MINUTE), (3, None), (4, READ - HOUR), (5, READ)]
    for row_id, changed_at in rows:
        stats.read_row(row_id, changed_at)
    assert stats.rows == 5
    assert stats.last_read == LastRead(READ, READ - HOUR, late_rows((2, READ - 30 * MINUTE), (5, READ)))

    check = PartitionCheck(stats.last_read)
    for row_id, changed_at in rows:
        if changed_at is not None and changed_at > READ - HOUR:  # what the check's query returns
            check.see(row_id, changed_at)
    assert not check.stale
    check.see(6, READ - 10 * MINUTE)
    assert check.stale


def test_state_names_each_needed_resync_once():
    read = LastRead(READ, READ - HOUR, LateRows())
    first, again, other = PartitionCheck(read), PartitionCheck(read), PartitionCheck(read)
    first.see(1, READ + MINUTE)
    again.see(1, READ + MINUTE)
    other.see(1, READ + 2 * MINUTE)
    assert first.state == again.state, "the same finding: one run key while its run is pending"
    assert other.state != first.state, "another change: another run"
    resynced = PartitionCheck(LastRead(READ + HOUR, READ, LateRows()))
    resynced.see(1, READ + MINUTE)
    assert resynced.state != first.state, "after a re-sync, a new finding is a new run"


def test_materialization_metadata_round_trip():
    read = LastRead(READ, READ - HOUR, late_rows(*RECORDED))
    assert last_read(read_metadata(read), overlap=5 * MINUTE) == read, "the recorded window, not today's setting"
    older = {"db_snapshot_at": read_metadata(read)["db_snapshot_at"]}
    assert last_read(older, overlap=5 * MINUTE) == LastRead(READ, READ - 5 * MINUTE, None)


def test_sensor_cursor_keeps_the_position_of_older_cursors():
    """A sensor cursor written before the late window (version 2, with its own look-back) keeps
    its pass's position; a version-1 one (a time only) starts a pass."""
    assert _next_id({"since": READ.isoformat(), "started": READ.isoformat(), "next": 1234}) == 1234
    assert _next_id({"next": 77}) == 77
    assert _next_id(READ.isoformat()) == MIN_ID and _next_id(None) == MIN_ID
