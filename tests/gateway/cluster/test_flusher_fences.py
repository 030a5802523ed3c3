"""The cluster flusher's fences against a stalled lease holder, driven directly: two Flushers
(two nodes) on a private redis-server, over one memory store, the record's cluster state set
in Redis by hand so that each step happens exactly when the test says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

import pytest

from connectors.base import Delete, Put, Snapshot, WriteResult
from connectors.memory import MemoryConnector
from gateway.cluster.flusher import Flusher
from gateway.cluster.keys import Keys
from gateway.config import ClusterConfig, WriteBehindConfig
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)

LEASE = 0.3  # seconds: flush_lease, short so that the held flush outlives it quickly


class StallingConnector(MemoryConnector):
    """A node's storage path that stalls: its first batch holding a delete waits for
    ``release`` before it reaches storage, and the node then dies (nothing more it sends
    reaches storage), as a node SIGKILLed right after its delayed delete landed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.landed = asyncio.Event()

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        if self.landed.is_set():
            await asyncio.Event().wait()  # dead: never returns
        if any(isinstance(op, Delete) for op in ops):
            self.held.set()
            await self.release.wait()
            results = await super().write(ops)
            self.landed.set()
            return results
        return await super().write(ops)


@pytest.fixture
async def redis_client(redis: RedisServer) -> AsyncIterator[object]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis.url)
    yield client
    await client.aclose()


def _flusher(connector: MemoryConnector, redis_client: object, node: str) -> Flusher:
    cluster = ClusterConfig(prefix="fences", flush_lease=LEASE, orphan_after=60.0)
    flusher = Flusher(connector, Keys("fences"), cluster=cluster, write_behind=WriteBehindConfig())
    flusher.bind(redis_client, node)
    flusher.start()
    return flusher


async def test_a_stalled_holders_delete_cannot_remove_the_life_the_next_holder_stored(
    redis_client: object,
) -> None:
    """A record deleted at version 4 and created again at version 1: one claim's flush is
    ``Delete(4)`` then ``Put(1)``. Node a claims it and its delete stalls past the lease; no
    commit comes meanwhile, so node b claims the same sequence, stores both and acknowledges
    version 1. When a's delete then lands, storage must keep version 1: a's delete must be
    fenced below b's put. (With one fence per claim for both writes, a's delete carries the
    fence of b's put, passes, and deletes the acknowledged version 1: a node dying right
    after leaves it lost.)"""
    url = "memory://flusher-fences-recreate"
    MemoryConnector.drop_store(url)
    keys = Keys("fences")
    name = "cr/phoenix"
    key = keys.record(name)
    seq = 1_000_000
    async with MemoryConnector(url) as storage:
        # Storage holds the old life, written by an earlier claim of the cluster.
        await storage.write([Put(name, 4, {"life": 1}, fence=seq - 10)])
        client: object = redis_client
        await client.hset(  # type: ignore[attr-defined]
            key,
            mapping={
                "n": name,
                "s": str(seq),
                "v": "1",
                "x": "0",
                "d": json.dumps({"life": 2}),
                "dv": "4",
                "f": str(seq - 10),
                "o": str(seq - 20),
            },
        )
        await client.zadd(keys.dirty, {key: 0})  # type: ignore[attr-defined]
        stalling = StallingConnector(url)
        await stalling.open()
        a = _flusher(stalling, redis_client, "a")
        b: Flusher | None = None
        try:
            waiting_a = a.committed(key, seq, wait=True)
            await asyncio.wait_for(stalling.held.wait(), 10)
            await asyncio.sleep(LEASE * 2)  # a's lease lapses; no commit meanwhile
            b = _flusher(MemoryConnector(url), redis_client, "b")
            await b.connector.open()
            waiting_b = b.committed(key, seq, wait=True)
            assert waiting_b is not None
            await asyncio.wait_for(waiting_b, 10)  # acknowledged: storage holds version 1
            reborn = Snapshot(name, 1, {"life": 2})
            assert await storage.get(name) == reborn
            stalling.release.set()  # a's held delete reaches storage now
            await asyncio.wait_for(stalling.landed.wait(), 10)
            assert await storage.get(name) == reborn, (
                "a stalled holder's delete removed the life the next holder stored"
            )
            assert a.fenced == 1
            assert waiting_a is not None and not waiting_a.done()
        finally:
            await a.close(0.1)
            if b is not None:
                await b.close(1.0)
            MemoryConnector.drop_store(url)


class RefusingConnector(MemoryConnector):
    """Storage that refuses, for good, every write of a name under ``poison/`` (as PostgreSQL
    refuses a string holding U+0000 in JSONB: data a client may send)."""

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        if any(op.name.startswith("poison/") for op in ops):
            from gateway.exceptions import StorageRejected

            raise StorageRejected("refused: poison")
        return await super().write(ops)


async def test_records_storage_refuses_do_not_hide_orphans_from_the_sweep(
    redis_client: object,
) -> None:
    """Records whose writes storage refuses for good stay dirty (their writers were told).
    The orphan sweep takes the oldest dirty records, ``batch_size`` at a time: a batch's worth
    of such records, dirty before a node died, must not keep the records it left unflushed
    from being found (before, they were retried first every sweep, and the dead node's
    records never reached storage)."""
    url = "memory://flusher-poison"
    MemoryConnector.drop_store(url)
    keys = Keys("fences")
    client: object = redis_client
    poison = [f"poison/{i}" for i in range(3)]
    orphan = "orphan/left-by-a-dead-node"
    for score, name in enumerate([*poison, orphan], start=1):
        key = keys.record(name)
        await client.hset(  # type: ignore[attr-defined]
            key,
            mapping={"n": name, "s": "100", "v": "1", "x": "0", "d": "{}", "f": "99", "o": "90"},
        )
        await client.zadd(keys.dirty, {key: score})  # type: ignore[attr-defined]
    cluster = ClusterConfig(prefix="fences", flush_lease=LEASE, orphan_after=0.4)
    connector = RefusingConnector(url)
    await connector.open()
    flusher = Flusher(
        connector, keys, cluster=cluster, write_behind=WriteBehindConfig(batch_size=3)
    )
    flusher.bind(redis_client, "sweeper")
    flusher.start()
    try:
        for _ in range(100):  # 10 s
            if await connector.get(orphan) is not None:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the orphan never reached storage: the sweep kept taking poison records")
        assert flusher.failed >= 3  # each poison record was tried, and refused
    finally:
        await flusher.close(0.5)
        await connector.close()
        MemoryConnector.drop_store(url)
