"""Records across real cluster nodes (private redis-server, PostgreSQL storage): one version
means one value cluster-wide, updates reach every node's subscribers in version order, storage
ends with the cluster's state. Raw protocol (``tests/wire.py``) to see versions exactly; the
official JS client: ``tests/interop/test_cluster.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Snapshot
from gateway.protocol import Message, RecordAction, Topic
from tests.gateway.cluster.nodes import ClusterNodes
from tests.redis_server import RedisServer
from tests.wire import WireClient

pytestmark = pytest.mark.timeout(180)

R = RecordAction


def rec(action: int, **fields: Any) -> Message:
    return Message(Topic.RECORD, action, **fields)


def update(name: str, version: int, data: Any, ack: str | None = None) -> Message:
    return rec(
        R.CREATEANDUPDATE,
        name=name,
        version=version,
        data=json.dumps(data),
        correlation_id=ack,
        is_write_ack=True if ack is not None else None,
    )


async def login(node_url: str, user: str) -> WireClient:
    return await WireClient.connect(node_url, login={"username": user})


async def subscribe(client: WireClient, name: str) -> int:
    """SUBSCRIBEANDHEAD; the version the server holds (-1: none)."""
    await client.send(rec(R.SUBSCRIBEANDHEAD, names=[name], correlation_id="s"))
    reply = await client.recv_until(Topic.RECORD, R.HEAD_RESPONSE_BULK, timeout=10)
    return int(reply.versions[name])


async def updates(client: WireClient, name: str, until: int) -> list[tuple[int, Any]]:
    """(version, data) of every UPDATE of ``name`` until version ``until`` arrives."""
    seen: list[tuple[int, Any]] = []
    async with asyncio.timeout(30):
        while not seen or seen[-1][0] < until:
            msg = await client.recv(30)
            if msg.topic == Topic.RECORD and msg.action in (R.UPDATE, R.PATCH):
                assert msg.name == name
                seen.append((int(msg.version), json.loads(msg.data)))
    return seen


async def stored(cluster: ClusterNodes, name: str) -> Snapshot | None:
    """What PostgreSQL holds under ``name``, read with the project's SQL connector."""
    from connectors.registry import create_connector

    connector = create_connector("sql", cluster.postgres, table=f"{cluster.prefix}_records")
    async with connector:
        return await connector.get(name)


async def test_writes_on_one_node_reach_subscribers_on_every_node_in_order(
    cluster: ClusterNodes,
) -> None:
    nodes = cluster.start(3)
    name = "cr/ord{er}/ü"
    watchers = [await login(node.ws_url, f"w{i}") for i, node in enumerate(nodes)]
    for watcher in watchers:
        assert await subscribe(watcher, name) == -1
    writer = await login(nodes[1].ws_url, "writer")
    for version in range(1, 61):
        await writer.send(update(name, version, {"n": version, "s": "ü{}"}, ack=str(version)))
    acked = set()
    async with asyncio.timeout(30):
        while len(acked) < 60:
            msg = await writer.recv(30)
            assert msg.action == R.WRITE_ACKNOWLEDGEMENT, msg
            acked.add(msg.correlation_id)
    expected = [(v, {"n": v, "s": "ü{}"}) for v in range(1, 61)]
    for watcher in watchers:  # every version, in order, once, on every node (the writer's too)
        assert await updates(watcher, name, 60) == expected
    # Acknowledged means in PostgreSQL; every node reads it alike.
    snapshot = await stored(cluster, name)
    assert snapshot is not None and (snapshot.version, snapshot.data) == (60, expected[-1][1])
    for watcher in watchers:
        await watcher.send(rec(R.READ, name=name))
        reply = await watcher.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=10)
        assert (reply.version, json.loads(reply.data)) == (60, expected[-1][1])
        await watcher.send(rec(R.HEAD, name=name))
        reply = await watcher.recv_until(Topic.RECORD, R.HEAD_RESPONSE, timeout=10)
        assert reply.version == 60
        await watcher.close()
    await writer.close()
    for node in nodes:  # no answer had to wait past cluster.max_bus_lag
        metrics = node.metrics()
        assert metrics["recordgate_cluster_record_bus_lagged_total"] == 0
        assert metrics["recordgate_cluster_record_commits_total"] >= (60 if node is nodes[1] else 0)


async def test_concurrent_writers_on_two_nodes_one_version_one_winner(
    cluster: ClusterNodes,
) -> None:
    """Each round two clients on different nodes write the same next version at once: exactly
    one is acknowledged, the other gets VERSION_EXISTS with the winner's version and data."""
    nodes = cluster.start(3)
    name = "cr/race"
    a = await login(nodes[0].ws_url, "a")
    b = await login(nodes[2].ws_url, "b")
    watcher = await login(nodes[1].ws_url, "watch")
    await subscribe(watcher, name)
    version = 0
    winners: list[tuple[int, Any]] = []
    for round_ in range(40):
        version += 1
        await asyncio.gather(
            a.send(update(name, version, {"by": "a", "r": round_}, ack=f"a{round_}")),
            b.send(update(name, version, {"by": "b", "r": round_}, ack=f"b{round_}")),
        )
        replies = await asyncio.gather(a.recv(20), b.recv(20))
        actions = sorted(reply.action for reply in replies)
        assert actions == sorted([R.WRITE_ACKNOWLEDGEMENT, R.VERSION_EXISTS]), replies
        won = "a" if replies[0].action == R.WRITE_ACKNOWLEDGEMENT else "b"
        lost = replies[1] if won == "a" else replies[0]
        assert lost.version == version
        assert json.loads(lost.data) == {"by": won, "r": round_}
        winners.append((version, {"by": won, "r": round_}))
    # The third node's subscriber saw exactly the winners, in order.
    assert await updates(watcher, name, version) == winners
    snapshot = await stored(cluster, name)
    assert snapshot is not None and (snapshot.version, snapshot.data) == winners[-1]
    for client in (a, b, watcher):
        await client.close()


async def test_forced_writes_on_every_node_all_apply_in_one_order(cluster: ClusterNodes) -> None:
    """Forced (-1) writes from three nodes at once: none is lost, each got a version of its
    own, and every node's subscriber saw one and the same sequence 1..N without a gap."""
    nodes = cluster.start(3)
    name = "cr/forced"
    writers = [await login(node.ws_url, f"f{i}") for i, node in enumerate(nodes)]
    watchers = [await login(node.ws_url, f"v{i}") for i, node in enumerate(nodes)]
    for watcher in watchers:
        await subscribe(watcher, name)
    per_writer = 30

    async def write_all(i: int, client: WireClient) -> None:
        for n in range(per_writer):
            await client.send(update(name, -1, {"w": i, "n": n}, ack=f"{i}-{n}"))
        for _ in range(per_writer):
            reply = await client.recv(30)
            assert reply.action == R.WRITE_ACKNOWLEDGEMENT, reply

    await asyncio.gather(*(write_all(i, c) for i, c in enumerate(writers)))
    total = per_writer * len(writers)
    seen = [await updates(watcher, name, total) for watcher in watchers]
    assert [v for v, _ in seen[0]] == list(range(1, total + 1))
    assert seen[1] == seen[0] and seen[2] == seen[0]  # one order everywhere
    written = sorted((d["w"], d["n"]) for _, d in seen[0])
    assert written == sorted((i, n) for i in range(3) for n in range(per_writer))
    snapshot = await stored(cluster, name)
    assert snapshot is not None and (snapshot.version, snapshot.data) == seen[0][-1]
    for client in (*writers, *watchers):
        await client.close()


async def test_delete_on_one_node_and_recreate_on_another_end_right_in_storage(
    cluster: ClusterNodes,
) -> None:
    nodes = cluster.start(2)
    a = await login(nodes[0].ws_url, "a")
    b = await login(nodes[1].ws_url, "b")
    names = [f"cr/gen/{i}" for i in range(15)]
    for i, name in enumerate(names):
        for version in range(1, 6):  # a long first life: version 5 is stored
            await a.send(update(name, version, {"life": 1, "v": version}, ack="x"))
            assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
        # Deleted on A and at once re-created on B, acks not awaited in between: the cluster
        # orders the two, and storage must end as the cluster did.
        await a.send(rec(R.DELETE, name=name))
        await b.send(update(name, -1, {"life": 2, "i": i}, ack="y"))
        reply = await a.recv_until(Topic.RECORD, R.DELETE_SUCCESS, timeout=20)
        assert reply.name == name
        assert (await b.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    for name in names:
        await a.send(rec(R.READ, name=name))
        reply = await a.recv(10)
        snapshot = await stored(cluster, name)
        if reply.action == R.RECORD_NOT_FOUND:  # the re-create came first, then the delete
            assert snapshot is None
        else:
            assert reply.action == R.READ_RESPONSE, reply
            assert snapshot is not None, name
            assert (snapshot.version, snapshot.data) == (reply.version, json.loads(reply.data))
            assert snapshot.data["life"] == 2
        await b.send(rec(R.HEAD, name=name))
        head = await b.recv_until(Topic.RECORD, R.HEAD_RESPONSE, timeout=10)
        assert head.version == (-1 if snapshot is None else snapshot.version)
    await a.close()
    await b.close()


async def test_delete_of_an_absent_or_deleted_record_succeeds_on_every_node(
    cluster: ClusterNodes,
) -> None:
    """A DELETE that finds nothing to delete answers DELETE_SUCCESS (as one server does):
    of a name never written, and of a record whose deletion storage already has, on the node
    that deleted it and on another; the record can be written again afterwards."""
    nodes = cluster.start(2)
    a = await login(nodes[0].ws_url, "a")
    b = await login(nodes[1].ws_url, "b")
    for client, name in ((a, "cr/never/a"), (b, "cr/never/b")):
        await client.send(rec(R.DELETE, name=name))
        assert (await client.recv(20)).action == R.DELETE_SUCCESS
        assert await stored(cluster, name) is None
    name = "cr/deleted/again"
    await a.send(update(name, 1, {"v": 1}, ack="x"))
    assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    await a.send(rec(R.DELETE, name=name))
    assert (await a.recv_until(Topic.RECORD, R.DELETE_SUCCESS, timeout=20)).name == name
    assert await stored(cluster, name) is None
    for client in (a, b):
        await client.send(rec(R.DELETE, name=name))
        reply = await client.recv_until(Topic.RECORD, R.DELETE_SUCCESS, timeout=20)
        assert reply.name == name
    await b.send(update(name, -1, {"v": "again"}, ack="y"))
    assert (await b.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    snapshot = await stored(cluster, name)
    assert snapshot is not None and snapshot.data == {"v": "again"}
    await a.close()
    await b.close()


async def test_sigkill_under_write_load_loses_no_ack_and_no_delivered_version(
    cluster: ClusterNodes,
) -> None:
    """Node 2 writes through a proxy to PostgreSQL that is frozen before the node is SIGKILLed:
    its last commits reached Redis and the other nodes' subscribers but never storage. Every
    acknowledged write, from any node, is then in PostgreSQL and readable from the survivors,
    and every version the survivors delivered ends in storage: a survivor flushed it."""
    from conformance.netfaults import FaultProxy

    cluster.options.update({"orphan_after": 1.0, "flush_lease": 2.0})
    names = [f"cr/kill/{i}" for i in range(4)]
    async with FaultProxy(("127.0.0.1", 5432)) as proxy:
        for _ in range(3):
            cluster.add()
        victim = cluster[2]
        victim.config.write_text(
            victim.config.read_text().replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        )
        for node in cluster:
            await asyncio.to_thread(node.start)
        watchers = [await login(node.ws_url, f"k{i}") for i, node in enumerate(cluster[:2])]
        for watcher in watchers:
            for name in names:
                await subscribe(watcher, name)
        acked: list[tuple[str, Any]] = []
        stops = {0: asyncio.Event(), 2: asyncio.Event()}

        async def load(node: int, client: WireClient) -> None:
            stop = stops[node]
            sent: dict[str, tuple[str, Any]] = {}
            n = 0
            reader = asyncio.create_task(read_acks(client, sent))
            try:
                while not stop.is_set():
                    name = names[n % len(names)]
                    data = {"node": node, "n": n}
                    sent[f"{node}-{n}"] = (name, data)
                    await client.send(update(name, -1, data, ack=f"{node}-{n}"))
                    n += 1
                    await asyncio.sleep(0.005)
            except Exception:  # the victim's socket dies with it
                pass
            await asyncio.sleep(0.5)
            reader.cancel()

        async def read_acks(client: WireClient, sent: dict[str, tuple[str, Any]]) -> None:
            with contextlib.suppress(Exception):
                while True:
                    msg = await client.recv(60)
                    if msg.action == R.WRITE_ACKNOWLEDGEMENT:
                        acked.append(sent[msg.correlation_id])

        writers = [await login(cluster[i].ws_url, f"wr{i}") for i in (0, 2)]
        tasks = [asyncio.create_task(load(i, c)) for i, c in zip((0, 2), writers, strict=True)]
        await asyncio.sleep(1.5)
        stops[0].set()  # from here only node 2 writes: its last versions are the newest
        proxy.freeze()  # node 2 commits on, but can store nothing from now
        await asyncio.sleep(1.0)
        await asyncio.to_thread(victim.kill)
        stops[2].set()
        await asyncio.gather(*tasks)
        # What the survivors delivered: each record's versions 1..N, in order, no gap.
        last: dict[str, tuple[int, Any]] = {}
        delivered: dict[str, dict[str, int]] = {name: {} for name in names}
        seen_by = []
        for watcher in watchers:
            seen: dict[str, list[tuple[int, Any]]] = {name: [] for name in names}
            with contextlib.suppress(TimeoutError):
                while True:
                    msg = await watcher.recv(1.5)
                    if msg.action in (R.UPDATE, R.PATCH):
                        seen[msg.name].append((int(msg.version), json.loads(msg.data)))
            seen_by.append(seen)
        assert seen_by[0] == seen_by[1]
        victims_versions = 0
        for name, versions in seen_by[0].items():
            assert [v for v, _ in versions] == list(range(1, len(versions) + 1)), name
            last[name] = versions[-1]
            for version, data in versions:
                delivered[name][json.dumps(data, sort_keys=True)] = version
            victims_versions += sum(1 for _, d in versions if d["node"] == 2)
            assert versions[-1][1]["node"] == 2  # the newest: committed, not stored, by node 2
        # Every delivered version reaches storage: the dead node's last commits are flushed
        # by a survivor (orphan_after 1 s, the dead node's lease 2 s).
        async with asyncio.timeout(60):
            while True:
                stored_now = {name: await stored(cluster, name) for name in names}
                if all(
                    s is not None and (s.version, s.data) == last[name]
                    for name, s in stored_now.items()
                ):
                    break
                await asyncio.sleep(0.25)
        # Every acknowledged write was delivered, and storage holds it or a newer version.
        assert acked
        for name, data in acked:
            version = delivered[name][json.dumps(data, sort_keys=True)]
            assert version <= last[name][0]
        for watcher in watchers:  # the survivors read what storage holds
            for name in names:
                await watcher.send(rec(R.READ, name=name))
                reply = await watcher.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=10)
                assert (reply.version, json.loads(reply.data)) == last[name]
            await watcher.close()
        metrics = [node.metrics() for node in cluster[:2]]
        assert sum(m["recordgate_cluster_record_orphans_flushed_total"] for m in metrics) >= 1
        for writer in writers:
            with contextlib.suppress(Exception):
                await writer.close()


async def test_redis_outage_refuses_changes_clearly_and_recovers(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """Redis killed (and restarted empty, no persistence): changes get RECORD_UPDATE_ERROR /
    RECORD_DELETE_ERROR naming Redis, never an acknowledgement; cached records are still read;
    once Redis is back, writes resume on every node from what storage holds."""
    nodes = cluster.start(2)
    name = "cr/outage"
    a = await login(nodes[0].ws_url, "a")
    b = await login(nodes[1].ws_url, "b")
    for version in range(1, 4):
        await a.send(update(name, version, {"v": version}, ack=str(version)))
        assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    assert await subscribe(b, name) == 3
    await asyncio.to_thread(redis.kill)
    for attempt in range(5):  # versioned, forced, and a delete: all refused, none acked
        await a.send(update(name, 4, {"lost": attempt}, ack=f"x{attempt}"))
        reply = await a.recv(30)
        assert reply.action == R.RECORD_UPDATE_ERROR, reply
        assert reply.correlation_id == f"x{attempt}" and "Redis" in json.loads(reply.data)
    await b.send(update(name, -1, {"lost": "forced"}, ack="y"))
    reply = await b.recv_until(Topic.RECORD, R.RECORD_UPDATE_ERROR, timeout=30)
    assert "Redis" in json.loads(reply.data)
    await a.send(rec(R.DELETE, name=name))
    reply = await a.recv(30)
    assert reply.action == R.RECORD_DELETE_ERROR and "Redis" in json.loads(reply.data)
    await a.send(rec(R.READ, name=name))  # cached: still served
    reply = await a.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=10)
    assert (reply.version, json.loads(reply.data)) == (3, {"v": 3})
    await a.send(rec(R.READ, name="cr/never-read"))  # not cached: an error, not a guess
    reply = await a.recv(30)
    assert reply.action == R.RECORD_LOAD_ERROR
    await asyncio.to_thread(redis.start)  # empty: Redis lost everything it held
    # Writes resume (after the nodes reconnect) on top of what storage holds: version 4.
    async with asyncio.timeout(60):
        while True:
            await a.send(update(name, 4, {"after": True}, ack="back"))
            reply = await a.recv(30)
            if reply.action == R.WRITE_ACKNOWLEDGEMENT:
                break
            assert reply.action == R.RECORD_UPDATE_ERROR, reply
            await asyncio.sleep(0.2)
    snapshot = await stored(cluster, name)
    assert snapshot is not None and (snapshot.version, snapshot.data) == (4, {"after": True})
    # Node 1 hears it (its bus subscribed again) and reads it.
    seen = await updates(b, name, 4)
    assert seen[-1] == (4, {"after": True})
    await b.send(rec(R.READ, name=name))
    reply = await b.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=10)
    assert (reply.version, json.loads(reply.data)) == (4, {"after": True})
    await b.send(update(name, 5, {"from": "b"}, ack="b5"))
    assert (await b.recv_until(Topic.RECORD, R.WRITE_ACKNOWLEDGEMENT, timeout=20)).name == name
    await a.close()
    await b.close()


async def test_a_write_redis_lost_is_acknowledged_only_if_storage_has_it(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """Node 0 commits a write while its storage is frozen (the ack waits for storage); Redis
    is then killed and restarted empty, losing the committed state; storage comes back. The
    writer is acknowledged only if PostgreSQL holds the write (else RECORD_UPDATE_ERROR saying
    it may be lost), and every node then reads what PostgreSQL holds."""
    from conformance.netfaults import FaultProxy

    name = "cr/lost"
    cluster.options.update({"orphan_after": 120, "flush_lease": 120})  # node 0 alone flushes
    async with FaultProxy(("127.0.0.1", 5432)) as proxy:
        for _ in range(2):
            cluster.add()
        node = cluster[0]
        node.config.write_text(
            node.config.read_text().replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        )
        await cluster.start_added()
        a = await login(cluster[0].ws_url, "a")
        await a.send(update(name, 1, {"v": 1}, ack="1"))
        assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
        proxy.freeze()
        await a.send(update(name, 2, {"v": 2}, ack="2"))
        with pytest.raises(TimeoutError):  # committed in Redis, waiting for storage
            await a.recv(1.0)
        await asyncio.to_thread(redis.kill)
        await asyncio.to_thread(redis.start)
        proxy.cut()  # the frozen write never reaches PostgreSQL
        proxy.thaw()  # new connections work
        reply = await a.recv(60)
        snapshot = await stored(cluster, name)
        assert snapshot is not None and reply.correlation_id == "2", reply
        if reply.action == R.WRITE_ACKNOWLEDGEMENT:  # the write reached PostgreSQL after all
            expected = (2, {"v": 2})
        else:
            assert reply.action == R.RECORD_UPDATE_ERROR, reply
            assert "may be lost" in json.loads(reply.data)
            expected = (1, {"v": 1})
        print(f"outcome: {reply.action!r}, stored version {snapshot.version}")
        assert (snapshot.version, snapshot.data) == expected
        b = await login(cluster[1].ws_url, "b")
        await b.send(rec(R.READ, name=name))
        reply = await b.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=20)
        assert (reply.version, json.loads(reply.data)) == expected
        await a.close()
        await b.close()


async def test_http_api_and_notify_across_nodes(cluster: ClusterNodes) -> None:
    """The HTTP API runs the same record operations on every node; NOTIFY on one node after a
    change written straight into PostgreSQL reaches subscribers on another."""
    from connectors.registry import create_connector
    from tests.gateway.httpapi.client import ops

    nodes = cluster.start(3)
    name = "cr/http"
    watcher = await login(nodes[2].ws_url, "watch")
    await subscribe(watcher, name)
    write = {"topic": "record", "action": "write", "recordName": name}
    answer = await ops(nodes[0].port, {**write, "data": {"a": 1}})
    assert answer["body"] == [{"success": True}]  # acknowledged: in PostgreSQL
    snapshot = await stored(cluster, name)
    assert snapshot is not None and (snapshot.version, snapshot.data) == (1, {"a": 1})
    answer = await ops(
        nodes[1].port,
        {**write, "data": 7, "path": "b", "version": 2},
        {**write, "data": {"stale": True}, "version": 2},
        {"topic": "record", "action": "read", "recordName": name},
    )
    ok, stale, read = answer["body"]
    assert ok == {"success": True}
    assert (stale["success"], stale["currentVersion"], stale["currentData"]) == (
        False,
        2,
        {"a": 1, "b": 7},
    )
    assert (read["version"], read["data"]) == (2, {"a": 1, "b": 7})
    assert await updates(watcher, name, 2) == [(1, {"a": 1}), (2, {"a": 1, "b": 7})]
    # Someone writes PostgreSQL behind the cluster's back, then NOTIFYs node 0.
    connector = create_connector("sql", cluster.postgres, table=f"{cluster.prefix}_records")
    async with connector:
        await connector.write([Snapshot(name, 10, {"outside": True})])
    notify = {"topic": "record", "action": "notify", "recordNames": [name]}
    assert (await ops(nodes[0].port, notify))["body"] == [{"success": True}]
    assert (await updates(watcher, name, 10))[-1] == (10, {"outside": True})
    for node in nodes:
        answer = await ops(node.port, {"topic": "record", "action": "head", "recordName": name})
        assert answer["body"] == [{"version": 10, "success": True}]
    answer = await ops(nodes[1].port, {"topic": "record", "action": "delete", "recordName": name})
    assert answer["body"] == [{"success": True}]
    assert await stored(cluster, name) is None
    reply = await watcher.recv_until(Topic.RECORD, R.DELETED, timeout=10)
    assert reply.name == name
    await watcher.close()


async def test_bulk_reads_of_uncached_records_on_another_node(cluster: ClusterNodes) -> None:
    """SUBSCRIBEANDREAD and HEAD_BULK of hundreds of names node 1 never read (one Redis
    pipeline, then storage for what Redis lacks): every answer right, then live."""
    nodes = cluster.start(2)
    writer = await login(nodes[0].ws_url, "w")
    names = [f"cr/bulk/{i}" for i in range(300)]
    for i, name in enumerate(names[:200]):
        await writer.send(update(name, 1 if i % 2 else -1, {"i": i}))
    await writer.send(update("cr/bulk/last", -1, {}, ack="done"))
    await writer.recv_until(Topic.RECORD, R.WRITE_ACKNOWLEDGEMENT, timeout=30)
    reader = await login(nodes[1].ws_url, "r")
    await reader.send(rec(R.HEAD_BULK, names=names, correlation_id="h"))
    heads = await reader.recv_until(Topic.RECORD, R.HEAD_RESPONSE_BULK, timeout=30)
    assert heads.versions == {name: (1 if i < 200 else -1) for i, name in enumerate(names)}
    await reader.send(rec(R.SUBSCRIBEANDREAD, names=names, correlation_id="s"))
    got: dict[str, tuple[int, Any]] = {}
    async with asyncio.timeout(30):
        while len(got) < len(names):
            msg = await reader.recv(30)
            if msg.action == R.READ_RESPONSE:
                got[msg.name] = (int(msg.version), json.loads(msg.data))
    assert got == {name: ((1, {"i": i}) if i < 200 else (-1, {})) for i, name in enumerate(names)}
    await writer.send(update(names[250], -1, {"new": True}))
    await writer.send(update(names[0], 2, {"i": "again"}))
    seen = []
    async with asyncio.timeout(30):
        while len(seen) < 2:
            msg = await reader.recv(30)
            if msg.action == R.UPDATE:
                seen.append((msg.name, int(msg.version), json.loads(msg.data)))
    assert sorted(seen) == sorted([(names[250], 1, {"new": True}), (names[0], 2, {"i": "again"})])
    await writer.close()
    await reader.close()


async def test_permissions_see_the_cluster_state(cluster: ClusterNodes, tmp_path: Path) -> None:
    """Rules read the cluster's state: a cross-record read sees another node's write, and a
    write that lost its race is checked again on the record it finally applies to (a counter
    that only rises never falls, with two nodes writing at once)."""
    rules = tmp_path / "permissions.yaml"
    rules.write_text(
        "record:\n"
        "  '*': {create: true, read: true, write: true, delete: true, listen: true,"
        " notify: true}\n"
        "  counter: {write: 'oldData === null || data.value > oldData.value'}\n"
        "  order/$id: {create: \"_('stock/' + $id).count > 0\"}\n"
    )
    cluster.extra = f"permissions: {rules}\n"
    nodes = cluster.start(3)
    a, b, c = [await login(node.ws_url, f"p{i}") for i, node in enumerate(nodes)]
    await a.send(update("stock/7", -1, {"count": 1}, ack="s"))
    assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    await b.send(update("order/7", -1, {"n": 1}, ack="o7"))
    assert (await b.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    await b.send(update("order/8", -1, {"n": 1}, ack="o8"))
    assert (await b.recv(20)).action == R.MESSAGE_PERMISSION_ERROR
    await a.send(update("counter", -1, {"value": 0}, ack="c0"))
    assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    watcher = await login(nodes[0].ws_url, "pw")
    assert await subscribe(watcher, "counter") == 1
    value = 0
    outcomes: list[int] = []
    for round_ in range(25):
        # Both rise above what both nodes last saw; whichever lands second may now be lower.
        first, second = value + 1 + round_ % 3, value + 2
        await asyncio.gather(
            b.send(update("counter", -1, {"value": first}, ack=f"b{round_}")),
            c.send(update("counter", -1, {"value": second}, ack=f"c{round_}")),
        )
        replies = await asyncio.gather(b.recv(20), c.recv(20))
        outcomes += [reply.action for reply in replies]
        value = max(first, second)
        await asyncio.sleep(0.05)  # both nodes' caches follow before the next round
    await a.send(update("counter", -1, {"value": 10_000}, ack="end"))
    assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    seen = await updates(watcher, "counter", 1 + outcomes.count(R.WRITE_ACKNOWLEDGEMENT) + 1)
    values = [data["value"] for _, data in seen]
    assert values == sorted(set(values)), values  # only ever rose
    # a lower value that lost its race was checked again on the higher one and denied
    assert set(outcomes) <= {R.WRITE_ACKNOWLEDGEMENT, R.MESSAGE_DENIED}
    print(f"denied after a lost race: {outcomes.count(R.MESSAGE_DENIED)} of {len(outcomes)}")
    for client in (a, b, c, watcher):
        await client.close()


async def test_redis_connections_of_a_node_are_bounded(tmp_path: Path, redis: RedisServer) -> None:
    """Commits of many records at once share ``cluster.max_redis_connections`` connections:
    a burst of writes cannot make a node open one Redis connection per record in flight."""
    import threading

    import redis as redis_driver

    cluster = ClusterNodes(tmp_path, redis, options={"max_redis_connections": 3})
    admin = redis_driver.Redis.from_url(redis.url)
    peak, done = [0], threading.Event()

    def watch(baseline: int) -> None:  # a thread: counts while the test's loop is busy
        while not done.is_set():
            peak[0] = max(peak[0], len(admin.client_list()) - baseline)
            done.wait(0.002)

    try:
        (node,) = cluster.start(1)
        watcher = threading.Thread(target=watch, args=(len(admin.client_list()),))
        watcher.start()
        writers = [await login(node.ws_url, f"burst{i}") for i in range(4)]
        for i, writer in enumerate(writers):
            for n in range(150):
                await writer.send(update(f"pool/{i}/{n}", 1, {"n": n}, ack=str(n)))
        for writer in writers:
            acked = 0
            async with asyncio.timeout(60):
                while acked < 150:
                    msg = await writer.recv(60)
                    assert msg.action == R.WRITE_ACKNOWLEDGEMENT, msg
                    acked += 1
            await writer.close()
        done.set()
        watcher.join(10)
        # At rest the node holds at least one command connection, so 3 in all is 2 more.
        assert peak[0] <= 2, f"the node held {peak[0]} more Redis connections than at rest"
        metrics = node.metrics()
        assert 1 <= metrics["recordgate_cluster_redis_connections"] <= 3
        snapshot = await stored(cluster, "pool/3/149")
        assert snapshot is not None and snapshot.data == {"n": 149}
    finally:
        done.set()
        admin.close()
        cluster.stop()


async def test_writes_nobody_waits_for_are_flushed_paced_acks_and_shutdown_at_once(
    tmp_path: Path, redis: RedisServer
) -> None:
    """A change without an acknowledgement waits for ``write_behind.interval`` (coalesced with
    the record's later changes, one storage write); an acknowledged one is flushed at once with
    everything queued, and so is what is queued at shutdown: neither waits for the pace."""
    cluster = ClusterNodes(
        tmp_path,
        redis,
        options={"orphan_after": 60},  # the pace is at most half of it
        extra="write_behind:\n  interval: 20\n",
    )
    try:
        (node,) = cluster.start(1)
        watcher = await login(node.ws_url, "watcher")
        assert await subscribe(watcher, "pace/hot") == -1
        writer = await login(node.ws_url, "writer")
        for version in range(1, 101):
            await writer.send(update("pace/hot", version, {"n": version}))
            cold = f"pace/cold/{(version - 1) % 5}"
            await writer.send(update(cold, (version - 1) // 5 + 1, {"n": version}))
        assert (await updates(watcher, "pace/hot", 100))[-1] == (100, {"n": 100})  # committed
        assert node.metrics()["recordgate_store_flushed_total"] == 0  # not due for 20 s
        assert await stored(cluster, "pace/hot") is None
        started = asyncio.get_running_loop().time()
        await writer.send(update("pace/hot", 101, {"n": 101}, ack="a"))
        ack = await writer.recv_until(Topic.RECORD, R.WRITE_ACKNOWLEDGEMENT, timeout=10)
        assert ack.correlation_id == "a"
        assert asyncio.get_running_loop().time() - started < 5
        snapshot = await stored(cluster, "pace/hot")
        assert snapshot is not None and (snapshot.version, snapshot.data) == (101, {"n": 101})
        # The acknowledged write took everything queued along: 101 versions of one record
        # and 100 of five others, each record written once.
        assert node.metrics()["recordgate_store_flushed_total"] == 6
        snapshot = await stored(cluster, "pace/cold/4")
        assert snapshot is not None and (snapshot.version, snapshot.data) == (20, {"n": 100})
        for version in range(102, 151):
            await writer.send(update("pace/hot", version, {"n": version}))
        await updates(watcher, "pace/hot", 150)
        for client in (watcher, writer):
            await client.close()
        started = asyncio.get_running_loop().time()
        node.stop()  # SIGTERM: what is queued is flushed now, not in 20 s
        assert node.process is not None and node.process.returncode == 0
        assert asyncio.get_running_loop().time() - started < 10
        snapshot = await stored(cluster, "pace/hot")
        assert snapshot is not None and (snapshot.version, snapshot.data) == (150, {"n": 150})
    finally:
        cluster.stop()


async def test_a_record_written_without_pause_is_not_taken_for_an_orphan(
    tmp_path: Path, redis: RedisServer
) -> None:
    """A record written every few ms for over twice ``orphan_after`` is never clean (a newer
    change is always unstored when its committer's flush ends), yet its committer is alive and
    flushing it: no node may take it for an orphan. Before, the dirty set kept the record's
    first change's time, so once that was ``orphan_after`` old every node's sweep took the
    record as an orphan and flushed it too."""
    cluster = ClusterNodes(tmp_path, redis, options={"orphan_after": 2.0})  # flushed each 1 s
    try:
        nodes = cluster.start(2)
        writer = await login(nodes[0].ws_url, "writer")
        watcher = await login(nodes[1].ws_url, "watcher")
        assert await subscribe(watcher, "hot/one") == -1
        loop = asyncio.get_running_loop()
        version, end = 0, loop.time() + 5.0
        while loop.time() < end:
            version += 1
            await writer.send(update("hot/one", version, {"n": version}))
            await asyncio.sleep(0.002)
        await writer.send(update("hot/one", version + 1, {"n": version + 1}, ack="last"))
        ack = await writer.recv_until(Topic.RECORD, R.WRITE_ACKNOWLEDGEMENT, timeout=20)
        assert ack.correlation_id == "last"
        seen = await updates(watcher, "hot/one", version + 1)
        assert [v for v, _ in seen] == list(range(1, version + 2))
        for node in nodes:
            assert node.metrics().get("recordgate_cluster_record_orphans_flushed_total", 0) == 0
        snapshot = await stored(cluster, "hot/one")
        assert snapshot is not None and snapshot.version == version + 1
        await writer.close()
        await watcher.close()
    finally:
        cluster.stop()


async def test_sigterm_during_a_flush_waits_for_it_and_exits(
    tmp_path: Path, redis: RedisServer
) -> None:
    """SIGTERM while a flush is in flight (its records already off the queue): shutdown waits
    for that flush (bounded by ``write_behind.shutdown_timeout``) instead of cancelling it, so
    the write lands in storage and the node exits. Before, shutdown saw an empty queue and
    cancelled the flush mid-write: the change never reached storage from this node, and a driver
    that swallowed the cancellation left the flusher running and the node hung on exit."""
    import asyncpg

    cluster = ClusterNodes(tmp_path, redis, extra="write_behind:\n  interval: 0.05\n")
    try:
        (node,) = cluster.start(1)
        writer = await login(node.ws_url, "writer")
        await writer.send(update("held/one", 1, {"n": 1}, ack="first"))
        ack = await writer.recv_until(Topic.RECORD, R.WRITE_ACKNOWLEDGEMENT, timeout=10)
        assert ack.correlation_id == "first"
        url = cluster.postgres.replace("postgresql+asyncpg://", "postgresql://")
        locker = await asyncpg.connect(url)
        try:
            transaction = locker.transaction()
            await transaction.start()
            # Writes to the table block until this transaction ends: the flush stays in flight.
            await locker.execute(f'LOCK TABLE "{cluster.prefix}_records" IN EXCLUSIVE MODE')
            await writer.send(update("held/one", 2, {"n": 2}))  # unacked: flushed in 0.05 s
            await asyncio.sleep(1.0)
            await writer.close()
            assert node.process is not None
            node.process.terminate()
            await asyncio.sleep(1.0)
            assert node.process.poll() is None  # still waiting for the flush
            await transaction.rollback()
        finally:
            await locker.close()
        try:
            code = await asyncio.to_thread(node.process.wait, 20)  # (shutdown_timeout is 30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the node did not exit within 20 s of the flush's end:\n{node.log_text()}")
        assert code == 0, node.log_text()
        snapshot = await stored(cluster, "held/one")
        assert snapshot is not None and (snapshot.version, snapshot.data) == (2, {"n": 2})
    finally:
        cluster.stop()
