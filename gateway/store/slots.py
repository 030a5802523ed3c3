"""Storage read slots shared fairly: one client's storm cannot starve another client's read.

``FairSlots`` admits at most ``limit`` holders at a time. Waiters queue per owner, and a freed
slot goes to the owner after the last one served (round-robin), so a client with thousands of
reads waiting and a client with one are served alternately. The owner of a read is the
connection it is for, taken from :data:`READER`, which the connection sets while it hands a
message to the server (tasks created meanwhile inherit it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextvars import ContextVar

__all__ = ["READER", "FairSlots"]

READER: ContextVar[object] = ContextVar("recordgate_reader", default=None)
"""Whom storage reads started in this context are for (a connection; ``None``: the server)."""


class FairSlots:
    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiting: dict[object, deque[asyncio.Future[None]]] = {}
        """Owners in turn order: the first is served next, then moves to the back."""

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot now (``/metrics``: loads waiting)."""
        return sum(len(queue) for queue in self._waiting.values())

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        owner = READER.get()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.get(owner)
        if queue is None:
            queue = self._waiting[owner] = deque()
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot just as the caller gave up: pass it on
            else:
                queue.remove(future)
                if not queue and self._waiting.get(owner) is queue:
                    del self._waiting[owner]
            raise

    def release(self) -> None:
        waiting = self._waiting
        while waiting:
            owner = next(iter(waiting))
            queue = waiting.pop(owner)
            future = queue.popleft()
            if queue:
                waiting[owner] = queue  # to the back of the turn order
            if not future.done():
                future.set_result(None)
                return
        self._free += 1
