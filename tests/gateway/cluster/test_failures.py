"""Failures of the parts around a node: Redis going away (events keep flowing locally and the
queued ones reach the other nodes afterwards; a full queue drops and counts) and a node frozen
past its timeout (reaped, then back on its own with its users)."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest

from gateway.client import Client
from tests.gateway.cluster.nodes import ClusterNodes, wait_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


async def _wait(check: Any, what: str, timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if await check() if asyncio.iscoroutinefunction(check) else check():
                return
        except Exception:
            pass
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_events_during_a_redis_outage(cluster: ClusterNodes, redis: RedisServer) -> None:
    a, b = cluster.start(2)
    same, other = [], []  # type: ignore[var-annotated]
    emitter = Client(a.ws_url, auth={"username": "emitter"})
    local = Client(a.ws_url, auth={"username": "local"})
    remote = Client(b.ws_url, auth={"username": "remote"})
    for client in (emitter, local, remote):
        await client.connect()
    await local.event.subscribe("e", same.append)
    await remote.event.subscribe("e", other.append)
    emitter.event.emit("e", "before")
    await _wait(lambda: other == ["before"] and same == ["before"], "the first emit everywhere")

    redis.kill()
    await asyncio.sleep(0.5)
    for n in range(5):
        emitter.event.emit("e", n)
    # local subscribers are served without Redis
    await _wait(lambda: same == ["before", 0, 1, 2, 3, 4], "local delivery without Redis")
    assert other == ["before"]
    redis.start()  # same port, empty

    # Emits queued meanwhile are published when Redis is back; a node whose bus has not yet
    # resubscribed misses them (Pub/Sub keeps nothing): at most once, in order, as on one node.
    async def delivered_after() -> bool:
        emitter.event.emit("e", "after")
        await asyncio.sleep(0.2)
        return "after" in other

    await _wait(delivered_after, "emits reaching the other node after recovery", 20)
    queued = [item for item in other if isinstance(item, int)]
    assert queued == sorted(set(queued))
    assert other[0] == "before"
    assert a.metrics()["recordgate_cluster_bus_dropped_total"] == 0
    for client in (emitter, local, remote):
        await client.close()


async def test_a_full_bus_queue_drops_and_counts(cluster: ClusterNodes, redis: RedisServer) -> None:
    node = cluster.add()
    node.config.write_text(
        node.config.read_text().replace("cluster:\n", "cluster:\n  max_bus_queue: 3\n")
    )
    node.start()
    emitter = Client(node.ws_url, auth={"username": "emitter"})
    local: list[Any] = []
    listener = Client(node.ws_url, auth={"username": "listener"})
    await emitter.connect()
    await listener.connect()
    await listener.event.subscribe("e", local.append)
    redis.kill()
    await asyncio.sleep(0.3)
    for n in range(10):
        emitter.event.emit("e", n)
    await _wait(lambda: local == list(range(10)), "local delivery of all ten")
    wait_until("drops counted", lambda: node.metrics()["recordgate_cluster_bus_dropped_total"] == 7)
    assert "cluster bus queue full (cluster.max_bus_queue 3)" in node.log_text()
    redis.start()
    for client in (emitter, listener):
        await client.close()


async def test_a_frozen_node_is_reaped_then_rejoins_with_its_users(cluster: ClusterNodes) -> None:
    a, b = cluster.start(2)
    watcher = Client(a.ws_url, auth={"username": "watcher"})
    sleeper = Client(b.ws_url, auth={"username": "sleeper"}, heartbeat_interval=60)
    seen: list[tuple[str, bool]] = []
    await watcher.connect()
    await watcher.presence.subscribe(lambda user, on: seen.append((user, on)))
    await sleeper.connect()
    await _wait(lambda: ("sleeper", True) in seen, "sleeper's join")
    assert b.process is not None
    b.process.send_signal(signal.SIGSTOP)
    try:
        await _wait(lambda: ("sleeper", False) in seen, "sleeper's leave (its node reaped)")
    finally:
        b.process.send_signal(signal.SIGCONT)
    # awake, the node finds its heartbeat gone, registers again and re-announces its users
    await _wait(lambda: seen.count(("sleeper", True)) == 2, "sleeper's join again")
    assert "heartbeat had lapsed" in b.log_text()
    assert await watcher.presence.get(["sleeper"]) == {"sleeper": True}
    wait_until("both alive", lambda: a.metrics()["recordgate_cluster_alive_nodes"] == 2)
    for client in (watcher, sleeper):
        await client.close()


async def test_the_bus_queue_is_bounded_in_bytes_too(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """While Redis is away, emits wait in the bus queue. Counting messages alone let 10,000
    (the default cluster.max_bus_queue) of up to 1 MB each be held: ~10 GB of node memory
    from one client within seconds. ``cluster.max_bus_queue_bytes`` bounds what waits; beyond,
    emits are dropped and counted as for a full queue, and /metrics shows the bytes."""
    import json

    from gateway.protocol import EventAction, Message, Topic
    from tests.wire import WireClient

    cluster.options["max_bus_queue_bytes"] = 8 * 1_048_576
    node = cluster.start(1)[0]
    emitter = await WireClient.connect(node.ws_url, login={"username": "emitter"})
    await asyncio.to_thread(redis.kill)
    blob = json.dumps("x" * 900_000)
    for _ in range(20):  # 18 MB of emits for other nodes
        await emitter.send(Message(Topic.EVENT, EventAction.EMIT, name="big", data=blob))
    await asyncio.to_thread(
        wait_until,
        "drops counted",
        lambda: node.metrics()["recordgate_cluster_bus_dropped_total"] >= 10,
    )
    metrics = node.metrics()
    assert 0 < metrics["recordgate_cluster_bus_queued_bytes"] <= 8 * 1_048_576
    assert "cluster.max_bus_queue_bytes" in node.log_text()
    await asyncio.to_thread(redis.start)
    await emitter.close()


async def test_sigterm_stops_a_node_whose_bus_cannot_reach_redis(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """An operator's SIGTERM (systemd, Kubernetes) stops a node whose bus keeps failing to
    reach Redis (cut through a proxy) while a login's presence change and emits for other
    nodes may wait: a bounded grace for them, then "stopped", far within the 15 s after
    which a supervisor (and this harness) kills."""
    import contextlib
    import subprocess
    import time

    from tests.proxy import TcpProxy

    blob = "x" * 900_000
    async with TcpProxy("127.0.0.1", redis.port) as proxy:
        node = cluster.add(via=proxy.port)
        await asyncio.to_thread(node.start)
        client = Client(node.ws_url, auth={"username": "someone"})
        await client.connect()
        await proxy.cut()
        for _ in range(8):
            client.event.emit("e", blob)
        await _wait(lambda: "cannot resubscribe" in node.log_text(), "the bus reconnecting")
        assert node.process is not None
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a thread: the proxy forwards
            await asyncio.to_thread(node.process.wait, 14)
        took = time.monotonic() - started
        exited = node.process.poll()
        await client.close()
    log = node.log_text()
    assert exited == 0, f"still running {took:.1f} s after SIGTERM:\n{log}"
    assert took < 8, f"SIGTERM took {took:.1f} s:\n{log}"
    assert log.rstrip().endswith("INFO recordgate: stopped"), log


async def test_sigterm_stops_a_node_while_redis_restarts_empty(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """SIGTERM while Redis has just restarted empty and the bus resubscribes, publishing
    what waited: the node stopped only when the harness killed it 15 s later (its bus's
    receiver went on receiving after being cancelled, and shutdown awaited it). It must exit
    promptly, "stopped" its last word. (Without the fix: hangs in about half the runs under
    ``-n 2``, the scenario of ``test_the_bus_queue_is_bounded_in_bytes_too``.)"""
    import contextlib
    import subprocess
    import time

    from gateway.protocol import EventAction, Message, Topic
    from tests.wire import WireClient

    cluster.options["max_bus_queue_bytes"] = 8 * 1_048_576
    node = cluster.start(1)[0]
    emitter = await WireClient.connect(node.ws_url, login={"username": "emitter"})
    await asyncio.to_thread(redis.kill)
    blob = json.dumps("x" * 900_000)
    for _ in range(20):  # 18 MB for other nodes: the queue fills, the rest is dropped
        await emitter.send(Message(Topic.EVENT, EventAction.EMIT, name="big", data=blob))
    await asyncio.to_thread(
        wait_until,
        "drops counted",
        lambda: node.metrics()["recordgate_cluster_bus_dropped_total"] >= 10,
    )
    await asyncio.to_thread(redis.start)
    await emitter.close()
    assert node.process is not None
    started = time.monotonic()
    node.process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(node.process.wait, 14)
    took = time.monotonic() - started
    log = node.log_text()
    assert node.process.poll() == 0, f"still running {took:.1f} s after SIGTERM:\n{log}"
    assert took < 8, f"SIGTERM took {took:.1f} s:\n{log}"
    assert log.rstrip().endswith("INFO recordgate: stopped"), log
