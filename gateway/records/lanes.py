"""Per-record serialisation: the operations on one record run one at a time, in arrival order.

Invariants:

* A record in the cache with no lane is served synchronously, by ``Lanes.run`` or by a caller
  that found it with ``Lanes.free`` (the hot path).
* Anything that must wait (a cache miss, a delete, a NOTIFY re-read) opens a *lane* for the
  name: one task that loads the record once, then runs each queued operation on the snapshot
  the previous one returned, and closes when its queue is empty. Later operations on that name
  queue behind it, so no write can overtake another or land on a stale snapshot.
* Every queued operation has a future that resolves once it ran, failed or was abandoned; a
  connection awaits only its own, which keeps per-client order.
* A bulk message (``each``) reads the names it misses in the cache with ``load_many``, in
  chunks of ``BATCH`` one after the other, and runs their operations on what that found; other
  names (cached, or with a lane) run or queue at once, at most ``per_message`` waiting at a
  time. So a client asking for 30,000 uncached names holds one storage read at a time, not
  30,000, and the store's cap on reads is shared fairly with everyone else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator

from ..exceptions import StorageError
from ..limits import ThrottledLog
from ..store import Record, RecordStore

__all__ = ["Lanes", "OnError", "Op"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

BATCH = 256
"""Names per storage read of a bulk message's cache misses."""

Op = Callable[[Record | None], Record | Awaitable[Record | None] | None]
"""An operation on one record: gets the current snapshot, returns the snapshot after it."""
OnError = Callable[[Exception], None]
"""Told when an operation failed, or could not run because loading the record failed."""


class _Lane:
    """Operations on one name waiting behind asynchronous work, in arrival order."""

    __slots__ = ("queue", "task")

    def __init__(self) -> None:
        self.queue: deque[tuple[Op, OnError, asyncio.Future[None]]] = deque()
        self.task: asyncio.Task[None] | None = None
        """The draining task; held here because the event loop keeps only a weak reference."""


class Lanes:
    """The open lanes of ``store``'s records, by name."""

    def __init__(self, store: RecordStore, *, per_message: int = 16) -> None:
        self._store = store
        self._lanes: dict[str, _Lane] = {}
        self._per_message = per_message

    def free(self, name: str) -> Record | None:
        """``name``'s snapshot if it is cached and no lane is open for it: an operation may
        then run on it at once, synchronously, as ``run`` would run it."""
        return None if name in self._lanes else self._store.cached(name)

    def run(
        self, name: str, op: Op, on_error: OnError, *, sync: bool = True
    ) -> Awaitable[None] | None:
        """Run ``op`` on ``name``'s current snapshot after every operation that came before.

        A ``sync`` op on a cached record with no lane runs right here and returns None;
        otherwise it queues, and the returned future resolves once it ran.
        """
        lane = self._lanes.get(name)
        if lane is None:
            record = self._store.cached(name) if sync else None
            if record is not None:
                op(record)
                return None
            lane = self._lanes[name] = _Lane()
            lane.task = asyncio.create_task(self._drain(name, lane))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.queue.append((op, on_error, done))
        return done

    def each(
        self,
        names: Iterable[str],
        op_for: Callable[[str], Op],
        on_error_for: Callable[[str], OnError],
        *,
        sync: bool = True,
        finish: Callable[[], None] | None = None,
    ) -> Awaitable[None] | None:
        """``run`` an op on every name in turn; then ``finish``, once all of them ran.

        None if everything ran synchronously (``finish`` included), else what to await. With
        ``sync`` ops, names neither cached nor in a lane are read in batches (``load_many``).
        """
        pending: list[Awaitable[None]] = []
        misses: list[str] = []
        store, lanes = self._store, self._lanes
        rest = iter(names)
        for name in rest:
            if sync and name not in lanes and store.cached(name) is None:
                misses.append(name)
                continue
            waiter = self.run(name, op_for(name), on_error_for(name), sync=sync)
            if waiter is not None:
                pending.append(waiter)
                if len(pending) >= self._per_message:
                    return self._window(
                        deque(pending), misses, rest, op_for, on_error_for, sync, finish
                    )
        if not pending and not misses:
            if finish is not None:
                finish()
            return None
        if finish is None and len(pending) == 1 and not misses:
            return pending[0]
        return self._window(deque(pending), misses, iter(()), op_for, on_error_for, sync, finish)

    async def _window(
        self,
        window: deque[Awaitable[None]],
        misses: list[str],
        rest: Iterator[str],
        op_for: Callable[[str], Op],
        on_error_for: Callable[[str], OnError],
        sync: bool,
        finish: Callable[[], None] | None,
    ) -> None:
        """The rest of ``each``: at most ``per_message`` waiting, then the misses in batches."""
        for name in rest:
            if sync and name not in self._lanes and self._store.cached(name) is None:
                misses.append(name)
                continue
            while len(window) >= self._per_message:
                await window.popleft()
            waiter = self.run(name, op_for(name), on_error_for(name), sync=sync)
            if waiter is not None:
                window.append(waiter)
        for start in range(0, len(misses), BATCH):
            chunk = misses[start : start + BATCH]
            try:
                found = await self._store.load_many(chunk)
            except Exception as exc:
                _throttled.warning("loading %d records failed: %s", len(chunk), exc)
                for name in chunk:
                    on_error_for(name)(exc)
                continue
            # No await from here to the end of the chunk: what was found is current.
            for name in chunk:
                op, on_error = op_for(name), on_error_for(name)
                if name in self._lanes:  # opened meanwhile: queue behind it
                    waiter = self.run(name, op, on_error, sync=sync)
                    if waiter is not None:
                        window.append(waiter)
                    continue
                record = self._store.cached(name)
                try:
                    op(record if record is not None else found.get(name))
                except Exception as exc:
                    _throttled.exception("record operation on %r failed", name)
                    on_error(exc)
        await _then(list(window), finish)

    def defer(self, name: str, op: Op) -> bool:
        """Queue ``op`` at the end of ``name``'s lane (nobody waits, failures are dropped) so it
        keeps arrival order and later operations see its snapshot; False if there is no lane."""
        lane = self._lanes.get(name)
        if lane is None:
            return False
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.queue.append((op, _ignore, done))
        return True

    async def _drain(self, name: str, lane: _Lane) -> None:
        try:
            record = self._store.cached(name)
            if record is None:
                try:
                    record = await self._store.load(name)
                except Exception as exc:
                    _throttled.warning("loading record %r failed: %s", name, exc)
                    while lane.queue:
                        _, on_error, done = lane.queue.popleft()
                        on_error(exc)
                        _release(done)
                    return
            while lane.queue:
                op, on_error, done = lane.queue.popleft()
                try:
                    result = op(record)
                    record = await result if isinstance(result, Awaitable) else result
                except StorageError as exc:
                    _throttled.warning("record operation on %r failed: %s", name, exc)
                    on_error(exc)
                except Exception as exc:
                    _throttled.exception("record operation on %r failed", name)
                    on_error(exc)
                finally:
                    _release(done)
        finally:
            del self._lanes[name]
            for _, _, done in lane.queue:  # only if cancelled: release whoever waits
                _release(done)


async def _then(pending: list[Awaitable[None]], finish: Callable[[], None] | None) -> None:
    for waiter in pending:
        await waiter
    if finish is not None:
        finish()


def _release(done: asyncio.Future[None]) -> None:
    if not done.done():  # its waiter may have been cancelled (the connection went away)
        done.set_result(None)


def _ignore(exc: Exception) -> None:
    pass
