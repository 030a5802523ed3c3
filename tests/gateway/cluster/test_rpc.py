"""RPC across real cluster nodes, with the project's Python client: Redis going away (requests
that only another node could serve are answered NO_RPC_PROVIDER at once, local providers still
serve, remote routing returns with Redis) and the bound on requests open at other nodes. The
official JS client (routing, REJECT, timeouts, a node SIGKILLed): tests/interop/test_cluster.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.client import Client
from gateway.exceptions import RpcError
from tests.gateway.cluster.nodes import ClusterNodes
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


async def _until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _answer(client: Client, name: str) -> Any:
    """The RPC's result, or its error code."""
    try:
        return await client.rpc.make(name, None, timeout=10)
    except RpcError as exc:
        return exc.code


async def test_rpc_while_redis_is_away(cluster: ClusterNodes, redis: RedisServer) -> None:
    a, b = cluster.start(2)
    caller = Client(a.ws_url, auth={"username": "caller"})
    here = Client(a.ws_url, auth={"username": "here"})
    there = Client(b.ws_url, auth={"username": "there"})
    for client in (caller, here, there):
        await client.connect()
    await here.rpc.provide("local", lambda _: "a")
    await there.rpc.provide("remote", lambda _: "b")

    async def remote_is(expected: str) -> bool:
        return await _answer(caller, "remote") == expected

    await _until("the provider on node b to be chosen from node a", lambda: remote_is("b"))

    redis.kill()
    # Once node a knows Redis is gone (its next heartbeat), a request only node b could serve
    # is answered at once, not sent into a queue that may never drain.
    await _until("NO_RPC_PROVIDER without Redis", lambda: remote_is("NO_RPC_PROVIDER"))
    started = time.monotonic()
    assert await _answer(caller, "remote") == "NO_RPC_PROVIDER"
    assert time.monotonic() - started < 0.5  # not an ack timeout (1 s)
    assert await _answer(caller, "local") == "a"  # node a's own providers still serve

    redis.start()  # empty: the nodes register again and offer their providers again
    await _until("the provider on node b again after Redis returned", lambda: remote_is("b"))
    late = Client(b.ws_url, auth={"username": "late"})  # a provider offered after the outage
    await late.connect()
    await late.rpc.provide("late", lambda _: "late b")
    await _until("a provider offered after Redis returned", lambda: _is(caller, "late", "late b"))
    for client in (caller, here, there, late):
        await client.close()


async def _is(client: Client, name: str, expected: Any) -> bool:
    return await _answer(client, name) == expected


async def test_requests_open_at_other_nodes_are_bounded(tmp_path: Path, redis: RedisServer) -> None:
    nodes = ClusterNodes(tmp_path, redis, options={"max_remote_rpcs": 2})
    try:
        a, b = nodes.start(2)
        caller = Client(a.ws_url, auth={"username": "caller"})
        provider = Client(b.ws_url, auth={"username": "provider"})
        await caller.connect()
        await provider.connect()
        release = asyncio.Event()

        async def slow(data: Any) -> Any:
            await release.wait()
            return data

        await provider.rpc.provide("slow", slow)
        await provider.rpc.provide("fast", lambda data: data)
        await _until("the provider on node b", lambda: _is(caller, "fast", None))
        held = [asyncio.ensure_future(caller.rpc.make("slow", n, timeout=10)) for n in range(2)]
        await _until(
            "two requests open at node b",
            lambda: _metric(a, "recordgate_cluster_rpc_remote_open", 2),
        )
        # a third is refused with the limit named, counted; nothing is held for it
        code = await _answer(caller, "slow")
        assert "cluster.max_remote_rpcs" in code
        trips = a.metrics()['recordgate_limit_trips_total{limit="cluster.max_remote_rpcs"}']
        assert trips == 1
        release.set()
        assert await asyncio.gather(*held) == [0, 1]
        assert await _answer(caller, "fast") is None  # room again
        assert a.metrics()["recordgate_cluster_rpc_remote_open"] == 0
        await caller.close()
        await provider.close()
    finally:
        nodes.stop()


async def _metric(node: Any, name: str, value: float) -> bool:
    return node.metrics().get(name) == value


async def test_requests_held_for_other_nodes_are_bounded(
    tmp_path: Path, redis: RedisServer
) -> None:
    nodes = ClusterNodes(tmp_path, redis)
    try:
        a, b = nodes.start(2)
        c = nodes.add()  # the providers' node holds at most 2 requests of other nodes
        config = c.config.read_text().replace("cluster:\n", "cluster:\n  max_remote_rpcs: 2\n")
        c.config.write_text(config)
        c.start()
        callers = [Client(node.ws_url, auth={"username": f"caller-{node.name}"}) for node in (a, b)]
        provider = Client(c.ws_url, auth={"username": "provider"})
        for client in (*callers, provider):
            await client.connect()
        release = asyncio.Event()

        async def slow(data: Any) -> Any:
            await release.wait()
            return data

        await provider.rpc.provide("slow", slow)
        await provider.rpc.provide("fast", lambda data: data)
        for caller in callers:
            await _until("the provider on node c", lambda caller=caller: _is(caller, "fast", None))
        held = [asyncio.ensure_future(callers[0].rpc.make("slow", n, timeout=10)) for n in range(2)]
        await _until(
            "two requests held at node c",
            lambda: _metric(c, "recordgate_cluster_rpc_remote_held", 2),
        )
        # node b is far from its own limit; node c refuses, naming the limit, and counts it
        code = await _answer(callers[1], "slow")
        assert "cluster.max_remote_rpcs" in code and "held here" in code
        assert c.metrics()['recordgate_limit_trips_total{limit="cluster.max_remote_rpcs"}'] == 1
        release.set()
        assert await asyncio.gather(*held) == [0, 1]
        assert await _answer(callers[1], "fast") is None  # room again
        assert c.metrics()["recordgate_cluster_rpc_remote_held"] == 0
        for client in (*callers, provider):
            await client.close()
    finally:
        nodes.stop()
