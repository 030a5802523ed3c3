"""Records storage refuses for good (PostgreSQL refuses U+0000 in a JSONB string) on real
cluster nodes: private redis-server, PostgreSQL storage, raw protocol (``tests/wire.py``).
The nodes use a connector that does not declare U+0000 (``UNDECLARED``), so the write reaches
storage as one nobody could foresee would, and the safety net is what is tested.

The writer of a refused state is told (never acknowledged). What must not follow: the state
kept dirty in Redis for ever (memory no client bound limits, a storage call per record every
``orphan_after``), or served to readers as current while storage never has it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.protocol import Message, RecordAction, Topic
from tests.gateway.cluster.nodes import ClusterNodes
from tests.redis_server import RedisServer
from tests.wire import WireClient, write

pytestmark = pytest.mark.timeout(120)

R = RecordAction
NUL = "a\u0000b"
UNDECLARED = "tests.faults.poison:UndeclaringSQLConnector"


async def login(node_url: str, user: str) -> WireClient:
    return await WireClient.connect(node_url, login={"username": user})


async def read_once(client: WireClient, name: str) -> tuple[int, Any] | None:
    """One READ: (version, data), or None if the record does not exist."""
    await client.send(Message(Topic.RECORD, R.READ, name=name))
    msg = await client.recv(20)
    if msg.action != R.READ_RESPONSE:
        return None
    return int(msg.version), json.loads(msg.data)


async def test_a_state_storage_refuses_is_reverted_to_storage_s_and_leaves_redis(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """Node 0 stores ``{"v": 1}`` of one record, then a client writes U+0000 into it and into
    a record storage never had: both writes fail (no acknowledgement). Within a few flushes the
    cluster's state is storage's again, announced to subscribers with a higher version (so
    versions stay monotonic for clients), read alike on both nodes; Redis holds neither as
    dirty (nothing is retried every ``orphan_after``) and every record key expires."""
    import redis.asyncio as aioredis

    cluster.options = {"orphan_after": 1}
    cluster.storage_type = UNDECLARED
    nodes = cluster.start(2)
    kept, fresh = "cr/refused/kept", "cr/refused/fresh"
    writer = await login(nodes[0].ws_url, "writer")
    subscriber = await login(nodes[1].ws_url, "subscriber")
    await writer.send(write(kept, {"v": 1}, ack="w1"))
    assert (await writer.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    await subscriber.send(Message(Topic.RECORD, R.SUBSCRIBECREATEANDREAD, name=kept))
    first = await subscriber.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=20)
    assert json.loads(first.data) == {"v": 1}

    for name, ack in ((kept, "w2"), (fresh, "w3")):
        await writer.send(write(name, {"s": NUL}, ack=ack))
        reply = await writer.recv(20)
        assert reply.action != R.WRITE_ACKNOWLEDGEMENT, reply  # told, never acknowledged
        assert reply.correlation_id == ack or reply.name == name, reply

    # The subscriber saw the refused state, then storage's again with a higher version.
    seen: list[tuple[int, Any]] = []
    async with asyncio.timeout(20):
        while not seen or seen[-1][1] != {"v": 1}:
            msg = await subscriber.recv_until(Topic.RECORD, R.UPDATE, timeout=20)
            seen.append((int(msg.version), json.loads(msg.data)))
    versions = [version for version, _ in seen]
    assert versions == sorted(versions) and versions[-1] > int(first.version), seen

    reader = await login(nodes[0].ws_url, "reader")
    assert await read_once(reader, kept) == seen[-1]
    reader1 = await login(nodes[1].ws_url, "reader1")
    assert await read_once(reader1, kept) == seen[-1]

    admin = aioredis.Redis.from_url(redis.url)
    try:
        dirty = f"{{{cluster.prefix}}}:dirty"
        for _ in range(100):  # 10 s: some flushes over the 1 s orphan_after
            if await admin.zcard(dirty) == 0:
                break
            await asyncio.sleep(0.1)
        assert await admin.zcard(dirty) == 0, "refused records stay dirty in Redis"
        keys = [key async for key in admin.scan_iter(f"{{{cluster.prefix}}}:r:*")]
        assert keys and all([await admin.pttl(key) > 0 for key in keys]), "a key never expires"
    finally:
        await admin.aclose()
    # The record storage never had reads as absent, on both nodes; storage has no U+0000.
    assert await read_once(reader, fresh) is None
    failed = nodes[0].metrics()
    assert failed['recordgate_storage_errors_total{kind="rejected"}'] >= 2
    assert failed["recordgate_store_reverted_total"] >= 2
    # Nothing is tried again: the refusals do not grow while no client writes.
    await asyncio.sleep(3)
    again = nodes[0].metrics()
    assert again["recordgate_store_failed_total"] == failed["recordgate_store_failed_total"]
    # Every client closed: node 1's shutdown waits for the close handshake of one still open
    # (10 s of teardown when reader1 was left open).
    for client in (writer, subscriber, reader, reader1):
        await client.close()


async def test_a_name_storage_refuses_leaves_nothing_dirty_in_redis(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """Names may hold U+0000 too, which PostgreSQL refuses in a name as in data: neither the
    write nor the storage read that would undo it can be made. The writer is told, and the
    record must still not stay dirty in Redis (retried every ``orphan_after``, for ever)."""
    import redis.asyncio as aioredis

    cluster.options = {"orphan_after": 1}
    cluster.storage_type = UNDECLARED
    nodes = cluster.start(1)
    name = f"cr/refused/{NUL}"
    writer = await login(nodes[0].ws_url, "writer")
    await writer.send(write(name, {"v": 1}, ack="w"))
    reply = await writer.recv(20)
    assert reply.action != R.WRITE_ACKNOWLEDGEMENT, reply
    admin = aioredis.Redis.from_url(redis.url)
    try:
        dirty = f"{{{cluster.prefix}}}:dirty"
        for _ in range(100):
            if await admin.zcard(dirty) == 0:
                break
            await asyncio.sleep(0.1)
        assert await admin.zcard(dirty) == 0, "a refused name stays dirty in Redis"
        keys = [key async for key in admin.scan_iter(f"{{{cluster.prefix}}}:r:*")]
        assert all([await admin.pttl(key) > 0 for key in keys]), "a key never expires"
    finally:
        await admin.aclose()
    failed = nodes[0].metrics()["recordgate_store_failed_total"]
    await asyncio.sleep(3)
    assert nodes[0].metrics()["recordgate_store_failed_total"] == failed  # not tried again
    await writer.close()


async def test_a_name_a_declaring_storage_cannot_hold_is_refused_before_redis(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """On storage that declares U+0000 (the SQL connector on PostgreSQL), a cluster node refuses
    such a name at once for reads, creates, writes and deletes: INVALID_MESSAGE_DATA about the
    name, nothing committed to Redis, nothing for the flusher to fail on."""
    import redis.asyncio as aioredis

    nodes = cluster.start(1)
    name = f"cr/declared/{NUL}"
    client = await login(nodes[0].ws_url, "client")
    messages = [
        Message(Topic.RECORD, R.SUBSCRIBECREATEANDREAD, names=[name], correlation_id="c"),
        Message(Topic.RECORD, R.READ, name=name),
        write(name, {"v": 1}, ack="w"),
        Message(Topic.RECORD, R.DELETE, name=name),
    ]
    for msg in messages:
        await client.send(msg)
        reply = await client.recv(20)
        assert (reply.action, reply.name, reply.original_action) == (
            R.INVALID_MESSAGE_DATA,
            name,
            msg.action,
        ), reply
        assert "U+0000" in json.loads(reply.data or '""'), reply
    await client.send(write("cr/declared/ok", {"v": 1}, ack="ok"))  # the node still serves
    assert (await client.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    admin = aioredis.Redis.from_url(redis.url)
    try:
        keys = [key async for key in admin.scan_iter(f"{{{cluster.prefix}}}:r:*")]
        assert not [key for key in keys if b"\x00" in key], keys
    finally:
        await admin.aclose()
    metrics = nodes[0].metrics()
    assert metrics["recordgate_store_failed_total"] == 0
    assert metrics['recordgate_json_refused_total{reason="unstorable"}'] == len(messages)
    await client.close()
