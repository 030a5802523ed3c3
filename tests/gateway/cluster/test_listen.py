"""Listening across real cluster nodes, with the project's Python client: the node that
coordinates a name dies (another node that subscribes takes over, one provider stays, REMOVED
still comes when the last subscriber leaves) and Redis goes away (offers wait, then happen).
The official JS client (offers, one provider per name, a listener's node SIGKILLed):
tests/interop/test_cluster.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from conformance.netfaults import FaultProxy
from gateway.client import Client
from tests.gateway.cluster.nodes import ClusterNode, ClusterNodes
from tests.proxy import TcpProxy
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

    def found_when(self, release: asyncio.Event) -> Callable[[str], Awaitable[bool]]:
        """A ``found`` that logs the offer (``asked``) at once and accepts when ``release``
        is set."""

        async def found(name: str) -> bool:
            self.log.append(("asked", name))
            await release.wait()
            return self.found(name)

        return found


async def _connected(node: ClusterNode, username: str) -> Client:
    """A client of ``node``, logged in as ``username``."""
    client = Client(node.ws_url, auth={"username": username})
    await client.connect()
    return client


async def _reconnected(proxy: TcpProxy, before: int) -> None:
    """Until the node behind ``proxy`` has connected again (commands and bus)."""
    await _until("the node to reconnect", lambda: proxy.connections > before + 1)


def _slow_listening(timeout: float) -> str:
    """Listen options: ``timeout`` per listener (twice that for another node), no rematch
    (only the remedies under test offer a name again)."""
    return f"listen:\n  response_timeout: {timeout}\n  rematch_interval: 0\n"


def _small_bus_queue(tmp_path: Path, redis: RedisServer, timeout: float) -> ClusterNodes:
    """Nodes whose bus queue holds 1000 bytes, listening as ``_slow_listening(timeout)``; a
    stall of seconds is no lost bus (cluster.bus_check_interval 10 s): only drops."""
    return ClusterNodes(
        tmp_path,
        redis,
        node_timeout=6.0,
        extra=_slow_listening(timeout),
        options={"max_bus_queue_bytes": 1000, "bus_check_interval": 10},
    )


async def _overflow(proxy: FaultProxy, emitter: Client, node: ClusterNode) -> float:
    """Stalls ``node``'s Redis path (``proxy``) and has ``emitter`` (a client of ``node``) emit
    until its bus queue drops messages; the drops counted then. The path stays frozen."""
    proxy.freeze()
    for i in range(100):  # about 25 bytes each: the queue fills up to its last 25
        emitter.event.emit(f"n/{i}", "x" * 8)
    await _until(
        "the queue to overflow",
        lambda: node.metrics()["recordgate_cluster_bus_dropped_total"] >= 1,
    )
    return node.metrics()["recordgate_cluster_bus_dropped_total"]


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
    listener = await _connected(b, "listener")
    subscriber = await _connected(a, "subscriber")
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


async def test_a_lost_message_to_the_coordinator_is_made_up_after_its_bus_returns(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """The coordinator's Redis path is cut while the last subscriber (on another node) leaves:
    the notice to the coordinator is lost with its bus connection. Once the bus is back, the
    coordinator checks what it coordinates and the provider hears REMOVED all the same."""
    async with TcpProxy("127.0.0.1", redis.port) as proxy:
        coordinator = cluster.add(via=proxy.port)  # node0
        await asyncio.to_thread(coordinator.start)  # the proxy forwards in this loop
        other, listening = cluster.add(), cluster.add()
        await asyncio.to_thread(other.start)
        await asyncio.to_thread(listening.start)
        provider = Provider()
        listener = Client(listening.ws_url, auth={"username": "listener"})
        first = Client(coordinator.ws_url, auth={"username": "first"})
        last = Client(other.ws_url, auth={"username": "last"})
        for client in (listener, first, last):
            await client.connect()
        await listener.event.listen("^lost/.*", provider.found, provider.removed)
        await asyncio.sleep(0.5)
        await first.event.subscribe("lost/1", lambda data: None)  # node0 coordinates
        await _until("the offer", lambda: provider.active == {"lost/1"})
        await last.event.subscribe("lost/1", lambda data: None)
        await first.event.unsubscribe("lost/1")  # node0 still coordinates, for node1
        await asyncio.sleep(0.5)
        assert provider.active == {"lost/1"}

        connections = proxy.connections
        await proxy.cut()  # shorter than node_timeout: node0 is not presumed dead
        await last.event.unsubscribe("lost/1")  # node1 tells node0, whose bus is down
        await _until(
            "node1 to have told node0",
            lambda: other.metrics()["recordgate_cluster_listen_pending"] == 0,
        )
        await asyncio.sleep(0.2)
        await proxy.restore()
        await _until("node0 to reconnect", lambda: proxy.connections > connections + 1)
        took = await _until("REMOVED after node0's bus returned", lambda: not provider.active)
        print(f"REMOVED {took:.1f} s after the proxy was restored")
        assert provider.log == [("found", "lost/1"), ("removed", "lost/1")]
        assert "lost Redis" in coordinator.log_text()
        assert "heartbeat had lapsed" not in coordinator.log_text()
        for client in (listener, first, last):
            await client.close()
        await asyncio.to_thread(coordinator.stop)  # while the proxy still forwards


async def test_a_lost_provider_notice_is_made_up_after_the_coordinators_bus_returns(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """The provider on node1 leaves while the coordinator's Redis path is cut: node1's notice
    is lost. Once its bus is back, the coordinator asks node1 again, hears it has no provider
    any more, and offers the name to the listener on node2 (rematch is 30 s: not that)."""
    async with TcpProxy("127.0.0.1", redis.port) as proxy:
        coordinator = cluster.add(via=proxy.port)
        await asyncio.to_thread(coordinator.start)
        nodes = [cluster.add(), cluster.add()]
        for node in nodes:
            await asyncio.to_thread(node.start)
        subscriber = Client(coordinator.ws_url, auth={"username": "subscriber"})
        await subscriber.connect()
        providers, listeners = [Provider(), Provider()], []
        for i, node in enumerate(nodes):
            client = Client(node.ws_url, auth={"username": f"listener{i}"})
            await client.connect()
            listeners.append(client)
        await listeners[0].event.listen("^gone/.*", providers[0].found, providers[0].removed)
        await asyncio.sleep(0.5)
        await subscriber.event.subscribe("gone/1", lambda data: None)
        await _until("node1's listener to provide", lambda: providers[0].active == {"gone/1"})
        await listeners[1].event.listen("^gone/.*", providers[1].found, providers[1].removed)
        await asyncio.sleep(0.5)
        assert providers[1].log == []  # provided already: not offered

        connections = proxy.connections
        await proxy.cut()
        await listeners[0].event.unlisten("^gone/.*")  # node1 tells node0: lost
        await asyncio.sleep(0.3)
        await proxy.restore()
        await _until("node0 to reconnect", lambda: proxy.connections > connections + 1)
        took = await _until("the offer to node2's listener", lambda: providers[1].active)
        print(f"offered to node2 {took:.1f} s after node0 reconnected")
        assert providers[1].log == [("found", "gone/1")]
        assert "heartbeat had lapsed" not in coordinator.log_text()
        for client in (subscriber, *listeners):
            await client.close()
        await asyncio.to_thread(coordinator.stop)


async def test_a_lost_removed_is_made_up_after_the_listeners_bus_returns(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """The listener's node reaches Redis through a proxy, cut while the last subscriber leaves:
    the coordinator's REMOVED is lost. Once the listener's bus is back, its node tells the
    coordinator again what it provides, hears REMOVED, and the listener hears it."""
    async with TcpProxy("127.0.0.1", redis.port) as proxy:
        coordinator = cluster.add()
        await asyncio.to_thread(coordinator.start)
        listening = cluster.add(via=proxy.port)
        await asyncio.to_thread(listening.start)
        provider = Provider()
        listener = await _connected(listening, "listener")
        subscriber = await _connected(coordinator, "subscriber")
        await listener.event.listen("^void/.*", provider.found, provider.removed)
        await asyncio.sleep(0.5)
        await subscriber.event.subscribe("void/1", lambda data: None)
        await _until("the offer", lambda: provider.active == {"void/1"})

        connections = proxy.connections
        await proxy.cut()
        await subscriber.event.unsubscribe("void/1")  # the coordinator's REMOVED: lost
        await _until(
            "the coordinator to have given the name up",
            lambda: coordinator.metrics()["recordgate_cluster_listen_coordinated"] == 0,
        )
        await asyncio.sleep(0.2)
        assert provider.active == {"void/1"}
        await proxy.restore()
        await _until(
            "the listener's node to reconnect", lambda: proxy.connections > connections + 1
        )
        took = await _until(
            "REMOVED after the listener's bus returned", lambda: not provider.active
        )
        print(f"REMOVED {took:.1f} s after the listener's node reconnected")
        assert provider.log == [("found", "void/1"), ("removed", "void/1")]
        assert "heartbeat had lapsed" not in listening.log_text()
        for client in (listener, subscriber):
            await client.close()
        await asyncio.to_thread(listening.stop)


async def test_an_accept_lost_on_the_way_is_voided_when_the_coordinator_gave_up(
    tmp_path: Path, redis: RedisServer
) -> None:
    """The coordinator's Redis path is cut while its listener (on another node) accepts: the
    accept is lost, the coordinator's wait ends. Its LISTEN_RESPONSE_TIMEOUT, sent once Redis
    is back, voids the listener's provision: it hears REMOVED instead of providing a name the
    coordinator believes unprovided (it would offer it to another listener). Then, its bus
    subscribed again, the coordinator searches again for the name it gave up on: the
    listener is offered it again and provides it (before: unprovided until the rematch)."""
    cluster = ClusterNodes(tmp_path, redis, node_timeout=6.0)  # a cut of 1.5 s is no death
    release = asyncio.Event()
    provider = Provider()

    try:
        async with TcpProxy("127.0.0.1", redis.port) as proxy:
            coordinator = cluster.add(via=proxy.port)
            await asyncio.to_thread(coordinator.start)
            listening = cluster.add()
            await asyncio.to_thread(listening.start)
            listener = await _connected(listening, "listener")
            subscriber = await _connected(coordinator, "subscriber")
            await listener.event.listen("^late/.*", provider.found_when(release), provider.removed)
            await asyncio.sleep(1.0)
            await subscriber.event.subscribe("late/1", lambda data: None)
            await _until("the offer", lambda: ("asked", "late/1") in provider.log)
            await proxy.cut()
            release.set()  # the accept goes to the coordinator, whose bus is down
            await asyncio.sleep(1.5)  # the coordinator waits 2 x listen.response_timeout
            await proxy.restore()
            await _until("the offer again", lambda: len(provider.log) == 5)
            assert provider.log == [
                ("asked", "late/1"),
                ("found", "late/1"),
                ("removed", "late/1"),
                ("asked", "late/1"),
                ("found", "late/1"),
            ]
            await asyncio.sleep(1.0)
            assert provider.active == {"late/1"} and len(provider.log) == 5
            assert "heartbeat had lapsed" not in coordinator.log_text()
            for client in (listener, subscriber):
                await client.close()
            await asyncio.to_thread(coordinator.stop)
    finally:
        cluster.stop()


@pytest.mark.parametrize("restored", ["while-the-coordinator-waits", "after-it-gave-up"])
async def test_an_offer_lost_while_the_listeners_bus_is_away_is_made_again_once_it_returns(
    tmp_path: Path, redis: RedisServer, restored: str
) -> None:
    """The listener's node is cut from Redis while a name is subscribed on the coordinator:
    the offer to it is lost. Once its bus is back it tells every node so, and the coordinator
    asks it again, whether its search still waits on that node (response_timeout 5: it waits
    10 s) or gave up already (0.5: 1 s). Rematch is off: nothing else offers the name again.
    The listener is offered the name once."""
    timeout = 5.0 if restored == "while-the-coordinator-waits" else 0.5
    cluster = ClusterNodes(tmp_path, redis, node_timeout=6.0, extra=_slow_listening(timeout))
    provider = Provider()
    try:
        async with TcpProxy("127.0.0.1", redis.port) as proxy:
            coordinator = cluster.add()
            await asyncio.to_thread(coordinator.start)
            listening = cluster.add(via=proxy.port)
            await asyncio.to_thread(listening.start)
            listener = await _connected(listening, "listener")
            subscriber = await _connected(coordinator, "subscriber")
            await listener.event.listen("^away/.*", provider.found, provider.removed)
            await asyncio.sleep(0.5)

            connections = proxy.connections
            await proxy.cut()
            await subscriber.event.subscribe("away/1", lambda data: None)
            await _until(
                "the coordinator to search",
                lambda: coordinator.metrics()["recordgate_cluster_listen_coordinated"] == 1,
            )
            await asyncio.sleep(0.3 if timeout > 1 else 1.5)  # offered; or given up too
            assert provider.log == []
            await proxy.restore()
            await _reconnected(proxy, connections)
            took = await _until("the offer", lambda: provider.active == {"away/1"})
            print(f"offered {took:.1f} s after the listener's node reconnected")
            await asyncio.sleep(1.0)
            assert provider.log == [("found", "away/1")]
            assert "heartbeat had lapsed" not in listening.log_text()
            for client in (listener, subscriber):
                await client.close()
            await asyncio.to_thread(listening.stop)
    finally:
        cluster.stop()


async def test_an_accept_lost_while_the_coordinator_waits_is_asked_for_again(
    tmp_path: Path, redis: RedisServer
) -> None:
    """The coordinator is cut from Redis while the listener (on another node) accepts: the
    accept is lost. The coordinator's bus returns before its wait ends (response_timeout 3:
    it waits 6 s): it asks that node again, which accepts at once for the listener already
    providing. The listener hears one offer and no REMOVED (before: the coordinator gave up
    after 6 s and voided the provision)."""
    cluster = ClusterNodes(tmp_path, redis, node_timeout=6.0, extra=_slow_listening(3.0))
    release = asyncio.Event()
    provider = Provider()

    try:
        async with TcpProxy("127.0.0.1", redis.port) as proxy:
            coordinator = cluster.add(via=proxy.port)
            await asyncio.to_thread(coordinator.start)
            listening = cluster.add()
            await asyncio.to_thread(listening.start)
            listener = await _connected(listening, "listener")
            subscriber = await _connected(coordinator, "subscriber")
            await listener.event.listen("^wait/.*", provider.found_when(release), provider.removed)
            await asyncio.sleep(1.0)
            await subscriber.event.subscribe("wait/1", lambda data: None)
            await _until("the offer", lambda: ("asked", "wait/1") in provider.log)
            connections = proxy.connections
            await proxy.cut()
            release.set()  # the accept goes to the coordinator, whose bus is down
            await asyncio.sleep(0.5)
            await proxy.restore()
            await _reconnected(proxy, connections)
            await asyncio.sleep(7.0)  # past the coordinator's wait of 6 s
            assert provider.log == [("asked", "wait/1"), ("found", "wait/1")]
            assert provider.active == {"wait/1"}
            assert coordinator.metrics()["recordgate_cluster_listen_coordinated"] == 1
            assert "heartbeat had lapsed" not in coordinator.log_text()
            for client in (listener, subscriber):
                await client.close()
            await asyncio.to_thread(coordinator.stop)
    finally:
        cluster.stop()


async def test_a_node_asked_again_offers_each_name_to_its_listener_once(
    tmp_path: Path, redis: RedisServer
) -> None:
    """Asking a node again must never make its listener hear a second offer, nor start a
    second provider. Three names are offered to a slow listener; while it decides, its node's
    bus goes and returns (every coordinator asks it again: it is searching already), then,
    once it provides them, its node's bus and the coordinator's go and return (both sides ask
    and tell again: it provides already). Each name is offered once, provided once, never
    REMOVED."""
    cluster = ClusterNodes(tmp_path, redis, node_timeout=6.0, extra=_slow_listening(5.0))
    names = [f"once/{i}" for i in range(3)]
    release = asyncio.Event()
    provider = Provider()

    try:
        async with (
            TcpProxy("127.0.0.1", redis.port) as near,
            TcpProxy("127.0.0.1", redis.port) as far,
        ):
            coordinator = cluster.add(via=near.port)
            await asyncio.to_thread(coordinator.start)
            listening = cluster.add(via=far.port)
            await asyncio.to_thread(listening.start)
            listener = await _connected(listening, "listener")
            subscriber = await _connected(coordinator, "subscriber")
            await listener.event.listen("^once/.*", provider.found_when(release), provider.removed)
            await asyncio.sleep(1.0)
            for name in names:
                await subscriber.event.subscribe(name, lambda data: None)
            await _until("the offers", lambda: len(provider.log) == len(names))

            connections = far.connections
            await far.cut()  # while the listener decides: asked again, searching already
            await asyncio.sleep(0.5)
            await far.restore()
            await _reconnected(far, connections)
            await asyncio.sleep(1.5)  # its catch-up, the coordinator's asks, its answers
            release.set()
            await _until("the names provided", lambda: provider.active == set(names))

            for proxy in (far, near):  # provided: each side asks and tells again
                connections = proxy.connections
                await proxy.cut()
                await asyncio.sleep(0.5)
                await proxy.restore()
                await _reconnected(proxy, connections)
            await asyncio.sleep(2.0)
            for name in names:
                assert provider.log.count(("asked", name)) == 1, provider.log
                assert provider.log.count(("found", name)) == 1, provider.log
            assert not [entry for entry in provider.log if entry[0] == "removed"], provider.log
            assert provider.active == set(names)
            assert coordinator.metrics()["recordgate_cluster_listen_coordinated"] == len(names)
            for node in (coordinator, listening):
                assert "heartbeat had lapsed" not in node.log_text()
            for client in (listener, subscriber):
                await client.close()
            for node in (coordinator, listening):
                await asyncio.to_thread(node.stop)
    finally:
        cluster.stop()


async def test_a_listen_message_the_full_bus_queue_dropped_is_made_up_for(
    tmp_path: Path, redis: RedisServer
) -> None:
    """The listener's node reaches Redis through a proxy that stalls (no reset: its bus stays
    subscribed) while its clients emit: its bus queue passes cluster.max_bus_queue_bytes
    (1000 here), and the listener's accept, sent meanwhile, is dropped. Once the queue has
    drained the node makes up for it (it tells the coordinator again what it provides, and
    every node that it dropped messages): the coordinator, waiting 10 s, takes the accept,
    and the listener hears no REMOVED (before: after 10 s LISTEN_RESPONSE_TIMEOUT voided the
    provision; the rematch is off)."""
    cluster = _small_bus_queue(tmp_path, redis, 5.0)
    release = asyncio.Event()
    provider = Provider()

    try:
        async with FaultProxy(("127.0.0.1", redis.port)) as proxy:
            coordinator = cluster.add()
            await asyncio.to_thread(coordinator.start)
            listening = cluster.add(via=proxy.port)
            await asyncio.to_thread(listening.start)
            listener = Client(listening.ws_url, auth={"username": "listener"})
            emitter = Client(listening.ws_url, auth={"username": "emitter"})
            subscriber = Client(coordinator.ws_url, auth={"username": "subscriber"})
            for client in (listener, emitter, subscriber):
                await client.connect()
            await listener.event.listen("^drop/.*", provider.found_when(release), provider.removed)
            await asyncio.sleep(1.0)
            await subscriber.event.subscribe("drop/1", lambda data: None)
            await _until("the offer", lambda: ("asked", "drop/1") in provider.log)

            dropped = await _overflow(proxy, emitter, listening)
            release.set()  # the accept: dropped too
            await _until(
                "the accept to be dropped",
                lambda: listening.metrics()["recordgate_cluster_bus_dropped_total"] > dropped,
            )
            await asyncio.sleep(0.5)
            proxy.thaw()
            await asyncio.sleep(11.0)  # past the coordinator's wait of 10 s
            assert provider.log == [("asked", "drop/1"), ("found", "drop/1")]
            assert provider.active == {"drop/1"}
            assert "heartbeat had lapsed" not in listening.log_text()
            assert "lost Redis" not in listening.log_text()  # the bus never went down
            for client in (listener, emitter, subscriber):
                await client.close()
            await asyncio.to_thread(listening.stop)
    finally:
        cluster.stop()


async def test_a_provider_left_notice_the_full_bus_queue_dropped_is_made_up_for(
    tmp_path: Path, redis: RedisServer
) -> None:
    """As above, but what the full queue drops is the listener's node telling the coordinator
    that its provider left (UNLISTEN): once the queue has drained, every node hears that
    node dropped messages, and the coordinator asks it again about the name it provided,
    hears it has no listener now, and offers the name to the listener on a third node
    (before: the coordinator kept a provider that was gone; the rematch is off)."""
    cluster = _small_bus_queue(tmp_path, redis, 1.0)
    first, other = Provider(), Provider()
    try:
        async with FaultProxy(("127.0.0.1", redis.port)) as proxy:
            coordinator = cluster.add()
            await asyncio.to_thread(coordinator.start)
            listening = cluster.add(via=proxy.port)
            await asyncio.to_thread(listening.start)
            third = cluster.add()
            await asyncio.to_thread(third.start)
            listener = Client(listening.ws_url, auth={"username": "listener"})
            emitter = Client(listening.ws_url, auth={"username": "emitter"})
            late = Client(third.ws_url, auth={"username": "late"})
            subscriber = Client(coordinator.ws_url, auth={"username": "subscriber"})
            for client in (listener, emitter, late, subscriber):
                await client.connect()
            await listener.event.listen("^left/.*", first.found, first.removed)
            await asyncio.sleep(1.0)
            await subscriber.event.subscribe("left/1", lambda data: None)
            await _until("the first listener to provide", lambda: first.active == {"left/1"})
            await late.event.listen("^left/.*", other.found, other.removed)
            await asyncio.sleep(1.0)
            assert other.log == []  # provided already: not offered

            dropped = await _overflow(proxy, emitter, listening)
            await listener.event.unlisten("^left/.*")  # "its provider left": dropped too
            await _until(
                "the notice to be dropped",
                lambda: listening.metrics()["recordgate_cluster_bus_dropped_total"] > dropped,
            )
            proxy.thaw()
            took = await _until("the other listener's offer", lambda: other.active == {"left/1"})
            print(f"offered to the third node's listener {took:.1f} s after the thaw")
            assert other.log == [("found", "left/1")]
            assert "lost Redis" not in listening.log_text()  # the bus never went down
            for client in (listener, emitter, late, subscriber):
                await client.close()
            await asyncio.to_thread(listening.stop)
    finally:
        cluster.stop()
