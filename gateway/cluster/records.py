"""Records on a cluster node: the record store whose version authority is Redis.

Invariants (docs/cluster.md, "Records"):

* One version, one value, cluster-wide: a change is made only by ``commit``, a compare-and-set
  script (``record_scripts.COMMIT``) over the sequence of the state the change was computed
  from. A node whose view was stale gets ``CommitConflict`` with the current record, and the
  record handler runs the operation again on it, so its client gets what one node would answer.
* Every commit is published by the script on the bus, so every node receives a record's changes
  in the order Redis ran them; ``received`` hands each one to ``on_change`` (the handler serves
  its subscribers) exactly once while the bus subscription lasts. A node's own commits are
  served from the bus too: its subscribers never see a version that lost, nor versions out of
  order.
* The node's cache holds only states Redis had, each with its sequence; it follows the bus. When
  the bus subscription was lost (some changes may have been missed), ``resync`` drops the cache
  and re-reads the records this node's clients are subscribed to.
* A record unknown to Redis is read from storage and made the cluster state with ``SEED``
  (only if still absent). Storage is written behind by ``flusher``; acknowledgements wait for it.
* Redis unreachable: commits and cache misses fail with ``RecordsUnavailable`` (a clear error to
  the client, never an unordered version); cached records are still served.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from connectors.base import Connector, Snapshot
from gateway.config import CacheConfig, ClusterConfig, WriteBehindConfig
from gateway.exceptions import (
    ClusterUnavailable,
    CommitConflict,
    RecordsUnavailable,
    StorageError,
)
from gateway.protocol import payload
from gateway.store.base import Record, StoreStats
from gateway.store.slots import FairSlots

from . import record_scripts
from .flusher import Flusher
from .keys import Keys

__all__ = ["ClusterRecords"]

log = logging.getLogger(__name__)

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
        self.connector = connector
        self.keys = Keys(cluster.prefix)
        self.config = cluster
        self._cache_config = cache or CacheConfig()
        self._write_behind = write_behind or WriteBehindConfig()
        self.flusher = Flusher(
            connector, self.keys, cluster=cluster, write_behind=self._write_behind
        )
        self.flusher.on_overtaken = self._overtaken
        self._refreshing: set[asyncio.Task[None]] = set()
        self._ttl_ms = int(cluster.record_ttl * 1000)
        self._absent_ms = int(cluster.absent_ttl * 1000)
        self._redis: Any = None
        self.node_id = ""
        self.on_external_change: Callable[[str, Record | None], None] | None = None
        self.on_change: Changed | None = None
        self.interested: Callable[[str], bool] = lambda name: True
        """Whether this node serves someone the changes of ``name`` (its subscribers): a change
        of a record this node neither caches, reads nor serves is not even decoded."""
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._loading: dict[str, asyncio.Task[_Entry]] = {}
        self._seen: dict[str, _Entry] = {}
        """Changes received for a name while it was being read: the newer one wins."""
        self._reading: dict[str, int] = {}
        """Names ``load_many`` is reading (how many times at once)."""
        self._refresh: set[str] = set()
        """Names to re-read from storage (NOTIFY) on their next load."""
        self._local: dict[str, Any] = {}
        """What this node's commits in flight registered, by tag, for their bus delivery."""
        self._tags = 0
        self._slots = FairSlots(max_concurrent_loads)
        self._loads_waiting = 0
        self.commits = 0
        self.commit_conflicts = 0
        """Commits that lost the compare-and-set (and were run again on the current state)."""

    def bind(self, redis: Any, node_id: str) -> None:
        """Use ``redis`` (the node's command connection pool) as ``node_id``."""
        self._redis = redis
        self.node_id = node_id
        self._commit = redis.register_script(record_scripts.COMMIT)
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
            loads_waiting=self._loads_waiting,
            flush_seconds=flusher.flush_seconds,
            errors=dict(flusher.errors),
        )

    # -- reads ---------------------------------------------------------------------------

    def cached(self, name: str) -> Record | None:
        entry = self._cache.get(name)
        return None if entry is None else entry.record

    async def load(self, name: str) -> Record | None:
        entry = self._cache.get(name)
        if entry is not None:
            self._cache.move_to_end(name)
            return entry.record
        return (await self._entry(name)).record

    async def load_many(self, names: list[str]) -> dict[str, Record | None]:
        """``load`` of each name: the uncached ones in one Redis pipeline, those Redis does not
        hold read from storage in one call and seeded in another pipeline."""
        result: dict[str, Record | None] = {}
        missing: list[str] = []
        for name in names:
            entry = self._cache.get(name)
            if entry is not None:
                result[name] = entry.record
            elif name not in missing:
                missing.append(name)
        if not missing:
            return result
        keys = [self.keys.record(name) for name in missing]
        reading = self._reading
        for name in missing:
            reading[name] = reading.get(name, 0) + 1
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.time()  # before any storage read: SEED refuses an answer a ttl old
                for key in keys:
                    pipe.hmget(key, "s", "v", "x", "d")
                now, *states = await pipe.execute()
            absent = [i for i, state in enumerate(states) if state[0] is None]
            for _ in range(_READ_TRIES):
                if not absent:
                    break
                stored = await self._storage_read_many([missing[i] for i in absent])
                async with self._redis.pipeline(transaction=False) as pipe:
                    for i in absent:
                        snapshot = stored.get(missing[i])
                        await self._seed(
                            keys=[keys[i]],
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
            raise
        except Exception as exc:  # the driver's errors: Redis cannot be reached
            raise RecordsUnavailable(
                f"cluster: Redis unreachable, records cannot be read ({exc})"
            ) from exc
        finally:
            seen = {}
            for name in missing:
                if reading[name] == 1:
                    del reading[name]
                    if name in self._seen and name not in self._loading:
                        seen[name] = self._seen.pop(name)
                else:
                    reading[name] -= 1
                    if name in self._seen:
                        seen[name] = self._seen[name]
        if absent:
            raise RecordsUnavailable(_LATE.format(names=len(absent), tries=_READ_TRIES))
        for name, state in zip(missing, states, strict=True):
            entry = _decode(name, state)
            newer = seen.get(name)
            if newer is not None and newer.seq > entry.seq:
                entry = newer  # a change received while reading
            current = self._cache.get(name)
            if current is not None and current.seq >= entry.seq:
                entry = current
            elif name in self._refresh:  # NOTIFYed meanwhile: leave it to the next load
                result[name] = entry.record
                continue
            else:
                self._install(name, entry)
            result[name] = entry.record
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
        key = self.keys.record(name)
        refresh = name in self._refresh
        self._refresh.discard(name)
        state: Any = None
        try:
            for _ in range(_READ_TRIES):
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.time()  # before the storage read: see SEED and REPLACE
                    pipe.hmget(key, "s", "v", "x", "d")
                    now, state = await pipe.execute()
                if state[0] is not None and not refresh:
                    break
                stored = await self._storage_read(name)
                args = [*self._seed_args(name, stored), _ms(now), state[0] or b"", self._absent_ms]
                if refresh:
                    state = await self._replace(keys=[key, self.keys.bus], args=args)
                else:
                    state = await self._seed(keys=[key], args=args)
                if state[0] != b"retry":
                    break
        except StorageError:
            raise
        except Exception as exc:  # the driver's errors: Redis cannot be reached
            raise RecordsUnavailable(
                f"cluster: Redis unreachable, the record cannot be read ({exc})"
            ) from exc
        finally:
            seen = self._seen.pop(name, None)
        if state[0] == b"retry":
            raise RecordsUnavailable(_LATE.format(names=1, tries=_READ_TRIES))
        entry = _decode(name, state)
        if seen is not None and seen.seq > entry.seq:
            entry = seen
        current = self._cache.get(name)
        if current is not None and current.seq >= entry.seq:
            return current
        self._install(name, entry)
        return entry

    async def _storage_read(self, name: str) -> Snapshot | None:
        self._loads_waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._loads_waiting -= 1
        try:
            return await self.connector.get(name)
        finally:
            self._slots.release()

    async def _storage_read_many(self, names: list[str]) -> dict[str, Snapshot]:
        self._loads_waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._loads_waiting -= 1
        try:
            return await self.connector.get_many(names)
        finally:
            self._slots.release()

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

        ``local`` travels to ``on_change`` with this change's bus delivery. Returns, with
        ``ack``, a future resolved once storage holds this version or newer. Raises
        ``CommitConflict`` (with the current record) if ``base`` is stale,
        ``RecordsUnavailable`` if Redis cannot be reached (the change may or may not have
        been made: if it was, every node, this one too, receives it from the bus),
        ``BackPressure`` at ``write_behind.max_pending``.
        """
        entry = self._cache.get(name)
        if entry is None or entry.record is not base:
            if entry is None:  # evicted, or never read here: read it, then run again
                entry = await self._entry(name)
            self.commit_conflicts += 1
            raise CommitConflict(entry.record)
        self.flusher.admit()
        key = self.keys.record(name)
        self._tags += 1
        tag = f"{self.node_id}#{self._tags}"
        self._local[tag] = local
        if new is None:
            args = [entry.seq, "d", 0, "", name, tag]
        else:
            args = [entry.seq, "p", new.version, payload.dumps(new.data), name, tag]
        try:
            reply = await self._commit(keys=[key, self.keys.dirty, self.keys.bus], args=args)
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
            current = self._cache.get(name)
            if current is None or current.seq < seq:
                self._install(name, _Entry(new, seq))
            return self.flusher.committed(key, seq, wait=ack)
        self._local.pop(tag, None)
        self.commit_conflicts += 1
        if status == b"missing":  # Redis lost it (expired after flush, or restarted): re-read
            self._drop(name)
            raise CommitConflict((await self._entry(name)).record)
        fresh = _decode(name, reply[1:])
        current = self._cache.get(name)
        if current is None or current.seq < fresh.seq:
            self._install(name, fresh)
            current = fresh
        raise CommitConflict(current.record)

    # -- the protocol's write methods, for callers that do not commit (none in a cluster) --

    def put(self, record: Record) -> None:
        raise RuntimeError("a cluster node writes records through commit()")

    async def delete(self, name: str) -> asyncio.Future[None]:
        raise RuntimeError("a cluster node deletes records through commit()")

    async def durable(self, name: str, version: int) -> None:
        await self.flusher.wait_all(self.keys.record(name))

    def watch(self, name: str, version: int) -> asyncio.Future[None]:
        return self.flusher.wait_all(self.keys.record(name))

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

    async def _refresh_now(self, name: str) -> None:
        try:
            await self._entry(name)
        except Exception as exc:
            log.warning("cluster: cannot re-read record %r from storage (%s)", name, exc)

    # -- the bus -------------------------------------------------------------------------

    def received(self, message: list[Any]) -> None:
        """``["rec", name, seq, version, data or false, tag]`` from a commit script."""
        if len(message) < 6:
            return
        _, name, seq_text, version, data, tag = message[:6]
        if not isinstance(name, str):
            return
        local = self._local.pop(tag, None) if isinstance(tag, str) and tag else None
        if (
            name not in self._cache
            and name not in self._loading
            and name not in self._reading
            and not self.interested(name)
        ):
            return
        seq = int(seq_text)
        if isinstance(data, str):
            record: Record | None = Record(name, int(version), json.loads(data), len(data))
            text: str | None = data
        else:
            record, text = None, None
        entry = _Entry(record, seq)
        current = self._cache.get(name)
        if current is not None:
            if current.seq < seq:
                self._install(name, entry)
        elif name in self._loading or name in self._reading:
            seen = self._seen.get(name)
            if seen is None or seen.seq < seq:
                self._seen[name] = entry
        if self.on_change is not None:
            self.on_change(name, record, text, local)

    async def resync(self, subscribed: Iterable[str]) -> None:
        """The bus was subscribed again: changes may have been missed meanwhile. Drop the
        cache, re-read every record in ``subscribed`` (cached or evicted: an evicted record's
        subscribers were served from the bus all the same), and serve each one's current state
        to its subscribers (a jump to the current version: complete data, nothing a client
        must repair)."""
        names = list(dict.fromkeys(subscribed))
        self._cache.clear()
        self._bytes = 0
        self._seen.clear()
        self._local.clear()  # their bus messages may never come
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
        cache = self._cache
        max_records, max_bytes = self._cache_config.max_records, self._cache_config.max_bytes
        while len(cache) > 1 and (len(cache) > max_records or self._bytes > max_bytes):
            _, evicted = cache.popitem(last=False)
            if evicted.record is not None:
                self._bytes -= evicted.record.size

    def _drop(self, name: str) -> None:
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
