"""Cluster membership and presence with real nodes: ``recordgate start`` processes sharing a
private redis-server and PostgreSQL; clients are the project's Python client over real
sockets. (The official JS client across nodes: ``tests/interop/test_cluster.py``.)"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from gateway.client import Client
from tests.gateway.cluster.nodes import ClusterNodes, wait_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


def alive(node: object) -> float:
    return node.metrics()["recordgate_cluster_alive_nodes"]  # type: ignore[attr-defined, no-any-return]


async def test_sigkilled_node_is_reaped_and_its_users_leave(cluster: ClusterNodes) -> None:
    a, b, c = cluster.start(3)
    wait_until("three nodes alive", lambda: all(alive(n) == 3 for n in (a, b, c)))
    watcher = Client(a.ws_url, auth={"username": "watcher"})
    victim = Client(b.ws_url, auth={"username": "victim"})
    twice = Client(b.ws_url, auth={"username": "both"})  # also online on node c
    twice_c = Client(c.ws_url, auth={"username": "both"})
    seen: list[tuple[str, bool, float]] = []
    await watcher.connect()
    await watcher.presence.subscribe(lambda user, on: seen.append((user, on, time.monotonic())))
    for client in (victim, twice, twice_c):
        await client.connect()
    await _until(lambda: ("victim", True) in [(u, o) for u, o, _ in seen], "victim's join")
    assert sorted(await watcher.presence.get_all()) == ["both", "victim"]

    killed = time.monotonic()
    b.kill()
    await _until(lambda: ("victim", False) in [(u, o) for u, o, _ in seen], "victim's leave", 15)
    took = next(t for u, o, t in seen if (u, o) == ("victim", False)) - killed
    # node_timeout 1.5 s + one heartbeat interval (0.5 s) + a sweep: a few seconds at most
    print(f"dead node detected and its users gone after {took:.2f}s")
    assert took < 6, f"the dead node's users left after {took:.1f}s"
    assert sorted(await watcher.presence.get_all()) == ["both"]  # still online on node c
    assert await watcher.presence.get(["victim", "both"]) == {"victim": False, "both": True}
    assert [(u, o) for u, o, _ in seen] == [("victim", True), ("both", True), ("victim", False)]
    wait_until("two nodes alive", lambda: alive(a) == 2 and alive(c) == 2)
    assert (
        a.metrics()["recordgate_cluster_reaped_nodes_total"]
        + c.metrics()["recordgate_cluster_reaped_nodes_total"]
        == 1
    )
    for client in (watcher, twice_c):
        await client.close()


async def test_redis_restarted_empty_nodes_register_again(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    a, b = cluster.start(2)
    watcher = Client(a.ws_url, auth={"username": "watcher"}, request_timeout=3)
    user = Client(b.ws_url, auth={"username": "user-b"})
    await watcher.connect()
    await user.connect()
    await _until_async(lambda: _has(watcher, "user-b"), "user-b online")

    redis.kill()  # no AOF: it comes back empty, as a Redis that lost its data
    await asyncio.sleep(1.0)
    # Without Redis the node still answers, from its own users (logged, not an error).
    assert await watcher.presence.get(["watcher"]) == {"watcher": True}
    redis.start()
    await _until_async(lambda: _has(watcher, "user-b"), "user-b online again", 15)
    wait_until("both nodes registered again", lambda: alive(a) == 2 and alive(b) == 2)
    assert a.metrics()["recordgate_cluster_redis_connected"] == 1
    await user.close()
    await _until_async(lambda: _gone(watcher, "user-b"), "user-b gone")
    await watcher.close()


async def test_graceful_stop_leaves_at_once(cluster: ClusterNodes) -> None:
    a, b = cluster.start(2)
    watcher = Client(a.ws_url, auth={"username": "watcher"})
    user = Client(b.ws_url, auth={"username": "leaver"}, reconnect=False)
    await watcher.connect()
    await user.connect()
    await _until_async(lambda: _has(watcher, "leaver"), "leaver online")
    stopped = time.monotonic()
    await asyncio.to_thread(b.stop)  # the clients' loop keeps running: they answer the close
    await _until_async(lambda: _gone(watcher, "leaver"), "leaver gone", 10)
    assert time.monotonic() - stopped < 5  # not after node_timeout: the node left the cluster
    assert "missed its heartbeats" not in a.log_text()  # and was not reaped as dead
    assert alive(a) == 1 or wait_until("one node alive", lambda: alive(a) == 1)
    await watcher.close()


def test_node_without_redis_refuses_to_start(cluster: ClusterNodes, redis: RedisServer) -> None:
    redis.kill()
    node = cluster.add()
    secret_url = redis.url.replace("redis://", "redis://agent:s3cret-pw@")
    node.config.write_text(node.config.read_text().replace(redis.url, secret_url))
    process = node.spawn()
    assert process.wait(30) == 1
    log = node.log_text()
    assert f"cannot reach Redis at {redis.url}" in log
    assert "s3cret-pw" not in log


def test_sqlite_storage_with_a_cluster_is_a_config_error(cluster: ClusterNodes) -> None:
    node = cluster.add()
    node.config.write_text(f"cluster:\n  url: {cluster.redis.url}\n  prefix: {cluster.prefix}\n")
    done = subprocess.run(
        [*node.spawn().args], capture_output=True, text=True, timeout=30, cwd=node.workdir
    )
    assert done.returncode == 2
    assert "every node must share one storage" in done.stderr + done.stdout
    assert "embedded SQLite" in done.stderr + done.stdout


def test_a_storage_connector_without_fencing_is_refused(cluster: ClusterNodes) -> None:
    """A cluster node needs fenced writes (a stalled flush must not undo a delete and a
    re-create): a connector without the capability, here the SQL connector as an older
    release would declare it, is refused at start, naming it."""
    node = cluster.add()
    (node.workdir / "unfenced_store.py").write_text(
        "from connectors.sql import SQLConnector\n\n\n"
        "class UnfencedSQL(SQLConnector):\n"
        "    name = 'unfenced-sql'\n"
        "    capabilities = frozenset({'raw', 'network'})\n"
    )
    node.config.write_text(
        node.config.read_text().replace("  type: sql\n", "  type: unfenced_store:UnfencedSQL\n")
    )
    assert node.spawn().wait(30) == 1
    log = node.log_text()
    assert "'unfenced-sql'" in log and "unfenced_store.UnfencedSQL" in log, log
    assert 'capability "fenced"' in log, log


async def _has(client: Client, user: str) -> bool:
    return (await client.presence.get([user]))[user]


async def _gone(client: Client, user: str) -> bool:
    return not (await client.presence.get([user]))[user]


async def _until(check: object, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _until_async(check: object, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():  # type: ignore[operator]
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_redis_that_evicts_keys_is_refused(tmp_path: Path) -> None:
    """Eviction would drop record versions not yet in storage: the node does not start."""
    redis = RedisServer(
        tmp_path / "lru", appendonly=False, maxmemory="100mb", **{"maxmemory-policy": "allkeys-lru"}
    ).start()
    nodes = ClusterNodes(tmp_path, redis)
    try:
        node = nodes.add()
        assert node.spawn().wait(30) == 1
        assert "maxmemory-policy allkeys-lru" in node.log_text()
        assert "set maxmemory-policy noeviction" in node.log_text()
    finally:
        nodes.stop()
        redis.kill()
