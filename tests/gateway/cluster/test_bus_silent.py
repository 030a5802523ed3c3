"""A node's bus (its Redis Pub/Sub connection) that falls silent: no close, no reset, Redis just
stops answering on it (a partition, a peer that stops answering). Real nodes, a private
redis-server behind ``conformance/netfaults.py``'s FaultProxy, PostgreSQL storage."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.client import Client
from tests.gateway.cluster.nodes import ClusterNode, ClusterNodes
from tests.gateway.cluster.test_records_faults import (
    acknowledged,
    login,
    read_answered,
    read_once,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(180)

CHECK = 0.5
"""``cluster.bus_check_interval`` of these tests: a silent bus is noticed within 2 * CHECK."""

SLACK = 1.0
"""Seconds allowed past that bound: a busy test machine, the metrics poll's own interval."""


def bus(node: ClusterNode) -> tuple[bool, int]:
    """(whether node's subscription delivers, times it was lost)."""
    metrics = node.metrics()
    return (
        metrics["recordgate_cluster_bus_subscribed"] == 1,
        int(metrics["recordgate_cluster_bus_lost_total"]),
    )


async def lost_within(node: ClusterNode, since: float, lost_before: int) -> float:
    """Seconds from ``since`` until ``node`` counted its bus lost (fails past 10 s)."""
    async with asyncio.timeout(10):
        while True:
            subscribed, lost = await asyncio.to_thread(bus, node)
            if lost > lost_before:
                assert not subscribed
                return time.monotonic() - since
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("fault", ["bus-silent", "all-frozen"])
async def test_a_silent_bus_is_noticed_and_its_cache_not_served(
    cluster: ClusterNodes, redis: RedisServer, fault: str
) -> None:
    """Node 1 reaches Redis through a proxy and caches 3 records (version 1). Its bus then falls
    silent: ``bus-silent`` holds only the Pub/Sub connection's answers (its commands flow),
    ``all-frozen`` forwards nothing on any of its connections (a partition). Node 0 writes the
    records again (acknowledged). Node 1 must count its bus lost within
    ``2 * bus_check_interval`` (before: never, while the connection stayed open), and with
    commands flowing its reads must answer version 2 or an error, never its cached version 1
    (before: version 1, for as long as the bus stayed silent). Frozen, its heartbeat notices
    too, when its command times out (5 s). Released, node 1 subscribes again, reads version 2
    and receives node 0's events."""
    from conformance.netfaults import FaultProxy

    names = [f"bus-silent/{fault}/{i}" for i in range(3)]
    cluster.options.update({"bus_check_interval": CHECK, "max_bus_lag": 0.5})
    async with FaultProxy(("127.0.0.1", redis.port)) as proxy:
        cluster.add()
        node = cluster.add(via=proxy.port)
        await cluster.start_added()
        a = await login(cluster[0].ws_url, "a")
        b = await login(cluster[1].ws_url, "b")
        try:
            await acknowledged(a, names, 1)
            for name in names:  # node 1 reads them: cached there
                assert await read_answered(b, name) == (1, {"v": 1}), name
            await asyncio.sleep(2 * CHECK)  # quiet buses keep their subscriptions
            subscribed, lost_before = await asyncio.to_thread(bus, node)
            assert subscribed and lost_before == 0
            since = time.monotonic()
            if fault == "bus-silent":
                proxy.hold_replies_on(b"SUBSCRIBE")
            else:
                proxy.freeze()
            await acknowledged(a, names, 2)  # node 0 alone (directly on Redis)
            took = await lost_within(node, since, lost_before)
            assert took <= 2 * CHECK + SLACK, took
            if fault == "bus-silent":  # Redis answers node 1's reads: never the cached version
                for name in names:
                    got = await read_once(b, name)
                    assert got in (None, (2, {"v": 2})), name
                proxy.release_marked()
            else:  # commands time out (5 s): the heartbeat notices after its next beat
                async with asyncio.timeout(cluster.node_timeout / 3 + 5 + 5):
                    while True:
                        if node.metrics()["recordgate_cluster_redis_connected"] == 0:
                            break
                        await asyncio.sleep(0.1)
                proxy.thaw()
            async with asyncio.timeout(30):  # subscribed again: node 0's versions
                for name in names:
                    assert await read_answered(b, name) == (2, {"v": 2}), name
                while True:
                    if (await asyncio.to_thread(bus, node))[0]:
                        break
                    await asyncio.sleep(0.05)
            await events_cross(cluster[0], node)
        finally:
            await a.close()
            await b.close()


async def events_cross(sender_node: ClusterNode, receiver_node: ClusterNode) -> None:
    """An emit on ``sender_node`` reaches a subscriber on ``receiver_node``."""
    got: list[Any] = []
    receiver = Client(receiver_node.ws_url, auth={"username": "receiver"})
    sender = Client(sender_node.ws_url, auth={"username": "sender"})
    await receiver.connect()
    await sender.connect()
    try:
        await receiver.event.subscribe("bus-silent/news", got.append)
        async with asyncio.timeout(20):
            while not got:  # an emit published before the subscription reached Redis is lost
                sender.event.emit("bus-silent/news", "hello")
                await asyncio.sleep(0.2)
        assert set(got) == {"hello"}
    finally:
        await receiver.close()
        await sender.close()


async def test_a_busy_bus_is_not_counted_lost(cluster: ClusterNodes) -> None:
    """Nodes whose buses carry a steady stream of messages for several check intervals (and
    nodes idle for several) keep their subscriptions: the check demands an answer only after
    quiet, so neither traffic nor quiet alone makes a bus resubscribe (and lose what was
    published meanwhile)."""
    cluster.options.update({"bus_check_interval": 0.1})
    nodes = cluster.start(2)
    await asyncio.sleep(1.0)  # idle: ten intervals
    got: list[Any] = []
    receiver = Client(nodes[1].ws_url, auth={"username": "receiver"})
    sender = Client(nodes[0].ws_url, auth={"username": "sender"})
    await receiver.connect()
    await sender.connect()
    try:
        await receiver.event.subscribe("busy/news", got.append)
        await asyncio.sleep(0.5)
        for n in range(300):  # 3 s of steady traffic
            sender.event.emit("busy/news", n)
            await asyncio.sleep(0.01)
        async with asyncio.timeout(20):
            while True:
                if len(got) >= 300:
                    break
                await asyncio.sleep(0.05)
        assert got == list(range(300))
        for node in nodes:
            assert await asyncio.to_thread(bus, node) == (True, 0), node.name
    finally:
        await receiver.close()
        await sender.close()
