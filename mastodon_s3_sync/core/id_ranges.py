"""Id-range partitions: dynamic partitions keyed ``<lo>-<hi>`` (zero-padded, inclusive).

Ranges tile the whole bigint id space without gaps: the first starts at the
smallest bigint (so the ``-99`` instance actor and any id ever inserted below
the rest are covered), each next one starts right after the previous one, and
a range never changes once created. New ranges are cut with keyset steps on
the primary key index (``WHERE id > last ORDER BY id OFFSET n-1 LIMIT 1``),
so cutting costs a walk over the new rows only, never a scan of the table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

MIN_ID = -(2**63)
KEY_DIGITS = 19
_KEY = re.compile(r"^(-?\d+)-(-?\d+)$")


@dataclass(frozen=True, order=True)
class IdRange:
    lo: int
    hi: int

    @property
    def key(self) -> str:
        return f"{self.lo:0{KEY_DIGITS}d}-{self.hi:0{KEY_DIGITS}d}"

    def __contains__(self, record_id: int) -> bool:
        return self.lo <= record_id <= self.hi


def parse_partition_key(key: str) -> IdRange:
    match = _KEY.match(key)
    if not match or int(match.group(1)) > int(match.group(2)):
        raise ValueError(f"{key!r} is not an id-range partition key (<lo>-<hi>)")
    return IdRange(int(match.group(1)), int(match.group(2)))


def last_range_end(existing_keys: Sequence[str]) -> int | None:
    """The highest id already covered, or None before the first partition."""
    return max((parse_partition_key(key).hi for key in existing_keys), default=None)


def next_ranges(connection, table: str, covered_up_to: int | None, rows_per_partition: int, *, include_tail: bool):
    """The ranges to add after ``covered_up_to``: full ones of ``rows_per_partition``
    rows and, with ``include_tail``, one last range up to the current maximum id."""
    if rows_per_partition < 1:
        raise ValueError("rows per partition must be at least 1")
    ranges: list[IdRange] = []
    lo = MIN_ID if covered_up_to is None else covered_up_to + 1
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"SELECT id FROM {table} WHERE id >= %s ORDER BY id OFFSET %s LIMIT 1",
                (lo, rows_per_partition - 1),
            )
            row = cursor.fetchone()
            if row is None:
                break
            ranges.append(IdRange(lo, row[0]))
            lo = row[0] + 1
        if include_tail:
            cursor.execute(f"SELECT max(id) FROM {table} WHERE id >= %s", (lo,))
            (highest,) = cursor.fetchone()
            if highest is not None:
                ranges.append(IdRange(lo, highest))
    return ranges
