"""Events across real cluster nodes (private redis-server, PostgreSQL storage), with the
project's Python client; the official JS client: ``tests/interop/test_cluster.py``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.client import Client
from tests.gateway.cluster.nodes import ClusterNodes

pytestmark = pytest.mark.timeout(120)


async def test_an_emit_reaches_subscribers_on_every_node_once_in_order(
    cluster: ClusterNodes,
) -> None:
    nodes = cluster.start(3)
    clients = [Client(node.ws_url, auth={"username": f"c{i}"}) for i, node in enumerate(nodes)]
    got: list[list[Any]] = [[] for _ in clients]
    for client, seen in zip(clients, got, strict=True):
        await client.connect()
        await client.event.subscribe("news/a{b}", seen.append)
    sender = Client(nodes[1].ws_url, auth={"username": "sender"})
    await sender.connect()
    for n in range(200):
        sender.event.emit("news/a{b}", {"n": n, "text": "ünï/{x}"})
    clients[0].event.emit("news/a{b}", "from c0")  # the server does not send it back to c0
    expected = [{"n": n, "text": "ünï/{x}"} for n in range(200)]
    for _ in range(200):
        if all(len(seen) >= 201 for seen in got):
            break
        await asyncio.sleep(0.05)
    for seen in got:  # each sender's emits in its order; two senders: no order between
        assert [data for data in seen if data != "from c0"] == expected
        assert seen.count("from c0") == 1
    await asyncio.sleep(0.3)  # nothing arrives twice
    # c0 got its own emit once: from its client (as the official client does), not the server
    assert [len(seen) for seen in got] == [201, 201, 201]
    metrics = nodes[1].metrics()
    assert metrics["recordgate_cluster_bus_published_total"] >= 200
    assert metrics["recordgate_cluster_bus_dropped_total"] == 0
    for client in [*clients, sender]:
        await client.close()
