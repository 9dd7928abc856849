"""The byte budget: object data held in memory at once, however large the objects are and however many
requests are in flight.

A GET's body starts arriving before its size is known, so the copier reserves what an unread response
may hold (``http.MOST_UNREAD``) before it sends the GET, then resizes the reservation to the size the
headers state. Growing waits for room; one reservation may always proceed alone, and when every
reservation that holds bytes is waiting to grow, the last to ask proceeds (else none would ever
release): the budget is then exceeded by at most one object.
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
        while size > self.size and not budget.may_grow(self, size):
            waiter = asyncio.get_running_loop().create_future()
            budget.waiters.append(waiter)
            budget.waiting_holders += self.size > 0
            try:
                await waiter
            finally:
                budget.waiting_holders -= self.size > 0
                if waiter in budget.waiters:
                    budget.waiters.remove(waiter)
        budget.holders += (size > 0) - (self.size > 0)
        budget.used += size - self.size
        budget.peak = max(budget.peak, budget.used)
        shrunk, self.size = size < self.size, size
        if shrunk:
            budget.wake()


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
            await reservation.resize(0)

    def may_grow(self, reservation: Reservation, size: int) -> bool:
        if self.used - reservation.size + size <= self.capacity or self.used == reservation.size:
            return True
        return reservation.size > 0 and self.waiting_holders == self.holders - 1  # all others wait to grow too

    def wake(self) -> None:
        while self.waiters:  # every waiter checks again
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
