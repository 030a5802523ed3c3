"""Write-behind across nodes: records committed in Redis reach storage, one flusher at a time.

Invariants (docs/cluster.md, "Write-behind across nodes"):

* The dirty set lives in Redis: a record committed by a node that dies is flushed by another
  (the orphan sweep takes records dirty for ``cluster.orphan_after`` seconds).
* One flusher per record at a time: ``CLAIM`` takes a lease (``cluster.flush_lease``); the
  holder writes the newest state Redis holds (coalescing every commit before it) with the
  connector's conditional writes, first ``Delete(dv)`` if a delete is pending (so a delete on
  one node and a re-create on another reach storage in commit order), then the state itself;
  ``CLEAN`` records the sequence storage now holds (``f``).
* Every write is fenced (the connector's ``"fenced"`` capability) from the claimed sequence
  plus the record's fence offset ``fo``, ``base = seq + fo``: the claim's ``Delete(dv)``
  carries ``2 * base``, its put ``2 * base + 1`` (:func:`fences`). Storage refuses a write once
  a later write of its own claim or any write of a later claim is stored, so a holder stalled
  past its lease cannot undo a delete and a re-create stored by the next holder, also when the
  next holder claimed the same sequence (no commit between): its late delete is below that
  holder's put. A refused (FENCED) write is superseded: this node raises ``fo`` so that its
  fences are above the one storage holds if the cluster's fences are behind it
  (``FENCE_UP``; a Redis restarted empty with a clock behind), and claims the record again;
  nothing is cleaned or acknowledged by it.
* Paced like a single server's write-behind: a change nobody waits for is flushed within
  ``write_behind.interval`` (at most half of ``cluster.orphan_after``, so no other node takes it
  for an orphan), coalesced with the record's later changes into one ``CLAIM``, one storage
  write and one ``CLEAN``; a change whose acknowledgement waits (``committed(wait=True)``),
  half of ``write_behind.max_pending`` queued, orphans and shutdown flush everything queued
  at once.
* An acknowledgement waits for ``f >=`` its commit's sequence: storage holds that version or a
  newer state. A node that finds the lease taken polls ``f`` instead of writing.
* Storage refusing an operation fails this node's waiters for it (never a silent success) and
  leaves the record dirty, its dirty time moved to now (``DEFER``): records storage refuses
  for good (data a client sent) never keep the orphan sweep, which takes the oldest dirty
  records a batch at a time, from the records a dead node left. A refused put is then undone
  (``on_refused``: ``ClusterRecords`` commits storage's state over it, with a higher
  version), so no reader is served, as current, a state storage will never hold, and the
  record leaves the dirty set once that commit is stored; it stays dirty, tried again every
  ``orphan_after``, only while the undo cannot be made (storage or Redis unreachable).
  Redis or storage unreachable: retried with backoff, waiters wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from connectors.base import Connector, Delete, Outcome, Snapshot, WriteResult
from gateway.config import ClusterConfig, WriteBehindConfig
from gateway.exceptions import (
    BackPressure,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
    storage_error_kind,
)
from gateway.histogram import Histogram
from gateway.limits import ThrottledLog

from . import record_scripts
from .keys import Keys

__all__ = ["Flusher", "fences"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

_BUSY_RETRY = 0.05
"""Seconds before asking again about a record another node is flushing."""


def fences(seq: int, offset: int) -> tuple[int, int]:
    """The fences of a claim of sequence ``seq`` with fence offset ``offset``: its
    ``Delete(dv)``'s, then its put's. Every fence of a claim is above every fence of an earlier
    claim (sequences and offsets only rise), and the delete's is below the put's: a stalled
    holder's delete landing after another holder of the same claim stored the put is refused
    (with one fence for both it would pass, and delete the put)."""
    base = seq + offset
    return 2 * base, 2 * base + 1


def _lost() -> StorageUnavailable:
    return StorageUnavailable(
        "the cluster's Redis lost this record's state before storage had it "
        "(Redis restarted without its data); the write may be lost"
    )


class Flusher:
    def __init__(
        self,
        connector: Connector,
        keys: Keys,
        *,
        cluster: ClusterConfig,
        write_behind: WriteBehindConfig,
    ) -> None:
        self.connector = connector
        self._keys = keys
        self._node_id = ""
        self._redis: Any = None
        self._lease_ms = int(cluster.flush_lease * 1000)
        self._ttl_ms = int(cluster.record_ttl * 1000)
        self._orphan_ms = int(cluster.orphan_after * 1000)
        self._config = write_behind
        self._queue: dict[str, None] = {}
        """Record keys to flush, oldest first: committed here, or found orphaned."""
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._waiting = 0
        self._stored: dict[str, int] = {}
        """Sequences this node wrote to storage whose ``CLEAN`` has not reached Redis yet: if
        Redis then loses the record, the waiters up to it are still answered truthfully."""
        self._pace = min(write_behind.interval, cluster.orphan_after / 2)
        self._high_water = max(1, write_behind.max_pending // 2)
        self._due: float | None = None
        """When the oldest queued change nobody waits for is to be flushed (None: none)."""
        self._urgent = False
        """Flush everything queued now: someone waits (an acknowledgement, shutdown)."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        """Set by ``close``: the loops return at their next turn, even if a driver swallowed
        the cancellation of an await (then ``close`` would wait for them forever)."""
        self.flushed = self.retried = self.failed = self.conflicts = 0
        self.orphans = 0
        """Records this node flushed for a node that did not (dead, or stalled)."""
        self.busy = 0
        """Claims that found another node flushing the record."""
        self.fenced = 0
        """Writes storage refused for a higher fence (a newer flush stored first)."""
        self.errors: dict[str, int] = {}
        self.flush_seconds = Histogram()
        self.reverted = 0
        """Refused states this node replaced with storage's (``ClusterRecords``)."""
        self.on_refused: Callable[[str, str, int, int], None] | None = None
        """Called with a record's name, key, claimed sequence and version when storage refused
        the put of that state for good: the state is to become storage's again."""
        self.on_overtaken: Callable[[str], None] | None = None
        """Called with a record's name when storage got a write of a state Redis has lost
        since, and the record's new state may be older than storage's (re-read it)."""

    def bind(self, redis: Any, node_id: str) -> None:
        self._redis = redis
        self._node_id = node_id
        self._claim = redis.register_script(record_scripts.CLAIM)
        self._clean = redis.register_script(record_scripts.CLEAN)
        self._drop_dv = redis.register_script(record_scripts.DROP_DV)
        self._fence_up = redis.register_script(record_scripts.FENCE_UP)
        self._defer = redis.register_script(record_scripts.DEFER)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="recordgate-cluster-flusher"),
            asyncio.create_task(self._sweep(), name="recordgate-cluster-orphans"),
        ]

    async def close(self, timeout: float) -> None:
        """Flush what this node committed (within ``timeout``), then stop."""
        self._hurry()
        # A flush in flight has taken its records off the queue: wait for it too (idle clear).
        if (self._queue or not self._idle.is_set()) and self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while self._queue or not self._idle.is_set():
                        self._idle.clear()
                        await self._idle.wait()
        self._closing = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._queue:
            log.error(
                "shutdown: %d records committed by this node were not yet in storage; the "
                "other nodes flush them (orphan sweep)",
                len(self._queue),
            )
        error = StorageUnavailable("the node closed before the write reached storage")
        for waiters in self._waiters.values():
            for _, future in waiters:
                if not future.done():
                    future.set_exception(error)

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def waiting(self) -> int:
        return self._waiting

    def admit(self) -> None:
        """Raise ``BackPressure`` when ``write_behind.max_pending`` flushes and acks wait."""
        if len(self._queue) + self._waiting >= self._config.max_pending:
            raise BackPressure(
                f"{len(self._queue)} records and {self._waiting} acknowledgements are waiting "
                "for storage (write_behind.max_pending)"
            )

    def committed(self, key: str, seq: int, *, wait: bool) -> asyncio.Future[None] | None:
        """This node committed ``seq`` of ``key``: flush it soon; with ``wait``, a future
        resolved once storage holds it (or newer), failed if it never will."""
        self._queue[key] = None
        self._idle.clear()
        if not wait:
            if self._due is None:  # the first of a round: the flusher starts its clock
                self._due = asyncio.get_running_loop().time() + self._pace
                self._wake.set()
            elif len(self._queue) >= self._high_water:
                self._hurry()
            return None
        self._hurry()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append((seq, future))
        self._waiting += 1
        future.add_done_callback(self._waiter_done)
        return future

    def _waiter_done(self, _: asyncio.Future[None]) -> None:
        self._waiting -= 1

    def _hurry(self) -> None:
        """Flush everything queued without waiting for the pace."""
        self._urgent = True
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._config.retry_initial
        while not self._closing:
            if not self._queue:
                self._due = None
                self._urgent = False
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._urgent:
                due = self._due if self._due is not None else loop.time()
                if due > loop.time():  # write-behind: later changes coalesce meanwhile
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(due):
                            await self._wake.wait()
                    continue
            batch = list(self._queue)[: self._config.batch_size]
            for key in batch:
                del self._queue[key]
            if not self._queue:  # the next change begins a new round
                self._due = None
                self._urgent = False
            started = loop.time()
            try:
                later = await self._flush(batch)
            except Exception as exc:  # Redis or storage away: keep everything, retry
                self.flush_seconds.observe(loop.time() - started)
                self.retried += 1
                self._count(exc)
                _throttled.warning(
                    "cluster flush of %d records failed (%s: %s); retrying in %.2fs",
                    len(batch),
                    type(exc).__name__,
                    exc,
                    delay,
                )
                for key in batch:
                    self._queue[key] = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.retry_max)
                continue
            self.flush_seconds.observe(loop.time() - started)
            delay = self._config.retry_initial
            if later:
                loop.call_later(_BUSY_RETRY, self._requeue, later)

    def _requeue(self, keys: list[str]) -> None:
        for key in keys:
            if self._waiters.get(key):
                self._queue[key] = None
        self._idle.clear()
        self._hurry()

    async def _flush(self, batch: list[str]) -> list[str]:
        """One round over ``batch``; returns keys to ask about again (another node flushes)."""
        keys = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in batch:
                await self._claim(
                    keys=[key, keys.lease(key)], args=[self._node_id, self._lease_ms], client=pipe
                )
            replies = await pipe.execute()
        later: list[str] = []
        claimed: list[tuple[str, list[bytes]]] = []
        for key, reply in zip(batch, replies, strict=True):
            status = reply[0]
            if status == b"missing":
                self._settle(key, self._stored.pop(key, -1))  # what storage has: acked
                self._settle(key, 1 << 62, _lost())
            elif status == b"busy":
                self.busy += 1
                self._settle_from(key, int(reply[2]), int(reply[1]), self._stored.get(key, -1))
                later.append(key)
            else:
                claimed.append((key, reply[1:]))
        if claimed:
            await self._write_claimed(claimed)
        return later

    async def _write_claimed(self, claimed: list[tuple[str, list[bytes]]]) -> None:
        # state: n, s, v, x, d, dv, f, o, fo
        deletes: list[tuple[str, Delete]] = []
        puts: list[tuple[str, Snapshot]] = []
        done: list[tuple[str, str, int, int]] = []
        claims: dict[str, int] = {}
        for key, (n, s, v, x, d, dv, f, o, fo) in claimed:
            name, seq = n.decode(), int(s)
            if seq > int(f):
                # The fences of this claim: the delete of the old life's versions and the put
                # of the state belong to one flush, after every earlier claim's, the delete
                # first.
                delete_fence, put_fence = fences(seq, int(fo))
                claims[key] = seq
                if dv:
                    deletes.append((key, Delete(name, int(dv), delete_fence)))
                if x == b"0":
                    puts.append((key, Snapshot(name, int(v), json.loads(d), len(d), put_fence)))
            done.append((key, name, seq, int(o)))
        failed: set[str] = set()
        fenced: dict[str, int] = {}
        refused: set[str] = set()
        if deletes:
            failed |= await self._write(deletes, fenced, refused)
            ok = [(key, op) for key, op in deletes if key not in failed and key not in fenced]
            if ok:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, op in ok:
                        await self._drop_dv(
                            keys=[key, self._keys.lease(key)],
                            args=[self._node_id, op.version],
                            client=pipe,
                        )
                    await pipe.execute()
        puts = [(key, op) for key, op in puts if key not in failed and key not in fenced]
        if puts:
            failed |= await self._write(puts, fenced, refused)
        if fenced:
            await self._superseded(fenced, claims)
            failed |= set(fenced)
        if refused:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in refused:
                    await self._defer(keys=[self._keys.dirty, key], client=pipe)
                await pipe.execute()
            if self.on_refused is not None:
                for key, put in puts:
                    if key in refused:
                        self.on_refused(put.name, key, claims[key], put.version)
        cleaned = [entry for entry in done if entry[0] not in failed]
        earlier = {key: self._stored.get(key, -1) for key, *_ in cleaned}
        for key, _, seq, _ in cleaned:
            self._stored[key] = seq
        if not cleaned:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, _, seq, _ in cleaned:
                await self._clean(
                    keys=[key, self._keys.dirty, self._keys.lease(key)],
                    args=[self._node_id, seq, self._ttl_ms],
                    client=pipe,
                )
            results = await pipe.execute()
        for (key, name, seq, origin), result in zip(cleaned, results, strict=True):
            self._stored.pop(key, None)
            if result == 2:
                # Redis lost the state written here and the key was seeded again, perhaps
                # from storage before this write landed: storage holds it, the cluster may
                # not. Re-read storage as NOTIFY does.
                self._settle(key, seq)
                self._overtaken(name)
                continue
            if 0 <= earlier[key] < origin:  # stored in an earlier round, then Redis lost it
                self._overtaken(name)
            self._settle_from(key, origin, seq, earlier[key])

    async def _superseded(self, fenced: dict[str, int], claims: dict[str, int]) -> None:
        """Storage refused these keys' writes: it holds a fence (the value) above this claim's.
        Raise the record's fence offset so that this claim's fences are above the stored fence
        (a no-op in effect when a later claim stored it: the cluster's fences are above it
        already), then claim the record again: the next round writes the current state with
        fences storage accepts, or finds it stored (or another node flushing)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, stored in fenced.items():
                # The least offset whose delete fence, 2 * (claim + offset), is above stored.
                offset = stored // 2 - claims[key] + 1
                await self._fence_up(keys=[key], args=[str(offset)], client=pipe)
            await pipe.execute()
        for key in fenced:
            self._queue[key] = None

    def _overtaken(self, name: str) -> None:
        if self.on_overtaken is not None:
            self.on_overtaken(name)

    def _settle_from(self, key: str, origin: int, seq: int, stored: int = -1) -> None:
        """Resolve this node's waiters of ``key`` up to ``seq`` of the key's current state,
        seeded at sequence ``origin``. Waiters below ``origin`` committed a state that Redis
        lost (the key was seeded again since): acknowledged only up to ``stored`` (what this
        node wrote to storage), the others fail; the new state's ``f`` says nothing of them."""
        if origin > 0:
            self._settle(key, min(stored, origin - 1))
            self._settle(key, origin - 1, _lost())
        self._settle(key, seq)

    async def _write(
        self,
        ops: Sequence[tuple[str, Snapshot | Delete]],
        fenced: dict[str, int],
        refused: set[str],
    ) -> set[str]:
        """Write ``ops``; the keys not stored. Those storage refused for good also go to
        ``refused`` (their waiters here are failed, the record stays dirty); those refused for
        a higher fence go to ``fenced`` with the stored fence (superseded: their waiters
        wait). Raises while storage is unreachable."""
        results: list[WriteResult | Exception]
        try:
            results = list(await self.connector.write([op for _, op in ops]))
        except (StorageUnavailable, StorageTimeout):
            raise
        except Exception as exc:  # one bad record must not hold back the others
            if len(ops) == 1:
                results = [exc]
            else:
                results = []
                for _, op in ops:
                    try:
                        results.extend(await self.connector.write([op]))
                    except (StorageUnavailable, StorageTimeout):
                        raise
                    except Exception as alone:
                        results.append(alone)
        failed: set[str] = set()
        for (key, op), result in zip(ops, results, strict=True):
            if isinstance(result, Exception):
                self._refused(key, op, result)
                failed.add(key)
                refused.add(key)
            elif result.outcome is Outcome.APPLIED:
                self.flushed += 1
            elif result.outcome is Outcome.FENCED:
                self.fenced += 1
                fenced[key] = result.fence if result.fence is not None else (op.fence or 0) + 1
                _throttled.warning(
                    "record %r: storage holds fence %s, above this flush's %s (a newer flush "
                    "stored first); claiming the record again",
                    op.name,
                    result.fence,
                    op.fence,
                )
            elif result.current is not None and result.current.version > op.version:
                # Storage holds a newer version (written by the cluster through an earlier
                # lease holder, or by someone outside): this state is superseded, and storage
                # holds a version >= it, which is all an acknowledgement promises.
                self.conflicts += 1
                _throttled.warning(
                    "record %r: storage holds version %d, newer than the cluster's %d; kept",
                    op.name,
                    result.current.version,
                    op.version,
                )
            elif result.current is None:
                self.flushed += 1  # vanished meanwhile: a delete is done, a put is retried next
                if type(op) is not Delete:
                    failed.add(key)
                    self._queue[key] = None
            else:
                self.conflicts += 1
                self._refused(
                    key,
                    op,
                    StorageRejected(
                        f"storage holds version {result.current.version} of {op.name!r} with "
                        "other data (written outside the cluster)"
                    ),
                )
                failed.add(key)
                refused.add(key)
        return failed

    def _refused(self, key: str, op: Snapshot | Delete, exc: Exception) -> None:
        self.failed += 1
        self._count(exc)
        _throttled.error(
            "storage refused %s of record %r version %d (%s: %s); it stays dirty in Redis",
            "the delete" if type(op) is Delete else "the write",
            op.name,
            op.version,
            type(exc).__name__,
            str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "",
        )
        error = StorageRejected(f"storage refused record {op.name!r} version {op.version}")
        self._settle(key, 1 << 62, error)

    def _settle(self, key: str, seq: int, error: BaseException | None = None) -> None:
        """Resolve (or fail) this node's waiters of ``key`` for sequences up to ``seq``."""
        waiters = self._waiters.get(key)
        if not waiters:
            return
        left = []
        for wanted, future in waiters:
            if wanted > seq:
                left.append((wanted, future))
            elif not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        if left:
            self._waiters[key] = left
        else:
            del self._waiters[key]

    def _count(self, exc: BaseException) -> None:
        kind = storage_error_kind(exc)  # "other" for Redis errors among them
        self.errors[kind] = self.errors.get(kind, 0) + 1

    # -- orphans -------------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Queue records dirty for longer than ``orphan_after``: their committer did not
        flush them (it died, or cannot reach storage; then the lease decides who writes)."""
        interval = max(0.05, self._orphan_ms / 2000)
        while not self._closing:
            await asyncio.sleep(interval)
            try:
                seconds, micros = await self._redis.time()
                before = seconds * 1000 + micros // 1000 - self._orphan_ms
                found = await self._redis.zrangebyscore(
                    self._keys.dirty, "-inf", before, start=0, num=self._config.batch_size
                )
            except Exception as exc:
                _throttled.warning("cluster orphan sweep: cannot reach Redis (%s)", exc)
                continue
            fresh = [key.decode() for key in found if key.decode() not in self._queue]
            if fresh:
                self.orphans += len(fresh)
                log.info("cluster: flushing %d records another node left dirty", len(fresh))
                for key in fresh:
                    self._queue[key] = None
                self._idle.clear()
                self._hurry()
