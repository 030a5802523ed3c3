"""Waiting for durability on a cluster node, driven directly: ``ClusterRecords`` on a private
redis-server over a memory store whose writes the test holds, so a flush is in flight exactly
when the test asks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from connectors.base import Delete, Put, WriteResult
from connectors.memory import MemoryConnector
from gateway.cluster.records import ClusterRecords
from gateway.config import ClusterConfig, WriteBehindConfig
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)


class HeldConnector(MemoryConnector):
    """Storage whose writes wait for ``release``; ``held`` is set once one is in flight."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        self.held.set()
        await self.release.wait()
        return await super().write(ops)


async def test_no_wait_for_durability_resolves_while_the_write_is_in_flight(
    redis: RedisServer,
) -> None:
    """A change nobody waits for is being flushed (taken off the queue, its write held in
    storage). A wait for that record's durability started now must not resolve before storage
    has it. Before, ``watch``/``durable`` (``Flusher.wait_all``) resolved at once: the record
    was no longer queued and had no waiter. A cluster node acknowledges through ``commit``, so
    they now refuse to be used (RuntimeError, like ``put`` and ``delete``)."""
    import redis.asyncio as aioredis

    url = "memory://cluster-waits"
    MemoryConnector.drop_store(url)
    connector = HeldConnector(url)
    await connector.open()
    cluster = ClusterConfig(url=redis.url, prefix="waits")
    records = ClusterRecords(
        connector, cluster=cluster, write_behind=WriteBehindConfig(interval=0.01)
    )
    client = aioredis.Redis.from_url(redis.url)
    name = "waits/in-flight"
    key = records.keys.record(name)
    try:
        records.bind(client, "n0")
        records.flusher.start()
        await client.hset(
            key,
            mapping={"n": name, "s": "100", "v": "1", "x": "0", "d": "{}", "f": "99", "o": "90"},
        )
        await client.zadd(records.keys.dirty, {key: 1})
        records.flusher.committed(key, 100, wait=False)
        await asyncio.wait_for(connector.held.wait(), 10)
        try:
            waiting = records.watch(name, 1)
        except RuntimeError:
            return  # nothing on a cluster node can be acknowledged this way
        await asyncio.sleep(0.2)
        assert await connector.get(name) is None
        assert not waiting.done(), "resolved while storage does not have the write"
    finally:
        connector.release.set()
        await records.flusher.close(1.0)
        await client.aclose()
        await connector.close()
        MemoryConnector.drop_store(url)
