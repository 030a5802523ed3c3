"""``CachedStore``: a bounded in-process cache in front of a connector, flushed write-behind.

Writes land in the cache and a per-record queue; a single flusher task writes them to storage
in rounds: every ``interval`` seconds, at once when half of ``max_pending`` is queued, and
whenever someone awaits ``durable``; each round is written in calls of ``batch_size``
operations. What operators can rely on:

* **Coalescing** (on by default): only the newest snapshot of a record is written; a delete
  supersedes queued writes of the name. With it off, every version is written, in order.
* **Per-record ordering**: one batch is in flight at a time and holds at most one operation per
  record, so an older snapshot never lands after a newer one or after a delete.
* **Bounded memory**: the cache evicts clean records only (least recently used first), past
  ``max_records`` records or ``max_bytes`` bytes of JSON (each record's ``size``, an estimate
  the writer computed from lengths it knew; measured once when loaded from storage); at
  ``max_pending`` queued operations plus acknowledgements waiting in ``durable``, or when the
  records with unflushed writes alone hold ``max_bytes``, ``put``/``delete`` raise
  ``BackPressure`` and change nothing (so writes that coalesce into one
  pending snapshot still count through their waiting acks). Whatever was accepted is kept until
  it is in storage.
* **Bounded, fair reads**: at most ``max_concurrent_loads`` storage reads run at once; the rest
  wait in turns by connection (``slots.FairSlots``), so one client's storm of reads and another
  client's single read are served alternately, not one after the other.
* **Retries**: while storage raises ``StorageUnavailable``/``StorageTimeout`` the flusher retries
  with exponential backoff up to ``retry_max``, and the store keeps serving from the cache.
  Any other error (``StorageRejected``, or whatever a connector or its driver raises, e.g.
  ``UnicodeEncodeError``) is about the data: the batch is written one operation at a time, and
  an operation that fails alone is failed for good: counted, logged once, and reported to
  whoever awaits its durability. Nothing a client sends can stop the flusher. A refused
  snapshot with nothing newer queued is then replaced with storage's state (``_revert``:
  storage's data at a version above the refused one, pushed through ``on_external_change``
  and written back; a record storage lacks is dropped), so no reader is served, as current,
  a state storage never holds; counted in ``stats.reverted``.
* **Durability on demand**: ``durable(name, version)`` expedites the record and returns once that
  version (or a newer state) is in storage; the record handler awaits it before a write ack.
  ``delete`` returns a future of the same promise for the deletion, awaited before
  DELETE_SUCCESS.
* **Shutdown**: ``close`` flushes everything pending within ``shutdown_timeout`` and logs, at
  ERROR, every record it could not write.
* **Counters**: ``stats`` (pending, dirty, cached, flushed, retried, failed, conflicts).

Conflicts: storage may hold a newer snapshot than the one flushed (a data team, another server).
The policy decides the record's new state from base (what we last knew storage held), ours (the
newest snapshot in the cache, or our delete) and theirs (the stored snapshot):
``storage-wins`` takes theirs and drops our unflushed changes of the record; ``gateway-wins``
keeps ours; ``merge`` takes :func:`gateway.store.merge.merge` of the three (ours wins a clash;
a delete of ours wins over their change, since there are no fields left to merge).

Acknowledgements stay honest: whoever awaits the durability of a write (or delete) that the
resolved state does not keep gets ``WriteDiscarded``: under ``storage-wins`` every such waiter
(our unflushed operations were dropped), under ``merge`` those whose change the merged record
lost (:func:`gateway.store.merge.keeps`; with ours winning every clash, none today). Under
``gateway-wins``, and for what is kept, the waiters resolve once the resolved state is stored.

Versions stay monotonic for clients. A resolved state equal to theirs whose stored version is
above ours is adopted as it is stored. Otherwise the state gets version
``max(theirs + 1, ours + 1)`` if it differs from what clients were sent, or
``max(theirs + 1, ours)`` if it is ours unchanged, and is written back so that storage and
clients agree. Whenever the version or data that clients saw changes, ``on_external_change``
is called with the new record so the handler can push it to subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from connectors.base import Connector, Delete, Outcome, Put, Snapshot, WriteResult
from gateway.config import CacheConfig, WriteBehindConfig
from gateway.exceptions import (
    BackPressure,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
    WriteDiscarded,
    storage_error_kind,
)
from gateway.histogram import Histogram
from gateway.limits import ThrottledLog

from .base import Record, StoreStats
from .merge import json_equal, keeps, merge
from .slots import FairSlots

__all__ = ["CachedStore"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

Op = Record | Delete
"""A queued operation: a snapshot to store (a ``Record`` is the connector's ``Put``) or a delete."""


@dataclass(slots=True)
class _Dirty:
    """The storage-bound queue of one record. ``ops[0]`` is in flight while ``in_flight``."""

    ops: list[Op]
    """Oldest first; with coalescing at most [delete, newest snapshot]. A plain list: most
    records hold one operation, and a list is the cheapest container to allocate per write."""
    base: Any = None
    """Data we last knew storage to hold (``None``: nothing or unknown); the merge base."""
    in_flight: bool = False
    stored_version: int = -1
    """The newest version this queue has put into storage."""
    waiters: list[tuple[int, asyncio.Future[None]]] | None = None
    """(``_key`` of the awaited operation, its future), for ``durable`` and deletions."""


class CachedStore:
    """A :class:`~gateway.store.base.RecordStore` over a connector; see the module docstring."""

    def __init__(
        self,
        connector: Connector,
        *,
        cache: CacheConfig | None = None,
        write_behind: WriteBehindConfig | None = None,
        max_concurrent_loads: int = 64,
    ) -> None:
        self.connector = connector
        self.cache_config = cache or CacheConfig()
        self.config = write_behind or WriteBehindConfig()
        self._bytes = 0  # the ``size`` of every record in _clean and _pinned
        self._dirty_bytes = 0  # ... in _pinned: past max_bytes, writes are refused
        self._max_bytes = self.cache_config.max_bytes
        self._waiting = 0  # futures in durable(): they hold memory the cap must count
        self._load_slots = FairSlots(max_concurrent_loads)
        self._forgets = 0  # bulk reads that overlap a forget() do not cache what they found
        self.on_external_change: Callable[[str, Record | None], None] | None = None
        self._clean: OrderedDict[str, Record] = OrderedDict()  # LRU order, evictable
        self._pinned: dict[str, Record] = {}  # records with unflushed writes: never evicted
        self._queue: dict[str, _Dirty] = {}  # insertion order is flush order
        self._expedited: dict[str, None] = {}  # names someone awaits in durable()
        self._loading: dict[str, asyncio.Task[Snapshot | None]] = {}
        self._pending = 0
        self._flushed = self._retried = self._failed = self._conflicts = 0
        self._flush_seconds = Histogram()
        self._errors: dict[str, int] = {}
        self._reverts: set[asyncio.Task[None]] = set()  # _revert tasks
        self._reverted = 0
        self._round = 0  # names still to write in the current flush round
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._closing = False
        self._flush_now = False
        self._coalesce = self.config.coalesce
        self._batch_size = self.config.batch_size
        # Past this many pending writes a round starts at once, long before the cap is reached.
        self._high_water = max(1, self.config.max_pending // 2)
        self._flusher: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await self.connector.open()
        self._flusher = asyncio.create_task(self._run(), name="recordgate-flusher")

    async def close(self) -> None:
        """Flush everything pending (within ``shutdown_timeout``), then close the connector."""
        if self._flusher is None:
            return
        self._closing = True
        self._wake.set()
        for revert in list(self._reverts):  # a put after the flusher stopped would be lost
            revert.cancel()
        try:
            async with asyncio.timeout(self.config.shutdown_timeout):
                while self._queue:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            self._report_unflushed()
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        self._flusher = None
        for task in self._loading.values():
            task.cancel()
        await self.connector.close()

    async def flush(self) -> None:
        """Write everything pending now; return once nothing is pending (waits out outages)."""
        while self._queue:
            self._flush_now = True
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    async def __aenter__(self) -> CachedStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def stats(self) -> StoreStats:
        return StoreStats(
            pending=self._pending,
            dirty=len(self._queue),
            cached=len(self._clean) + len(self._pinned),
            flushed=self._flushed,
            retried=self._retried,
            failed=self._failed,
            conflicts=self._conflicts,
            cached_bytes=self._bytes,
            waiters=self._waiting,
            loads_waiting=self._load_slots.waiting,
            flush_seconds=self._flush_seconds,
            errors=dict(self._errors),
            reverted=self._reverted,
        )

    # -- reads -----------------------------------------------------------------------------

    def cached(self, name: str) -> Record | None:
        record = self._clean.get(name)
        if record is not None:
            self._clean.move_to_end(name)
            return record
        return self._pinned.get(name)

    async def load(self, name: str) -> Record | None:
        record = self.cached(name)
        if record is not None or name in self._queue:  # queued without a record: deleted
            return record
        task = self._loading.get(name)
        if task is None:
            task = asyncio.create_task(self._read(name))
            self._loading[name] = task
        # Shielded: one caller giving up must not cancel the read the others share.
        snapshot = await asyncio.shield(task)
        # A write, delete or forget during the read outranks what the read found.
        if name in self._queue or name in self._clean:
            return self.cached(name)
        return None if snapshot is None else _record(snapshot)

    async def load_many(self, names: list[str]) -> dict[str, Record | None]:
        """``load`` of every name, with one ``get_many`` for those not in memory (one read
        slot for all of them). A write, delete or NOTIFY during the read outranks it."""
        result: dict[str, Record | None] = {}
        missing = []
        for name in names:
            record = self.cached(name)
            if record is not None or name in self._queue:
                result[name] = record
            else:
                missing.append(name)
        if not missing:
            return result
        forgets = self._forgets
        async with self._load_slots:
            found = await self.connector.get_many(missing)
        for name in missing:
            if name in self._queue or name in self._clean:
                result[name] = self.cached(name)
                continue
            snapshot = found.get(name)
            record = None if snapshot is None else _record(snapshot)
            if record is not None and forgets == self._forgets:
                self._cache_clean(record)
            result[name] = record
        return result

    async def _read(self, name: str) -> Snapshot | None:
        """The shared storage read of ``load``; caches what it finds unless the name was
        written, deleted or forgotten meanwhile (each of those drops it from ``_loading``)."""
        task = asyncio.current_task()
        try:
            async with self._load_slots:
                snapshot = await self.connector.get(name)
        finally:
            current = self._loading.get(name) is task
            if current:
                del self._loading[name]
        if current and snapshot is not None and name not in self._queue:
            self._cache_clean(_record(snapshot))
        return snapshot

    def forget(self, name: str) -> None:
        """Drop a clean record (NOTIFY). A dirty one stays: its flush meets storage's change
        as a conflict, which the policy resolves."""
        self._drop_clean(name)
        self._loading.pop(name, None)
        self._forgets += 1

    # -- writes ----------------------------------------------------------------------------

    def put(self, record: Record) -> None:
        # The hot path of every applied write: dictionary operations only, no I/O, no copies.
        name = record.name
        old = self._pinned.get(name)
        grow = record.size if old is None else record.size - old.size
        if grow > 0 and self._dirty_bytes + grow > self._max_bytes:
            raise BackPressure(
                f"{self._dirty_bytes} bytes of records are waiting for storage (cache.max_bytes)",
                "cache.max_bytes",
            )
        entry = self._queue.get(name)
        if entry is None:
            self._admit()
            clean = self._drop_clean(name)
            self._queue[name] = _Dirty([record], None if clean is None else clean.data)
            self._pending += 1
            if self._pending >= self._high_water:
                self._wake.set()
        else:
            ops = entry.ops
            if (
                self._coalesce
                and type(ops[-1]) is Record
                and not (entry.in_flight and len(ops) == 1)
            ):
                if self._waiting:  # coalesced writes hold nothing more, but their acks do
                    self._admit()
                ops[-1] = record
            else:
                self._admit()
                ops.append(record)
                self._pending += 1
                if self._pending >= self._high_water:
                    self._wake.set()
        self._pinned[name] = record
        self._bytes += grow
        self._dirty_bytes += grow
        if self._loading:
            self._loading.pop(name, None)

    async def delete(self, name: str) -> asyncio.Future[None]:
        """Remove ``name`` now (it reads as absent at once) and queue its deletion from storage.

        Returns, without waiting for storage, a future that resolves once the deletion is in
        storage (at once if there was nothing to delete) and fails as ``durable`` does. Queued
        writes of the name are dropped. Raises ``BackPressure`` (changing nothing) at the cap.
        """
        current = self.cached(name)
        if current is None:
            queued = self._queue.get(name)
            if queued is not None:  # deleted already; the deletion is queued
                last = queued.ops[-1]
                return self._wait(name, queued, _key(last)) if type(last) is Delete else _done()
            await self.load(name)  # the version to delete up to
            current = self.cached(name)
            if current is None:
                return _done()
        entry = self._queue.get(name)
        op = Delete(name, current.version)
        if entry is None:
            self._admit()
            self._drop_clean(name)
            self._queue[name] = _Dirty([op], current.data)
            self._pending += 1
        else:
            keep = 1 if entry.in_flight else 0
            dropped = len(entry.ops) - keep
            if dropped == 0:
                self._admit()
            while len(entry.ops) > keep:
                entry.ops.pop()
            entry.ops.append(op)
            self._pending += 1 - dropped
        self._unpin(name)
        self._loading.pop(name, None)
        return self._wait(name, self._queue[name], _key(op))

    async def durable(self, name: str, version: int) -> None:
        """Return once ``version`` of ``name`` (or a newer state) is in storage.

        Raises ``StorageRejected`` if storage refused it, ``StorageUnavailable`` if the store
        closed before it could be written.
        """
        await self.watch(name, version)

    def watch(self, name: str, version: int) -> asyncio.Future[None]:
        """``durable``, registered (and counted toward ``max_pending``) now, not when awaited."""
        entry = self._queue.get(name)
        if entry is None or entry.stored_version >= version:
            return _done()
        return self._wait(name, entry, 2 * version)

    def _wait(self, name: str, entry: _Dirty, key: int) -> asyncio.Future[None]:
        """A future settled with the operation at ``key`` (see ``_key``); expedites ``name``.
        Counted toward ``max_pending`` until it is done: waiters hold memory too."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if entry.waiters is None:
            entry.waiters = []
        entry.waiters.append((key, future))
        self._waiting += 1
        future.add_done_callback(self._waiter_done)
        self._expedited[name] = None
        self._wake.set()
        return future

    def _waiter_done(self, _: asyncio.Future[None]) -> None:
        self._waiting -= 1

    def _admit(self) -> None:
        if self._pending + self._waiting >= self.config.max_pending:
            raise BackPressure(
                f"{self._pending} writes and {self._waiting} acknowledgements are waiting for "
                "storage (write_behind.max_pending)"
            )

    # -- the cache -------------------------------------------------------------------------

    def _cache_clean(self, record: Record) -> None:
        """Make ``record`` clean (from storage, or moved from ``_pinned`` by the caller)."""
        old = self._clean.get(record.name)
        self._clean[record.name] = record
        self._clean.move_to_end(record.name)
        self._bytes += record.size - (0 if old is None else old.size)
        self._evict()

    def _unpin(self, name: str) -> Record | None:
        record = self._pinned.pop(name, None)
        if record is not None:
            self._bytes -= record.size
            self._dirty_bytes -= record.size
        return record

    def _drop_clean(self, name: str) -> Record | None:
        record = self._clean.pop(name, None)
        if record is not None:
            self._bytes -= record.size
        return record

    def _evict(self) -> None:
        clean, max_records = self._clean, self.cache_config.max_records
        max_bytes = self.cache_config.max_bytes
        while clean and (len(clean) + len(self._pinned) > max_records or self._bytes > max_bytes):
            self._bytes -= clean.popitem(last=False)[1].size

    # -- the flusher -----------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_round = loop.time() + self.config.interval
        delay = self.config.retry_initial
        while True:
            if not self._ready():
                self._idle.set()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_round - loop.time())):
                        await self._wake.wait()
            if (
                loop.time() >= next_round
                or self._closing
                or self._flush_now
                or self._pending >= self._high_water
            ):
                self._flush_now = False
                self._round = len(self._queue)
                next_round = loop.time() + self.config.interval
            batch = self._take_batch()
            if not batch:
                continue
            started = loop.time()
            try:
                await self._flush(batch)
            except (StorageUnavailable, StorageTimeout) as exc:
                self._flush_seconds.observe(loop.time() - started)
                self._error(exc)
                self._retried += 1
                log.warning(
                    "storage write of %d records failed (%s); retrying in %.2fs",
                    len(batch),
                    exc,
                    delay,
                )
            except Exception as exc:  # a bug past the write (a wrong number of results): keep it
                self._flush_seconds.observe(loop.time() - started)
                self._error(exc)
                self._retried += 1
                log.exception(
                    "storage write of %d records failed; retrying in %.2fs", len(batch), delay
                )
            else:
                self._flush_seconds.observe(loop.time() - started)
                delay = self.config.retry_initial
                continue
            self._release(batch)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.retry_max)
            self._round = len(self._queue)  # after an outage, write everything that waited

    def _ready(self) -> bool:
        return bool(
            self._expedited
            or (self._round > 0 and self._queue)
            or self._pending >= self._high_water
            or ((self._closing or self._flush_now) and self._queue)
        )

    def _take_batch(self) -> list[str]:
        """Names whose first queued operation goes into the next write: awaited ones first,
        then, while a round is on, the oldest."""
        size, queue = self._batch_size, self._queue
        batch: list[str] = []
        if self._expedited:
            for name in list(self._expedited):
                if name not in queue:
                    del self._expedited[name]
            batch = list(itertools.islice(self._expedited, size))
        if len(batch) < size and self._round > 0:
            if batch:
                chosen = set(batch)
                others = (name for name in queue if name not in chosen)
                batch += itertools.islice(others, size - len(batch))
            else:
                batch = list(itertools.islice(queue, size))
            # A batch that is not full holds everything queued: the round is complete.
            self._round = 0 if len(batch) < size else max(0, self._round - len(batch))
        return batch

    async def _flush(self, batch: list[str]) -> None:
        queue = self._queue
        entries = [queue[name] for name in batch]
        for entry in entries:
            entry.in_flight = True
        ops = [entry.ops[0] for entry in entries]  # a Record is the connector's Put
        results: list[WriteResult | None]
        try:
            results = list(await self.connector.write(ops))
        except (StorageUnavailable, StorageTimeout):
            raise  # an outage: the whole batch is retried
        except Exception as exc:  # StorageRejected, or anything else a connector or driver raises
            if len(ops) == 1:
                self._fail(batch[0], exc)
                return
            # One bad record must not hold back the others: write them one by one.
            results = []
            for name, op in zip(batch, ops, strict=True):
                try:
                    results.extend(await self.connector.write([op]))
                except (StorageUnavailable, StorageTimeout):
                    raise
                except Exception as exc:
                    self._fail(name, exc)
                    results.append(None)
        pinned, clean, applied = self._pinned, self._clean, Outcome.APPLIED
        done = cleaned = 0
        # An entry stays queued until its own result is handled, so ``entries`` is current.
        for name, entry, result in zip(batch, entries, results, strict=True):
            if result is None:
                continue
            if result.outcome is not applied:
                self._conflict(name, result)
                continue
            if len(entry.ops) == 1 and not entry.waiters:
                # The common case, kept lean: nothing else queued, nobody waiting; now clean.
                del queue[name]
                record = pinned.pop(name, None)
                if record is not None:
                    clean[name] = record
                    cleaned += record.size
                done += 1
            else:
                self._applied(name, result.op)
        self._pending -= done
        self._flushed += done
        self._dirty_bytes -= cleaned
        self._evict()

    def _release(self, batch: Iterable[str]) -> None:
        """After a failed attempt: nothing is in flight; a failed write that a newer queued
        operation supersedes is dropped, so the retry writes only the newest."""
        for name in batch:
            entry = self._queue.get(name)
            if entry is None or not entry.in_flight:
                continue
            entry.in_flight = False
            if self.config.coalesce and len(entry.ops) > 1 and type(entry.ops[0]) is Record:
                entry.ops.pop(0)
                self._pending -= 1

    def _applied(self, name: str, op: Put | Delete) -> None:
        entry = self._queue[name]
        entry.ops.pop(0)
        entry.in_flight = False
        self._pending -= 1
        self._flushed += 1
        if type(op) is Put:
            entry.stored_version = op.version
            entry.base = op.data
        else:
            entry.base = None
        self._settle(name, entry, _key(op))

    def _error(self, exc: Exception) -> None:
        """Count ``exc`` by kind for ``/metrics``."""
        kind = storage_error_kind(exc)
        self._errors[kind] = self._errors.get(kind, 0) + 1

    def _fail(self, name: str, exc: Exception) -> None:
        """The operation of ``name`` in flight failed for good (``exc``, raised for it alone)."""
        entry = self._queue[name]
        op = entry.ops.pop(0)
        entry.in_flight = False
        self._pending -= 1
        self._failed += 1
        self._error(exc)
        # One line per failed operation (throttled: clients choose what storage refuses); the
        # driver's message, never the data.
        _throttled.error(
            "storage refused %s of record %r version %d (%s: %s); storage's state replaces it",
            "the write" if type(op) is Record else "the delete",
            name,
            op.version,
            type(exc).__name__,
            _first_line(exc),
        )
        error = StorageRejected(f"storage refused record {name!r} version {op.version}")
        self._settle(name, entry, _key(op), error)
        refused = self._clean.get(name)
        if type(op) is Record and refused is not None:  # nothing newer queued: undo it
            task = asyncio.create_task(self._revert(name, refused))
            self._reverts.add(task)
            task.add_done_callback(self._reverts.discard)

    async def _revert(self, name: str, refused: Record) -> None:
        """Replace ``refused``, a state storage refused for good (its writers were told),
        with storage's: no reader is served, as current, a state storage never holds.
        Storage's data gets a version above the refused one (clients saw that version), is
        pushed to subscribers and written back, so storage and clients agree; a record storage
        lacks is dropped (subscribers hear it is gone). Nothing is done if the record changed
        meanwhile (a write, delete or NOTIFY outranks this). If storage cannot be read, or
        the write-behind queue is full, the refused state is dropped from the cache: the next
        read loads storage's."""
        try:
            stored = await self.connector.get(name)
        except Exception as exc:
            if self._clean.get(name) is refused:
                self._drop_clean(name)
            _throttled.warning(
                "cannot read record %r to replace a state storage refused (%s: %s); dropped "
                "from the cache",
                name,
                type(exc).__name__,
                _first_line(exc),
            )
            return
        if self._clean.get(name) is not refused or name in self._queue:
            return
        self._drop_clean(name)
        if stored is None:
            self._notify(name, None)
            return
        version = max(refused.version, stored.version) + 1
        restored = Record(name, version, stored.data, _size(stored.data))
        try:
            self.put(restored)
        except BackPressure:
            return
        self._reverted += 1
        self._notify(name, restored)

    def _settle(
        self, name: str, entry: _Dirty, key: int, error: BaseException | None = None
    ) -> None:
        """Wake the waiters the operation at ``key`` (``_key``) satisfies; a record with nothing
        left queued is clean."""
        if not entry.ops:
            key = 1 << 62  # everything this queue held is settled
        waiting = []
        for wanted, future in entry.waiters or ():
            if wanted > key:
                waiting.append((wanted, future))
            elif not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        entry.waiters = waiting
        if not waiting:
            self._expedited.pop(name, None)
        if not entry.ops:
            del self._queue[name]
            record = self._unpin(name)
            if record is not None:
                self._cache_clean(record)

    # -- conflicts -------------------------------------------------------------------------

    def _conflict(self, name: str, result: WriteResult) -> None:
        self._conflicts += 1
        entry = self._queue[name]
        entry.in_flight = False
        theirs = result.current
        if theirs is None:  # it vanished between the write and the read-back: just retry
            return
        ours = self._pinned.get(name)  # None: our newest state is a delete
        ours_version = ours.version if ours is not None else entry.ops[-1].version
        policy = self.config.conflict_policy
        log.info(
            "record %r: storage holds version %d, ours is %d; resolving %s",
            name,
            theirs.version,
            ours_version,
            policy,
        )
        if policy == "storage-wins":
            final: Any = theirs.data
        elif ours is None:
            final = None  # gateway-wins, merge: our delete stands
        elif policy == "gateway-wins":
            final = ours.data
        else:
            final = merge(entry.base, ours.data, theirs.data)
        kept = policy != "storage-wins" and (
            ours is None or final is None or keeps(entry.base, ours.data, final)
        )
        if not kept:
            self._discard_waiters(name, entry, theirs.version, policy)
        self._pending -= len(entry.ops)
        entry.ops.clear()
        entry.base = theirs.data
        if final is None:
            self._requeue(entry, Delete(name, max(ours_version, theirs.version)))
            return
        changed = ours is None or not json_equal(final, ours.data)
        if theirs.version > ours_version and json_equal(final, theirs.data):
            record = _record(theirs)
            self._unpin(name)
            self._settle(name, entry, 2 * theirs.version)  # nothing queued: clean, as stored
            self._cache_clean(record)
        else:
            version = max(theirs.version + 1, ours_version + (1 if changed else 0))
            record = Record(name, version, final, _size(final))
            self._unpin(name)
            self._pinned[name] = record
            self._bytes += record.size
            self._dirty_bytes += record.size
            self._requeue(entry, record)
            if version == ours_version:
                return  # clients already hold exactly this
        self._notify(name, record)

    def _discard_waiters(self, name: str, entry: _Dirty, theirs: int, policy: str) -> None:
        """Fail everyone awaiting an operation of ``name`` now: the resolution drops them."""
        if not entry.waiters:
            return
        error = WriteDiscarded(
            f"record {name!r}: storage holds version {theirs}, written by someone else, and "
            f"conflict_policy {policy} kept it over this change, which is not stored"
        )
        for _, future in entry.waiters:
            if not future.done():
                future.set_exception(error)
        entry.waiters = None  # still expedited: the resolution is written next, not in a round

    def _requeue(self, entry: _Dirty, op: Op) -> None:
        entry.ops.append(op)
        self._pending += 1

    def _notify(self, name: str, record: Record | None) -> None:
        callback = self.on_external_change
        if callback is None:
            return
        try:
            callback(name, record)
        except Exception:
            log.exception("on_external_change(%r) failed", name)

    def _report_unflushed(self) -> None:
        names = list(self._queue)
        log.error(
            "shutdown: %d records (%d writes) could not be written to storage within %.1fs "
            "and are LOST: %s%s",
            len(names),
            self._pending,
            self.config.shutdown_timeout,
            ", ".join(repr(n) for n in names[:50]),
            " ..." if len(names) > 50 else "",
        )
        error = StorageUnavailable("the store closed before the write reached storage")
        for entry in self._queue.values():
            for _, future in entry.waiters or ():
                if not future.done():
                    future.set_exception(error)


def _key(op: Op) -> int:
    """The place of ``op`` in its record's order: the put of version v, then the delete of v
    (a delete carries the version it deletes up to), then the put of v + 1."""
    return 2 * op.version + (type(op) is Delete)


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _record(snapshot: Snapshot) -> Record:
    """A stored snapshot as a cached record, measured once (storage does not know its size)."""
    return Record(snapshot.name, snapshot.version, snapshot.data, _size(snapshot.data))


def _size(data: Any) -> int:
    """The length of ``data``'s JSON text, as the record handler counts a record's size."""
    try:
        return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    except (ValueError, TypeError, RecursionError):  # unreadable data: counted, never fatal
        return 0
