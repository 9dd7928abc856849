"""The byte budget: object data held in memory at once, however large the objects are."""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import asynccontextmanager


class ByteBudget:
    """A semaphore counted in bytes; one reservation may always proceed alone."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[asyncio.Future] = deque()

    @asynccontextmanager
    async def reserve(self, size: int):
        size = min(size, self.capacity)
        while self.used and self.used + size > self.capacity:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.used += size
        try:
            yield
        finally:
            self.used -= size
            while self._waiters:  # every waiter checks again; only large objects ever wait
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
