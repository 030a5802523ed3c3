"""Listening across real cluster nodes, with the project's Python client: the node that
coordinates a name dies (another node that subscribes takes over, one provider stays, REMOVED
still comes when the last subscriber leaves) and Redis goes away (offers wait, then happen).
The official JS client (offers, one provider per name, a listener's node SIGKILLed):
tests/interop/test_cluster.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.client import Client
from tests.gateway.cluster.nodes import ClusterNodes
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


async def _until(what: str, check: Callable[[], bool], timeout: float = 20) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


class Provider:
    """A listener that accepts every name and logs what it hears."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.active: set[str] = set()

    def found(self, name: str) -> bool:
        self.log.append(("found", name))
        self.active.add(name)
        return True

    def removed(self, name: str) -> None:
        self.log.append(("removed", name))
        self.active.discard(name)


async def test_the_coordinating_node_dies(cluster: ClusterNodes) -> None:
    a, b, c = cluster.start(3)
    provider = Provider()
    listener = Client(c.ws_url, auth={"username": "listener"})
    await listener.connect()
    await listener.event.listen("^news/.*", provider.found, provider.removed)
    first = Client(a.ws_url, auth={"username": "first"})  # node a wants the name first
    second = Client(b.ws_url, auth={"username": "second"})
    await first.connect()
    await second.connect()
    got: list[Any] = []
    await asyncio.sleep(0.5)  # the pattern reaches nodes a and b through Redis
    await first.event.subscribe("news/x", lambda data: None)
    await _until("the offer", lambda: provider.active == {"news/x"})
    await second.event.subscribe("news/x", got.append)
    await asyncio.sleep(0.5)
    assert provider.log == [("found", "news/x")]

    a.kill()  # the coordinator of news/x, with a subscriber
    # node b takes over: the listener on c provides news/x still (or again), once
    took = await _until(
        "node b to coordinate news/x",
        lambda: b.metrics()["recordgate_cluster_listen_coordinated"] == 1,
    )
    print(f"node b coordinated news/x {took:.1f} s after node a was killed")
    await asyncio.sleep(1.0)
    assert provider.active == {"news/x"}
    assert provider.log.count(("found", "news/x")) - provider.log.count(("removed", "news/x")) == 1
    listener.event.emit("news/x", "still provided")
    await _until("the provider's emit at node b", lambda: got == ["still provided"])
    # the last subscriber leaves (node a's died with it): REMOVED reaches the listener
    await second.event.unsubscribe("news/x")
    await _until("REMOVED", lambda: provider.active == set())
    assert provider.log[-1] == ("removed", "news/x")
    for client in (listener, second):
        await client.close()


async def test_offers_wait_for_redis_and_happen_when_it_returns(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    a, b = cluster.start(2)
    provider = Provider()
    listener = Client(b.ws_url, auth={"username": "listener"})
    subscriber = Client(a.ws_url, auth={"username": "subscriber"})
    await listener.connect()
    await subscriber.connect()
    await listener.event.listen("^jobs/.*", provider.found, provider.removed)
    await asyncio.sleep(0.5)
    await subscriber.event.subscribe("jobs/before", lambda data: None)
    await _until("the first offer", lambda: "jobs/before" in provider.active)

    redis.kill()
    await _until(
        "node a to miss Redis", lambda: a.metrics()["recordgate_cluster_redis_connected"] == 0
    )
    await subscriber.event.subscribe("jobs/during", lambda data: None)
    await asyncio.sleep(1.0)
    assert "jobs/during" not in provider.active  # no offer without Redis: never two providers
    assert a.metrics()["recordgate_cluster_listen_pending"] >= 1
    redis.start()  # empty: the nodes register again, want their names and offer patterns again
    took = await _until("the offer after Redis returned", lambda: "jobs/during" in provider.active)
    print(f"offered {took:.1f} s after Redis returned")
    await asyncio.sleep(1.0)
    for name in ("jobs/before", "jobs/during"):  # one provider each, still or again
        found = provider.log.count(("found", name))
        assert found - provider.log.count(("removed", name)) == 1, provider.log
    await subscriber.event.unsubscribe("jobs/during")
    await _until("REMOVED", lambda: "jobs/during" not in provider.active)
    for client in (listener, subscriber):
        await client.close()


async def test_a_provider_that_leaves_is_replaced_by_a_listener_on_another_node(
    cluster: ClusterNodes,
) -> None:
    a, b, c = cluster.start(3)
    providers = {node.name: Provider() for node in (b, c)}
    listeners = {}
    for node in (b, c):
        client = Client(node.ws_url, auth={"username": f"listener-{node.name}"})
        await client.connect()
        provider = providers[node.name]
        await client.event.listen("^feed/.*", provider.found, provider.removed)
        listeners[node.name] = client
    subscriber = Client(a.ws_url, auth={"username": "subscriber"})
    await subscriber.connect()
    await asyncio.sleep(0.5)
    await subscriber.event.subscribe("feed/1", lambda data: None)

    def active() -> list[str]:
        return [name for name, p in providers.items() if "feed/1" in p.active]

    await _until("a provider", lambda: len(active()) == 1)
    first = active()[0]
    other = next(name for name in providers if name != first)
    await listeners[first].event.unlisten("^feed/.*")  # the provider leaves: UNLISTEN
    providers[first].active.clear()  # it provides nothing now (UNLISTEN has no REMOVED)
    await _until("the other node's listener to provide", lambda: active() == [other])
    assert providers[first].log == [("found", "feed/1")]  # the server does not tell who left
    # and when that one disconnects, the first (listening again) is offered the name again
    await listeners[first].event.listen(
        "^feed/.*", providers[first].found, providers[first].removed
    )
    await listeners[other].close()
    await _until("the first listener to provide again", lambda: "feed/1" in providers[first].active)
    await asyncio.sleep(0.5)
    assert active() == [first]
    for client in (listeners[first], subscriber):
        await client.close()
