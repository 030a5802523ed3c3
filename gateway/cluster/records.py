"""Records on a cluster node: the record store whose version authority is Redis.

Invariants (docs/cluster.md, "Records"):

* One version, one value, cluster-wide: a change is made only by ``commit``, a compare-and-set
  script (``record_scripts.COMMIT``) over the sequence of the state the change was computed
  from. A node whose view was stale gets ``CommitConflict`` with the current record, and the
  record handler runs the operation again on it, so its client gets what one node would answer.
* Every commit is published by the script on the bus, so every node receives a record's changes
  in the order Redis ran them; ``received`` hands each one to ``on_change`` (the handler serves
  its subscribers) once, in that order. A node's own commits are served from the bus too.
* Nothing this node answers is ahead of what it served: every change carries the value of the
  position counter its commit raised, and whatever this node learns from Redis directly (a
  read, a commit's reply) carries the counter's value then; it is used only once the bus has
  delivered up to that position (``_caught_up``). So no client sees a version, then an older
  one; a VERSION_EXISTS never names a version its subscribers have not been sent.
* The cache holds states Redis had, each with its sequence, and follows the bus; records with
  local subscribers are never evicted. It is trusted only while the bus subscription it was
  started with (``subscribed``) delivers: from the moment the bus loses Redis until ``resync``
  dropped the cache after it subscribed again, changes may be made that never reach it (Redis
  back, the bus not yet), so reads go to Redis, and a cached state is served only when Redis
  does not answer. States read before a ``resync`` are not cached after it.
* A record unknown to Redis is read from storage and made the cluster state with ``SEED``
  (only if still absent). Storage is written behind by ``flusher``; acknowledgements wait for it.
* Redis unreachable: commits and cache misses fail with ``RecordsUnavailable`` (a clear error to
  the client, never an unordered version); cached records are still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from connectors.base import CAPABILITY_FENCED, Connector, Snapshot
from gateway.config import CacheConfig, ClusterConfig, WriteBehindConfig
from gateway.exceptions import (
    ClusterUnavailable,
    CommitConflict,
    RecordsUnavailable,
    RedisUnreachable,
    StorageError,
)
from gateway.limits import ThrottledLog
from gateway.protocol import payload
from gateway.store.base import Record, StoreStats
from gateway.store.slots import FairSlots

from . import record_scripts
from .flusher import Flusher
from .keys import Keys

__all__ = ["ClusterRecords"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

_READ_TRIES = 3
"""Storage reads of a record whose answer was overtaken (see SEED and REPLACE) before giving
up with ``RecordsUnavailable``."""
_LATE = (
    "cluster: {names} records changed in the cluster during each of {tries} storage reads in a "
    "row (or the reads took longer than cluster.record_ttl); not read"
)

_RESYNC_BATCH = 500
"""Records re-read per Redis pipeline after the bus was lost."""

Changed = Callable[[str, "Record | None", "str | None", Any], None]
"""``on_change(name, record or None (deleted), data as JSON text, local)``: ``local`` is what
this node's commit registered (``commit``'s ``local``), None for other nodes' changes."""


@dataclass(slots=True)
class _Entry:
    record: Record | None
    """None: the record does not exist (a tombstone or known absent)."""
    seq: int


class ClusterRecords:
    """A :class:`~gateway.store.base.RecordStore` for a cluster node; see the module docstring."""

    def __init__(
        self,
        connector: Connector,
        *,
        cluster: ClusterConfig,
        cache: CacheConfig | None = None,
        write_behind: WriteBehindConfig | None = None,
        max_concurrent_loads: int = 64,
    ) -> None:
        if CAPABILITY_FENCED not in getattr(connector, "capabilities", frozenset()):
            # Without fences a flush lease holder that stalls can undo a delete and a re-create
            # stored after it (docs/cluster.md, failure analysis): refuse rather than risk it.
            raise ClusterUnavailable(
                f"cluster: the storage connector {getattr(connector, 'name', type(connector))!r} "
                f"({type(connector).__module__}.{type(connector).__qualname__}) does not keep "
                'fenced writes (capability "fenced"), which a cluster node needs so that a '
                "stalled node's late write cannot undo a delete and re-create; use a connector "
                "that has it (sql, mongodb, redis, elasticsearch, rethinkdb)"
            )
        self.connector = connector
        self.keys = Keys(cluster.prefix)
        self.config = cluster
        self._cache_config = cache or CacheConfig()
        self._write_behind = write_behind or WriteBehindConfig()
        self.flusher = Flusher(
            connector, self.keys, cluster=cluster, write_behind=self._write_behind
        )
        self.flusher.on_overtaken = self._overtaken
        self.flusher.on_refused = self._refused
        self._refreshing: set[asyncio.Task[None]] = set()
        self._ttl_ms = int(cluster.record_ttl * 1000)
        self._absent_ms = int(cluster.absent_ttl * 1000)
        self._redis: Any = None
        self.node_id = ""
        self.on_external_change: Callable[[str, Record | None], None] | None = None
        self.on_change: Changed | None = None
        self.bus_subscription: Callable[[], int | None] = lambda: 0
        """The bus's subscription now, None while it is not subscribed (``Bus.subscription``)."""
        self._synced: int | None = 0
        """The bus subscription the cache follows (taken by ``subscribed``): the cache is
        trusted only while ``bus_subscription()`` still answers it."""
        self._epoch = 0
        """Raised each time ``resync`` drops the cache: a state read before is not cached."""
        self.interested: Callable[[str], bool] = lambda name: True
        """Whether this node serves someone the changes of ``name`` (its subscribers): a change
        of a record this node neither caches, reads nor serves is not even decoded."""
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._evicted: dict[str, int] = {}
        self._evicted_prune = self._cache_config.max_records
        """Sequences of subscribed records evicted from the cache (their data is not kept):
        what this node served of them, to compare changes with. Dropped when a change finds
        no subscriber, or the record is cached again."""
        self._bytes = 0
        self._loading: dict[str, asyncio.Task[_Entry]] = {}
        self._refresh: set[str] = set()
        """Names to re-read from storage (NOTIFY) on their next load."""
        self._reads: dict[str, int] = {}
        """Names being read from Redis (how many reads at once) ..."""
        self._seen: dict[str, _Entry] = {}
        """... and the newest change of each received meanwhile: newer than what a read
        returns if it came after the read."""
        self._local: dict[str, Any] = {}
        """What this node's commits in flight registered, by tag, for their bus delivery."""
        self._tags = 0
        self._slots = FairSlots(max_concurrent_loads)
        self._position = 0
        """How far this node's bus has come: the position of the last change received."""
        self._latest = 0
        """The highest position received since ``subscribed`` last asked Redis."""
        self._position_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._bus_wait = cluster.max_bus_lag
        self.bus_lagged = 0
        """Answers refused because the bus lagged past ``cluster.max_bus_lag``."""
        self.commits = 0
        self.commit_conflicts = 0
        """Commits that lost the compare-and-set (and were run again on the current state)."""

    def bind(self, redis: Any, node_id: str) -> None:
        """Use ``redis`` (the node's command connection pool) as ``node_id``."""
        self._redis = redis
        self.node_id = node_id
        self._commit = redis.register_script(record_scripts.COMMIT)
        self._read_script = redis.register_script(record_scripts.READ)
        self._seed = redis.register_script(record_scripts.SEED)
        self._replace = redis.register_script(record_scripts.REPLACE)
        self.flusher.bind(redis, node_id)

    async def check_redis(self) -> None:
        """Refuse a Redis that evicts keys: it would drop record versions not yet in storage.
        A Redis that does not allow ``CONFIG GET`` (managed offerings) is logged, not refused."""
        try:
            found = await self._redis.config_get("maxmemory*")
        except Exception as exc:
            log.warning(
                "cluster: cannot check Redis's eviction policy (%s); it must be noeviction "
                "(or maxmemory 0), or record versions not yet stored may be lost",
                exc,
            )
            return
        config = {_text(k): _text(v) for k, v in found.items()}
        policy = config.get("maxmemory-policy", "noeviction")
        if config.get("maxmemory", "0") != "0" and policy != "noeviction":
            raise ClusterUnavailable(
                f"cluster: Redis evicts keys (maxmemory-policy {policy} with maxmemory "
                f"{config['maxmemory']}): it holds record versions not yet in storage; set "
                "maxmemory-policy noeviction (or maxmemory 0)"
            )

    async def subscribed(self) -> None:
        """The bus is subscribed (at start, or again): every change from the counter's value
        now on reaches this node; the ones before are in what Redis holds."""
        self._synced = self.bus_subscription()  # before any await: see resync
        self._latest = 0
        before = self._position
        found = int(await self._redis.get(self.keys.position) or 0)
        if found < before:
            self._counter_restarted()
        # Not below a change received while asking (published after the GET ran); possibly
        # below what came before (Redis restarted: its counter began again).
        self._position = max(found, self._latest)
        self._wake_position()

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        await self.connector.open()
        self.flusher.start()

    async def close(self) -> None:
        await self.flusher.close(self._write_behind.shutdown_timeout)
        await self.connector.close()

    @property
    def stats(self) -> StoreStats:
        flusher = self.flusher
        return StoreStats(
            pending=flusher.pending,
            dirty=flusher.pending,
            cached=len(self._cache),
            flushed=flusher.flushed,
            retried=flusher.retried,
            failed=flusher.failed,
            conflicts=flusher.conflicts,
            cached_bytes=self._bytes,
            waiters=flusher.waiting,
            loads_waiting=self._slots.waiting,
            flush_seconds=flusher.flush_seconds,
            errors=dict(flusher.errors),
            reverted=flusher.reverted,
        )

    # -- reads ---------------------------------------------------------------------------

    def _trusted(self) -> bool:
        """Whether the cache follows every change: its bus subscription still delivers."""
        return self._synced is not None and self.bus_subscription() == self._synced

    def cached(self, name: str) -> Record | None:
        entry = self._cache.get(name) if self._trusted() else None
        return None if entry is None else entry.record

    def current(self, name: str, default: Record | None) -> Record | None:
        """The newest state this node has served of ``name``; ``default`` if not cached."""
        entry = self._cache.get(name)
        return default if entry is None else entry.record

    async def settled(self, name: str) -> None:
        """Returns once storage holds the state of ``name`` current now, whichever node
        committed it: the flusher claims it if no node has written it yet."""
        entry = self._cache.get(name) if self._trusted() else None
        if entry is None:
            entry = await self._entry(name)
        durable = self.flusher.committed(self.keys.record(name), entry.seq, wait=True)
        assert durable is not None
        await durable

    async def load(self, name: str) -> Record | None:
        entry = self._cache.get(name)
        if entry is not None and self._trusted():
            self._cache.move_to_end(name)
            return entry.record
        try:
            return (await self._entry(name)).record
        except RedisUnreachable:
            if entry is None:
                raise
            return entry.record  # Redis away: nothing is committed without it

    async def load_many(self, names: list[str]) -> dict[str, Record | None]:
        """``load`` of each name: the uncached ones in one Redis pipeline, those Redis does not
        hold read from storage in one call and seeded in another pipeline."""
        result: dict[str, Record | None] = {}
        missing: list[str] = []
        trusted = self._trusted()
        for name in names:
            entry = self._cache.get(name)
            if entry is not None and trusted:
                result[name] = entry.record
            elif name not in missing:
                missing.append(name)
        if not missing:
            return result
        try:
            result.update(await self._read_many(missing))
        except RedisUnreachable:
            kept = [self._cache.get(name) for name in missing]
            if any(entry is None for entry in kept):
                raise
            for name, entry in zip(missing, kept, strict=True):
                result[name] = entry.record if entry is not None else None
        return result

    async def _read_many(self, missing: list[str]) -> dict[str, Record | None]:
        """The cluster state of each of ``missing`` (none of them cached), read from Redis."""
        result: dict[str, Record | None] = {}
        epoch = self._epoch
        keys = [self.keys.record(name) for name in missing]
        position = self.keys.position
        self._start_reads(missing)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.time()  # before any storage read: SEED refuses an answer a ttl old
                for key in keys:
                    await self._read_script(keys=[key, position], client=pipe)
                now, *states = await pipe.execute()
            absent = [i for i, state in enumerate(states) if not state[0]]
            for _ in range(_READ_TRIES):
                if not absent:
                    break
                stored = await self._storage_read_many([missing[i] for i in absent])
                async with self._redis.pipeline(transaction=False) as pipe:
                    for i in absent:
                        snapshot = stored.get(missing[i])
                        await self._seed(
                            keys=[keys[i], position],
                            args=[
                                *self._seed_args(missing[i], snapshot),
                                _ms(now),
                                b"",
                                self._absent_ms,
                            ],
                            client=pipe,
                        )
                    late = []
                    for i, state in zip(absent, await pipe.execute(), strict=True):
                        if state[0] == b"retry":
                            late.append(i)
                        else:
                            states[i] = state
                absent = late
                if absent:
                    now = await self._redis.time()
        except StorageError:
            self._end_reads(missing)
            raise
        except Exception as exc:  # the driver's errors: Redis cannot be reached
            self._end_reads(missing)
            raise RedisUnreachable(
                f"cluster: Redis unreachable, records cannot be read ({exc})"
            ) from exc
        except BaseException:
            self._end_reads(missing)
            raise
        try:
            if absent:
                raise RecordsUnavailable(_LATE.format(names=len(absent), tries=_READ_TRIES))
            await self._caught_up(max(int(state[4]) for state in states))
            for name, state in zip(missing, states, strict=True):
                result[name] = self._adopt(name, _decode(name, state), epoch).record
        finally:
            self._end_reads(missing)
        return result

    async def _entry(self, name: str) -> _Entry:
        """The cluster state of ``name``, read once however many wait for it."""
        task = self._loading.get(name)
        if task is None:
            task = asyncio.create_task(self._read(name))
            self._loading[name] = task
            task.add_done_callback(lambda _: self._loading.pop(name, None))
        return await asyncio.shield(task)

    async def _read(self, name: str) -> _Entry:
        key, position = self.keys.record(name), self.keys.position
        refresh = name in self._refresh
        self._refresh.discard(name)
        epoch = self._epoch
        self._start_reads([name])
        state: Any = None
        try:
            for _ in range(_READ_TRIES):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.time()  # before the storage read: see SEED and REPLACE
                    await self._read_script(keys=[key, position], client=pipe)
                    now, state = await pipe.execute()
                if state[0] and not refresh:
                    break
                stored = await self._storage_read(name)
                args = [*self._seed_args(name, stored), _ms(now), state[0] or b"", self._absent_ms]
                if refresh:
                    state = await self._replace(keys=[key, self.keys.bus, position], args=args)
                else:
                    state = await self._seed(keys=[key, position], args=args)
                if state[0] != b"retry":
                    break
        except StorageError:
            self._end_reads([name])
            raise
        except Exception as exc:  # the driver's errors: Redis cannot be reached
            self._end_reads([name])
            raise RedisUnreachable(
                f"cluster: Redis unreachable, the record cannot be read ({exc})"
            ) from exc
        except BaseException:
            self._end_reads([name])
            raise
        try:
            if state[0] == b"retry":
                raise RecordsUnavailable(_LATE.format(names=1, tries=_READ_TRIES))
            await self._caught_up(int(state[4]))
            return self._adopt(name, _decode(name, state), epoch)
        finally:
            self._end_reads([name])

    def _start_reads(self, names: list[str]) -> None:
        reads = self._reads
        for name in names:
            reads[name] = reads.get(name, 0) + 1

    @property
    def reads_open(self) -> int:
        """Names being read now (changes that arrive meanwhile are kept for them)."""
        return len(self._reads)

    def _end_reads(self, names: list[str]) -> None:
        reads = self._reads
        for name in names:
            if reads[name] > 1:
                reads[name] -= 1
            else:
                del reads[name]
                self._seen.pop(name, None)

    def _adopt(self, name: str, entry: _Entry, epoch: int) -> _Entry:
        """``entry``, read from Redis (in ``epoch``) once the bus caught up with it, or the
        cached state if that is as new (the bus brought it, or a newer one, meanwhile).
        Cached unless a ``resync`` dropped the cache since it was read: a change the bus
        missed may be newer, and the cache would keep it unseen."""
        if epoch != self._epoch:
            return entry
        seen = self._seen.get(name)
        if seen is not None and seen.seq > entry.seq:
            entry = seen  # changed after it was read
        current = self._cache.get(name)
        if current is not None and current.seq >= entry.seq and self._trusted():
            return current  # untrusted: what Redis answered is the newest this node knows
        if name in self._refresh:  # NOTIFYed meanwhile: the next load re-reads storage
            return entry
        self._install(name, entry)
        return entry

    async def _storage_read(self, name: str) -> Snapshot | None:
        async with self._slots:
            return await self.connector.get(name)

    async def _storage_read_many(self, names: list[str]) -> dict[str, Snapshot]:
        async with self._slots:
            return await self.connector.get_many(names)

    def _seed_args(self, name: str, stored: Snapshot | None) -> list[Any]:
        """The first ``SEED`` / ``REPLACE`` arguments for what storage holds of ``name``."""
        if stored is None:
            return [name, self._ttl_ms, "0", 0, ""]
        return [name, self._ttl_ms, "1", stored.version, payload.dumps(stored.data)]

    # -- commits -------------------------------------------------------------------------

    async def commit(
        self, name: str, new: Record | None, base: Record | None, *, local: Any, ack: bool
    ) -> asyncio.Future[None] | None:
        """Make ``new`` (None: delete) the record's state if ``base`` is still current.

        ``local`` travels to ``on_change`` with this change's bus delivery; this returns once
        that delivery happened. Returns, with ``ack``, a future resolved once storage holds
        this version or newer. Raises ``CommitConflict`` (with the current record) if ``base``
        is stale, ``RecordsUnavailable`` if Redis cannot be reached (the change may or may not
        have been made: if it was, every node, this one too, receives it from the bus),
        ``BackPressure`` at ``write_behind.max_pending``.
        """
        entry = self._cache.get(name)
        if entry is None or entry.record is not base:
            if entry is None:  # evicted, or never read here: read it, then run again
                entry = await self._entry(name)
            self.commit_conflicts += 1
            raise CommitConflict(entry.record)
        self.flusher.admit()
        epoch = self._epoch
        key = self.keys.record(name)
        self._tags += 1
        tag = f"{self.node_id}#{self._tags}"
        self._local[tag] = local
        if new is None:
            args = [entry.seq, "d", 0, "", name, tag]
        else:
            args = [entry.seq, "p", new.version, payload.dumps(new.data), name, tag]
        keys = [key, self.keys.dirty, self.keys.bus, self.keys.position]
        try:
            reply = await self._commit(keys=keys, args=args)
        except Exception as exc:
            self._local.pop(tag, None)
            raise RecordsUnavailable(
                f"cluster: Redis did not confirm the change ({type(exc).__name__}: {exc}); "
                "records cannot be written while Redis is unreachable"
            ) from exc
        status = reply[0]
        if status == b"ok":
            seq = int(reply[1])
            self.commits += 1
            # Queued before the wait for the bus: the change is made whether or not this node
            # can answer in order, and must reach storage now, not after orphan_after.
            durable = self.flusher.committed(key, seq, wait=ack)
            try:  # served here, in order, before we answer
                await self._caught_up(int(reply[2]), committed=True)
            except RecordsUnavailable:
                if durable is not None:
                    durable.cancel()  # the client is answered with this error instead
                raise
            self._adopt(name, _Entry(new, seq), epoch)
            return durable
        self._local.pop(tag, None)
        self.commit_conflicts += 1
        if status == b"missing":  # Redis lost it (expired after flush, or restarted): re-read
            self._drop(name)
            raise CommitConflict((await self._entry(name)).record)
        await self._caught_up(int(reply[5]))
        raise CommitConflict(self._adopt(name, _decode(name, reply[1:]), epoch).record)

    async def _caught_up(self, position: int, *, committed: bool = False) -> None:
        """Return once the bus delivered every change up to ``position``; raise
        ``RecordsUnavailable`` if it does not within the bus wait (the bus is away; with
        ``committed``, the error says the change was made), or Redis restarted meanwhile.
        A waiter that gives up leaves the queue (positions of a counter that restarted may
        never come)."""
        if self._position >= position:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (position, next(self._order), future)
        heapq.heappush(self._position_waiters, waiter)
        try:
            async with asyncio.timeout(self._bus_wait):
                await future
        except TimeoutError:
            self.bus_lagged += 1
            made = (
                "the change was made (it reaches every node and storage) but could not be "
                "confirmed in order: "
                if committed
                else ""
            )
            raise RecordsUnavailable(
                f"cluster: {made}the bus is {position - self._position} changes behind Redis "
                f"after {self._bus_wait:g}s (cluster.max_bus_lag; Redis or the connection to "
                "it is struggling)"
            ) from None
        finally:
            if future.cancelled():  # timed out or cancelled: still queued
                with contextlib.suppress(ValueError):
                    self._position_waiters.remove(waiter)
                    heapq.heapify(self._position_waiters)

    @property
    def position_waiters(self) -> int:
        """Answers waiting for the bus to deliver up to their position."""
        return len(self._position_waiters)

    def _counter_restarted(self) -> None:
        """Redis's change counter began again (Redis restarted empty): the positions waited
        for belong to the old counter, and the new one may not reach them for a long time."""
        waiters, self._position_waiters = self._position_waiters, []
        error = RecordsUnavailable(
            "cluster: Redis restarted (its change counter began again) before the bus "
            "delivered the position this answer waited for; try again (a change made just "
            "before the restart may be lost)"
        )
        for _, _, future in waiters:
            if not future.done():
                future.set_exception(error)

    def _wake_position(self) -> None:
        waiters, position = self._position_waiters, self._position
        while waiters and waiters[0][0] <= position:
            future = heapq.heappop(waiters)[2]
            if not future.done():
                future.set_result(None)

    # -- the protocol's write methods, for callers that do not commit (none in a cluster) --

    def put(self, record: Record) -> None:
        raise RuntimeError("a cluster node writes records through commit()")

    async def delete(self, name: str) -> asyncio.Future[None]:
        raise RuntimeError("a cluster node deletes records through commit()")

    # A cluster node's acknowledgements come from ``commit`` (its future waits for ``f``, the
    # sequence storage holds): a wait by name and version could not tell a flush in flight
    # from none, and resolved before storage had the write.

    async def durable(self, name: str, version: int) -> None:
        raise RuntimeError("a cluster node waits for durability through commit()")

    def watch(self, name: str, version: int) -> asyncio.Future[None]:
        raise RuntimeError("a cluster node waits for durability through commit()")

    def forget(self, name: str) -> None:
        """NOTIFY: storage changed behind the cluster's back. The next load re-reads storage
        and, unless the cluster has writes of the record not yet stored, makes what storage
        holds the cluster's state (announced to every node)."""
        self._drop(name)
        self._refresh.add(name)

    def _overtaken(self, name: str) -> None:
        """Storage got a write of a state Redis lost, after the record was seeded again:
        storage changed behind the new state's back. Re-read it as NOTIFY does (``REPLACE``
        makes it the state, announced to every node, unless newer changes are not stored)."""
        self.forget(name)
        task = asyncio.create_task(self._refresh_now(name))
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    def _refused(self, name: str, key: str, seq: int, version: int) -> None:
        """Storage refused for good the put of ``version`` of ``name`` (sequence ``seq``);
        its writers were told. Undo it (``_revert``), as a task: the flusher goes on."""
        task = asyncio.create_task(self._revert(name, key, seq, version))
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def _revert(self, name: str, key: str, seq: int, version: int) -> None:
        """Commit storage's state of ``name`` over the refused state of sequence ``seq``,
        unless a newer commit superseded it (that one is flushed, or refused, on its own).
        Storage's data gets a version above the refused one (every node served that version:
        versions only rise for clients) and is written back like any commit, so storage and
        clients agree; a record storage lacks becomes a tombstone. Until that commit is stored
        the record stays dirty; then it is clean and expires after ``record_ttl``, like any
        record: a refused state neither stays in Redis nor is served as current. If storage
        or Redis is away, the flusher refuses the state again at its next try (every
        ``orphan_after``) and this runs again."""
        try:
            stored = await self._storage_read(name)
            if stored is None:
                args: list[Any] = [str(seq), "d", 0, "", name, ""]
            else:
                new_version = max(version, stored.version) + 1
                args = [str(seq), "p", new_version, payload.dumps(stored.data), name, ""]
            keys = [key, self.keys.dirty, self.keys.bus, self.keys.position]
            reply = await self._commit(keys=keys, args=args)
        except Exception as exc:
            _throttled.warning(
                "cluster: cannot restore storage's state of record %r over a state storage "
                "refused (%s: %s); trying again after cluster.orphan_after",
                name,
                type(exc).__name__,
                exc,
            )
            return
        if reply[0] == b"ok":
            self.flusher.reverted += 1
            self.flusher.committed(key, int(reply[1]), wait=False)

    async def _refresh_now(self, name: str) -> None:
        try:
            await self._entry(name)
        except Exception as exc:
            log.warning("cluster: cannot re-read record %r from storage (%s)", name, exc)

    # -- the bus -------------------------------------------------------------------------

    def received(self, message: list[Any]) -> None:
        """``["rec", name, seq, version, data or false, tag, position]`` from a commit script.

        Served to ``on_change`` unless this node holds the record at this sequence or newer
        (a state it read from Redis before the change arrived): its clients have that already.
        """
        if len(message) < 7:
            return
        _, name, seq_text, version, data, tag, position = message[:7]
        try:
            if not isinstance(name, str):
                return
            local = self._local.pop(tag, None) if isinstance(tag, str) and tag else None
            current = self._cache.get(name)
            reading = name in self._reads
            if current is None and not reading and not self.interested(name):
                self._evicted.pop(name, None)
                return
            seq = int(seq_text)
            if current is not None and current.seq >= seq:
                return
            if current is None and name in self._evicted:  # served here, data evicted
                if self._evicted[name] >= seq:
                    return
                self._evicted[name] = seq
            if isinstance(data, str):
                record: Record | None = Record(name, int(version), json.loads(data), len(data))
                text: str | None = data
            else:
                record, text = None, None
            if current is not None:
                self._install(name, _Entry(record, seq))
            elif reading:
                self._seen[name] = _Entry(record, seq)
            if self.on_change is not None:
                self.on_change(name, record, text, local)
        finally:
            if isinstance(position, str) and position.isdigit():
                reached = int(position)
                self._latest = max(self._latest, reached)
                if reached > self._position:
                    self._position = reached
                    self._wake_position()

    async def resync(self, subscribed: Iterable[str]) -> None:
        """The bus was subscribed again: changes may have been missed meanwhile. Drop the
        cache, re-read every record in ``subscribed``, and serve each one's current state to
        its subscribers (a jump to the current version: complete data, nothing a client must
        repair).

        Nothing to do while the bus that the cache follows still delivers (the node
        registered again after its heartbeat lapsed, its bus intact): the bus lost nothing,
        and a re-read would take Redis's counter as delivered while the bus still brings the
        changes before it, pushing a newer version first and dropping those (a gap). Unless
        Redis's counter went back meanwhile (Redis emptied under a live connection)."""
        if self._trusted():
            before = self._position
            try:
                found = int(await self._redis.get(self.keys.position) or 0)
            except Exception:  # Redis away: the bus loses it too and resyncs then
                return
            if found >= before:
                return
        names = list(dict.fromkeys(subscribed))
        self._epoch += 1  # reads in flight may predate changes the bus missed
        self._cache.clear()
        self._evicted.clear()
        self._bytes = 0
        self._seen.clear()
        self._local.clear()  # their bus messages may never come
        try:
            await self.subscribed()
        except Exception as exc:
            log.warning("cluster: cannot read the change position after a bus outage (%s)", exc)
        for start in range(0, len(names), _RESYNC_BATCH):
            try:
                states = await self.load_many(names[start : start + _RESYNC_BATCH])
            except Exception as exc:
                log.warning("cluster: cannot re-read records after a bus outage (%s)", exc)
                continue
            for name, record in states.items():
                text = None if record is None else payload.dumps(record.data)
                if self.on_change is not None:
                    self.on_change(name, record, text, None)

    # -- the cache -----------------------------------------------------------------------

    def _install(self, name: str, entry: _Entry) -> None:
        old = self._cache.pop(name, None)
        if old is not None and old.record is not None:
            self._bytes -= old.record.size
        self._cache[name] = entry
        if entry.record is not None:
            self._bytes += entry.record.size
        cache, interested = self._cache, self.interested
        max_records, max_bytes = self._cache_config.max_records, self._cache_config.max_bytes
        self._evicted.pop(name, None)
        # Oldest first. A record with subscribers here keeps only its sequence (its changes
        # must still be compared with what this node served), not its data: the cache's
        # bounds hold whatever clients subscribe to.
        while len(cache) > 1 and (len(cache) > max_records or self._bytes > max_bytes):
            oldest, evicted = cache.popitem(last=False)
            if evicted.record is not None:
                self._bytes -= evicted.record.size
            if interested(oldest):
                self._evicted[oldest] = evicted.seq
        if len(self._evicted) > self._evicted_prune:  # unsubscribed since: forget them
            self._evicted = {n: seq for n, seq in self._evicted.items() if interested(n)}
            self._evicted_prune = max(max_records, 2 * len(self._evicted))

    def _drop(self, name: str) -> None:
        self._evicted.pop(name, None)
        old = self._cache.pop(name, None)
        if old is not None and old.record is not None:
            self._bytes -= old.record.size


def _decode(name: str, state: list[Any]) -> _Entry:
    """``[s, v, x, d]`` as Redis returns it."""
    seq, version, tomb, data = state[:4]
    if tomb == b"1" or not data:
        return _Entry(None, int(seq))
    text = data.decode() if isinstance(data, bytes) else str(data)
    return _Entry(Record(name, int(version), json.loads(text), len(text)), int(seq))


def _ms(time: tuple[int, int]) -> int:
    """Redis ``TIME`` in milliseconds."""
    return int(time[0]) * 1000 + int(time[1]) // 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
