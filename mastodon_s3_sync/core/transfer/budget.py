"""The byte budget: object data held in memory at once, however large the objects are and however many
requests are in flight.

A GET's body starts arriving before its size is known, so the copier reserves what an unread response
may hold (``http.MOST_UNREAD``) before it sends the GET, then resizes the reservation to the size the
headers state. Growing waits for room, first come first served (one waiter at a time is woken to check,
so hundreds of waiting GETs cost nothing per release); one reservation may always proceed alone, and
when every reservation that holds bytes is waiting to grow, the first in line proceeds (else none would
ever release): the budget is then exceeded, by about one object each time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import asynccontextmanager


class Reservation:
    __slots__ = ("budget", "size")

    def __init__(self, budget: ByteBudget):
        self.budget = budget
        self.size = 0

    async def resize(self, size: int) -> None:
        """Hold ``size`` bytes (at most the budget's capacity) instead of what is held now."""
        budget = self.budget
        size = min(size, budget.capacity)
        if size > self.size and (budget.waiters or not budget.may_grow(self, size)):
            await budget.wait_turn(self, size)
        budget.holders += (size > 0) - (self.size > 0)
        budget.used += size - self.size
        budget.peak = max(budget.peak, budget.used)
        self.size = size
        budget.wake()  # room left, or made: the next in line checks


class ByteBudget:
    """A semaphore counted in bytes whose reservations can be resized (see the module's docstring)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self.peak = 0
        self.holders = 0
        """Reservations holding bytes."""
        self.waiting_holders = 0
        """Of those, the ones waiting to grow."""
        self.waiters: deque[asyncio.Future] = deque()

    @asynccontextmanager
    async def reserve(self, size: int):
        reservation = Reservation(self)
        try:
            await reservation.resize(size)
            yield reservation
        finally:
            await reservation.resize(0)  # never waits

    def may_grow(self, reservation: Reservation, size: int) -> bool:
        """There is room, or the reservation is alone."""
        return self.used - reservation.size + size <= self.capacity or self.used == reservation.size

    async def wait_turn(self, reservation: Reservation, size: int) -> None:
        """Wait in line until ``reservation`` may grow to ``size``, or every holder waits (none would release)."""
        holding = reservation.size > 0
        self.waiting_holders += holding
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        if holding:
            self.wake()  # one more holder waits: maybe all of them now, and the first in line must proceed
        granted = False
        try:
            while True:
                await waiter
                if self.may_grow(reservation, size) or self.waiting_holders == self.holders:
                    granted = True
                    return
                waiter = asyncio.get_running_loop().create_future()
                self.waiters.appendleft(waiter)  # still first in line
        finally:
            self.waiting_holders -= holding
            if waiter in self.waiters:
                self.waiters.remove(waiter)
            elif not granted:
                self.wake()  # woken, then cancelled: the turn passes on

    def wake(self) -> None:
        """The first in line checks again."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
