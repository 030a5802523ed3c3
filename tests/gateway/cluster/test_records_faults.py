"""Records across real cluster nodes under faults a reviewer aimed at the promises of issue 10
(a node whose bus dropped, storage answers overtaken by commits on another node). Private
redis-server, PostgreSQL storage, raw protocol (``tests/wire.py``) to see versions exactly."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest

from gateway.protocol import Message, RecordAction, Topic
from tests.gateway.cluster.nodes import ClusterNodes, wait_until
from tests.redis_server import RedisServer
from tests.wire import WireClient, write

pytestmark = pytest.mark.timeout(180)

R = RecordAction


def rec(action: int, **fields: Any) -> Message:
    return Message(Topic.RECORD, action, **fields)


async def login(node_url: str, user: str) -> WireClient:
    return await WireClient.connect(node_url, login={"username": user})


async def drain(client: WireClient, quiet: float = 2.0) -> dict[str, list[int]]:
    """Versions of every UPDATE/PATCH per record until ``quiet`` seconds pass without one."""
    seen: dict[str, list[int]] = {}
    with contextlib.suppress(TimeoutError):
        while True:
            msg = await client.recv(quiet)
            if msg.topic == Topic.RECORD and msg.action in (R.UPDATE, R.PATCH):
                seen.setdefault(msg.name, []).append(int(msg.version))
    return seen


async def test_bus_dropped_repairs_every_subscribed_record_not_only_cached_ones(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """Node 0 serves subscribers of more records than its cache holds (``cache.max_records``
    1): evicted records are still served from the bus. Its bus subscription is killed (CLIENT
    KILL TYPE pubsub) and node 1 writes every record at once, in the gap before the bus is
    subscribed again: each subscriber on node 0 must then hold the cluster's current version
    (a jump with complete data), not stay on the version from before the gap."""
    import redis.asyncio as aioredis

    cluster.extra = "cache:\n  max_records: 1\n"
    nodes = cluster.start(2)
    names = [f"cr/gap/{i}" for i in range(6)]
    writer = await login(nodes[1].ws_url, "writer")
    for name in names:
        await writer.send(write(name, {"v": 0}, ack=name))
    for _ in names:
        assert (await writer.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    watcher = await login(nodes[0].ws_url, "watcher")
    await watcher.send(rec(R.SUBSCRIBEANDHEAD, names=names, correlation_id="s"))
    await watcher.recv_until(Topic.RECORD, R.HEAD_RESPONSE_BULK, timeout=10)
    admin = aioredis.Redis.from_url(redis.url)
    try:
        for round_ in range(1, 4):
            killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert killed >= 2  # both nodes' bus subscriptions
            for name in names:  # all within the node's first resubscribe delay (0.1 s)
                await writer.send(write(name, {"v": round_}))
            await asyncio.sleep(1.0)
        # What the cluster holds now, read by a fresh client on node 1.
        reader = await login(nodes[1].ws_url, "reader")
        current: dict[str, int] = {}
        for name in names:
            await reader.send(rec(R.READ, name=name))
            reply = await reader.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=10)
            assert json.loads(reply.data) == {"v": 3}
            current[name] = int(reply.version)
        seen = await drain(watcher)
        stale = {
            name: (seen.get(name, [1])[-1], current[name])
            for name in names
            if seen.get(name, [1])[-1] != current[name]
        }
        assert not stale, f"subscribers on node 0 left behind (held, current): {stale}"
        for name in names:  # versions only rose
            versions = seen.get(name, [])
            assert versions == sorted(versions), (name, versions)
        await reader.close()
    finally:
        await admin.aclose()
        await watcher.close()
        await writer.close()


async def stored_put(cluster: ClusterNodes, name: str, version: int, data: Any) -> None:
    """Write PostgreSQL directly, as a writer outside the cluster would."""
    from connectors.base import Snapshot
    from connectors.registry import create_connector

    connector = create_connector("sql", cluster.postgres, table=f"{cluster.prefix}_records")
    async with connector:
        await connector.write([Snapshot(name, version, data)])


def flush_outcomes(node: Any) -> float:
    """Storage operations the node's flusher saw end: applied, superseded, refused or fenced."""
    metrics = node.metrics()
    kinds = ("flushed", "conflicts", "failed")
    ended = sum(metrics.get(f"recordgate_store_{kind}_total", 0.0) for kind in kinds)
    return ended + metrics.get("recordgate_cluster_record_flush_fenced_total", 0.0)


async def start_with_slow_reads(cluster: ClusterNodes, proxy: Any) -> None:
    """Two nodes; node 0 reaches PostgreSQL through ``proxy`` with a long storage timeout (so
    a held answer is a slow read, not a failed one)."""
    for _ in range(2):
        cluster.add()
    slow = cluster[0]
    slow.config.write_text(
        slow.config.read_text()
        .replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        .replace("storage:\n", "storage:\n  timeout: 90\n")
    )
    for node in cluster:
        await asyncio.to_thread(node.start)


async def test_notify_whose_storage_read_was_overtaken_does_not_roll_the_record_back(
    cluster: ClusterNodes,
) -> None:
    """NOTIFY on node 0 re-reads storage; the answer (version 1) is slow to arrive, and
    meanwhile node 1 writes version 2 (acknowledged: in PostgreSQL). The late answer must not
    become the cluster's state: node 1's subscriber never sees the version go back, every node
    reads version 2, and a write of version 2 with other data is refused (VERSION_EXISTS)."""
    from conformance.netfaults import FaultProxy

    name = "cr/notify-late"
    async with FaultProxy(("127.0.0.1", 5432)) as proxy:
        await start_with_slow_reads(cluster, proxy)
        await stored_put(cluster, name, 1, {"v": 1})
        watcher = await login(cluster[1].ws_url, "watcher")
        await watcher.send(rec(R.SUBSCRIBEANDREAD, names=[name], correlation_id="s"))
        reply = await watcher.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=10)
        assert reply.version == 1
        notifier = await login(cluster[0].ws_url, "notifier")
        proxy.hold_replies(after=name.encode())
        await notifier.send(rec(R.NOTIFY, names=[name], correlation_id="n"))
        await asyncio.wait_for(proxy.reply_held.wait(), 20)  # PostgreSQL answered version 1
        writer = await login(cluster[1].ws_url, "writer")
        await writer.send(write(name, {"v": 2}, ack="w", version=2))
        assert (await writer.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
        proxy.release_replies()
        await notifier.recv_until(Topic.RECORD, R.NOTIFY, timeout=20)
        seen = [int(msg) for msg in (await drain(watcher)).get(name, [])]
        assert seen == sorted(seen), f"node 1's subscriber saw the version go back: {seen}"
        for node in cluster:
            async with await login(node.ws_url, f"r-{node.name}") as reader:
                await reader.send(rec(R.READ, name=name))
                got = await reader.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=10)
                assert (got.version, json.loads(got.data)) == (2, {"v": 2}), node.name
        other = await login(cluster[0].ws_url, "other")
        await other.send(write(name, {"v": "other"}, ack="o", version=2))
        assert (await other.recv(20)).action == R.VERSION_EXISTS
        for client in (watcher, notifier, writer, other):
            await client.close()


async def test_a_storage_read_older_than_record_ttl_does_not_seed_an_old_version(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """Node 0 reads a record Redis does not hold; PostgreSQL's answer (version 1) is slow to
    arrive (a held reply: a GC pause or SIGSTOP of the node would do the same). Meanwhile node
    1 writes version 2 (acknowledged: in PostgreSQL) and the record's state, clean, expires from
    Redis after ``cluster.record_ttl``. The late answer must not become the cluster's state:
    node 0's reader gets version 2, and version 2 with other data is refused everywhere."""
    import redis.asyncio as aioredis

    from conformance.netfaults import FaultProxy
    from gateway.cluster.keys import Keys

    cluster.options["record_ttl"] = 30
    name = "cr/seed-late"
    async with FaultProxy(("127.0.0.1", 5432)) as proxy:
        await start_with_slow_reads(cluster, proxy)
        await stored_put(cluster, name, 1, {"v": 1})
        reader = await login(cluster[0].ws_url, "reader")
        proxy.hold_replies(after=name.encode())
        await reader.send(rec(R.READ, name=name))
        await asyncio.wait_for(proxy.reply_held.wait(), 20)  # PostgreSQL answered version 1
        writer = await login(cluster[1].ws_url, "writer")
        await writer.send(write(name, {"v": 2}, ack="w", version=2))
        assert (await writer.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
        admin = aioredis.Redis.from_url(redis.url)
        try:
            key = Keys(cluster.prefix).record(name)
            ttl_ms = await admin.pttl(key)
            assert 0 < ttl_ms <= 30_000  # clean: it expires after record_ttl
            await asyncio.sleep(ttl_ms / 1000 + 0.5)
            assert not await admin.exists(key)
        finally:
            await admin.aclose()
        proxy.release_replies()
        got = await reader.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=30)
        assert (got.version, json.loads(got.data)) == (2, {"v": 2})
        for node in cluster:
            async with await login(node.ws_url, f"o-{node.name}") as other:
                await other.send(write(name, {"v": "other"}, ack="o", version=2))
                assert (await other.recv(20)).action == R.VERSION_EXISTS, node.name
        await reader.close()
        await writer.close()


async def test_bus_dropped_again_while_catching_up_is_caught_up_again(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """Node 0's bus drops and it re-reads its subscribed records; one of them (``x``) is no
    longer in Redis (its clean state expired) and storage is slow to answer, so the re-read is
    still running when the bus drops a second time and node 1 writes ``y`` in that gap. The
    re-read had read ``y`` before the gap: node 0 must catch up again, or ``y``'s subscriber
    stays on the old version for good."""
    import redis.asyncio as aioredis

    from conformance.netfaults import FaultProxy
    from gateway.cluster.keys import Keys

    x, y = "cr/again/x", "cr/again/y"
    async with FaultProxy(("127.0.0.1", 5432)) as proxy:
        await start_with_slow_reads(cluster, proxy)
        writer = await login(cluster[1].ws_url, "writer")
        for name in (x, y):
            await writer.send(write(name, {"v": 1}, ack=name, version=1))
            assert (await writer.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
        watcher = await login(cluster[0].ws_url, "watcher")
        await watcher.send(rec(R.SUBSCRIBEANDHEAD, names=[x, y], correlation_id="s"))
        await watcher.recv_until(Topic.RECORD, R.HEAD_RESPONSE_BULK, timeout=10)
        admin = aioredis.Redis.from_url(redis.url)
        try:
            key = Keys(cluster.prefix).record(x)
            assert await admin.pttl(key) > 0  # clean: expiring; expire it now
            assert await admin.delete(key) == 1
            proxy.hold_replies(after=x.encode())
            assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 2
            await asyncio.wait_for(proxy.reply_held.wait(), 20)  # node 0 is re-reading x
            for _ in range(400):  # both buses subscribed again (Redis has no event for it)
                if len(await admin.client_list(_type="pubsub")) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 2
            await writer.send(write(y, {"v": 2}, ack="y2", version=2))  # in the second gap
            assert (await writer.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
            proxy.release_replies()
            seen = await drain(watcher, quiet=3.0)
            assert seen.get(y, [1])[-1] == 2, f"node 0's subscriber of y saw {seen.get(y)}"
        finally:
            await admin.aclose()
        await watcher.close()
        await writer.close()


async def test_a_stalled_flush_of_a_deleted_life_does_not_overwrite_the_next_life(
    cluster: ClusterNodes,
) -> None:
    """Node 0 stores versions 1-4 of a record, then its storage path freezes with its flush of
    version 5 in flight (its lease, ``flush_lease`` 2 s, lapses). Node 1 deletes the record and
    creates it again at version 1, both acknowledged (in PostgreSQL) once node 1 took the
    lease. When node 0's held write reaches PostgreSQL, storage must still hold the new life's
    version 1: the delete and the re-create must not be undone by the old life's version 5
    (before fencing it was: a conditional put of v5 applies over v1). Storage refuses it for
    its fence, the sequence node 0 claimed, below node 1's."""
    from conformance.netfaults import FaultProxy

    cluster.options.update({"flush_lease": 2.0, "orphan_after": 1.0})
    name = "cr/stalled-life"
    async with FaultProxy(("127.0.0.1", 5432)) as proxy:
        await start_with_slow_reads(cluster, proxy)
        old = await login(cluster[0].ws_url, "old")
        for version in range(1, 5):
            await old.send(write(name, {"life": 1, "v": version}, ack=str(version)))
            assert (await old.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
        proxy.freeze()
        # Committed; its flush (at once: an ack waits, no write_behind.interval) is held.
        await old.send(write(name, {"life": 1, "v": 5}, ack="5"))
        new = await login(cluster[1].ws_url, "new")
        async with asyncio.timeout(30):  # until node 1 sees version 5
            while True:
                await new.send(rec(R.HEAD, name=name))
                head = await new.recv_until(Topic.RECORD, R.HEAD_RESPONSE, timeout=10)
                if head.version == 5:
                    break
        await new.send(rec(R.DELETE, name=name, correlation_id="d"))
        await new.recv_until(Topic.RECORD, R.DELETE_SUCCESS, timeout=30)
        await new.send(write(name, {"life": 2}, ack="c", version=1))
        assert (await new.recv(30)).action == R.WRITE_ACKNOWLEDGEMENT
        from tests.gateway.cluster.test_records import stored

        snapshot = await stored(cluster, name)
        assert snapshot is not None and (snapshot.version, snapshot.data) == (1, {"life": 2})
        done = await asyncio.to_thread(flush_outcomes, cluster[0])
        proxy.thaw()  # node 0's stalled write of version 5 reaches PostgreSQL now
        for _ in range(600):  # until node 0 learns how its write ended (applied or refused)
            if await asyncio.to_thread(flush_outcomes, cluster[0]) > done:
                break
            await asyncio.sleep(0.05)
        snapshot = await stored(cluster, name)
        assert snapshot is not None and (snapshot.version, snapshot.data) == (1, {"life": 2})
        # It did reach PostgreSQL, and was refused there for its fence.
        metrics = await asyncio.to_thread(cluster[0].metrics)
        assert metrics["recordgate_cluster_record_flush_fenced_total"] >= 1, metrics
        await old.close()
        await new.close()


async def test_writes_resume_over_storage_fences_above_a_restarted_redis(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """Redis restarts empty on a clock behind the previous one's (a failover to a host whose
    clock is behind: sequences are seeded from Redis's clock), so PostgreSQL holds fences above
    every sequence the new Redis gives; simulated by raising PostgreSQL's fences by 11.6 days of
    microseconds. Each first flush is then refused for its fence; writes must still resume,
    acknowledged only once PostgreSQL holds them, a delete and a re-create too (without the
    fence offset raised above storage's, every flush of these records is refused forever and
    no write is acknowledged)."""
    import asyncpg

    nodes = cluster.start(2)
    a = await login(nodes[0].ws_url, "a")
    kept, gone = "cr/fenced/kept", "cr/fenced/gone"
    for name in (kept, gone):
        for version in (1, 2):
            await a.send(write(name, {"v": version}, ack=f"{name}{version}", version=version))
            assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    ahead = 10**12
    fences = f'"{cluster.prefix}_records_fences"'
    pg = await asyncpg.connect(cluster.postgres.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        raised = await pg.fetch(
            f"UPDATE {fences} SET fence = fence + $1 RETURNING name, fence", ahead
        )
        assert {row["name"] for row in raised} == {kept, gone}
        floor = {row["name"]: row["fence"] for row in raised}
        await asyncio.to_thread(redis.kill)
        await asyncio.to_thread(redis.start)  # empty
        async with asyncio.timeout(60):  # writes resume once the nodes reconnect
            while True:
                await a.send(write(kept, {"v": 3}, ack="k3", version=3))
                reply = await a.recv(30)
                if reply.action == R.WRITE_ACKNOWLEDGEMENT:
                    break
                assert reply.action == R.RECORD_UPDATE_ERROR, reply
                assert "Redis" in json.loads(reply.data), reply
                await asyncio.sleep(0.2)
        from tests.gateway.cluster.test_records import stored

        snapshot = await stored(cluster, kept)
        assert snapshot is not None and (snapshot.version, snapshot.data) == (3, {"v": 3})
        b = await login(nodes[1].ws_url, "b")
        await b.send(rec(R.DELETE, name=gone, correlation_id="d"))
        await b.recv_until(Topic.RECORD, R.DELETE_SUCCESS, timeout=30)
        assert await stored(cluster, gone) is None
        await b.send(write(gone, {"life": 2}, ack="c", version=1))
        assert (await b.recv_until(Topic.RECORD, R.WRITE_ACKNOWLEDGEMENT, timeout=30)).name == gone
        snapshot = await stored(cluster, gone)
        assert snapshot is not None and (snapshot.version, snapshot.data) == (1, {"life": 2})
        await a.send(write(kept, {"v": 4}, ack="k4", version=4))  # and the next write at once
        assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
        now = {row["name"]: row["fence"] for row in await pg.fetch(f"SELECT * FROM {fences}")}
        assert now[kept] > floor[kept] and now[gone] > floor[gone], (floor, now)
    finally:
        await pg.close()
    fenced = 0.0
    for node in nodes:
        metrics = await asyncio.to_thread(node.metrics)
        fenced += metrics["recordgate_cluster_record_flush_fenced_total"]
    assert fenced >= 2  # the first flush of each record after the restart was refused
    await a.close()
    await b.close()


async def test_reads_of_names_that_do_not_exist_do_not_fill_redis(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """A read-only client asks the HEAD of 5,000 names that exist nowhere. On one node that
    costs at most its bounded cache; in a cluster each read leaves a state in Redis, which must
    not outlive ``cluster.absent_ttl`` (default 5 s): else any client can fill Redis (which
    must not evict) at its read rate times ``record_ttl`` (300 s). A create after they expired
    is still one version, one value across nodes."""
    import redis.asyncio as aioredis

    nodes = cluster.start(2)
    names = [f"cr/absent/{i}" for i in range(5000)]
    reader = await login(nodes[0].ws_url, "reader")
    await reader.send(rec(R.HEAD_BULK, names=names, correlation_id="h"))
    reply = await reader.recv_until(Topic.RECORD, R.HEAD_RESPONSE_BULK, timeout=60)
    assert set(reply.versions.values()) == {-1}
    admin = aioredis.Redis.from_url(redis.url)

    async def record_keys() -> int:
        return sum([1 async for _ in admin.scan_iter(f"{{{cluster.prefix}}}:r:*", count=1000)])

    try:
        assert await record_keys() >= 5000
        for _ in range(300):  # 30 s: a generous bound over the 5 s
            if await record_keys() == 0:
                break
            await asyncio.sleep(0.1)
        assert await record_keys() == 0, "reads of absent names still hold Redis"
    finally:
        await admin.aclose()
    writer = await login(nodes[1].ws_url, "writer")
    await writer.send(write(names[0], {"by": "writer"}, ack="w", version=1))
    assert (await writer.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
    await reader.send(write(names[0], {"by": "reader"}, ack="r", version=1))
    lost = await reader.recv_until(Topic.RECORD, R.VERSION_EXISTS, timeout=20)
    assert (lost.version, json.loads(lost.data)) == (1, {"by": "writer"})
    await reader.close()
    await writer.close()


@pytest.mark.parametrize("lands", [True, False], ids=["write-lands-late", "write-never-lands"])
async def test_a_write_redis_lost_is_not_acknowledged_after_another_node_read_it_again(
    cluster: ClusterNodes, redis: RedisServer, lands: bool
) -> None:
    """Node 0 commits version 2 while its path to storage is frozen (the ack waits); Redis is
    killed and restarted empty, losing version 2; node 1 reads the record at once, so Redis
    holds it again as storage has it (version 1), before node 0's flusher asks. Then node 0's
    held write either lands late (its connection is reset and the connector writes again) or
    never does (storage stays unreachable past the connector's timeout). Node 0's writer is
    acknowledged only if PostgreSQL holds version 2, and every node then reads what PostgreSQL
    holds (before: acknowledged while PostgreSQL held version 1; or version 2 acknowledged and
    in PostgreSQL while every node read version 1)."""
    from conformance.netfaults import FaultProxy

    name = "cr/lost-reseeded"
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
        await a.send(write(name, {"v": 1}, ack="1", version=1))
        assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
        proxy.freeze()
        await a.send(write(name, {"v": 2}, ack="2", version=2))
        with pytest.raises(TimeoutError):  # committed in Redis, waiting for storage
            await a.recv(1.0)
        await asyncio.to_thread(redis.kill)
        await asyncio.to_thread(redis.start)
        b = await login(cluster[1].ws_url, "b")
        async with asyncio.timeout(20):  # node 1 reads it again from PostgreSQL: version 1
            while True:
                await b.send(rec(R.READ, name=name))
                msg = await b.recv(10)
                if msg.action == R.READ_RESPONSE:
                    assert (msg.version, json.loads(msg.data)) == (1, {"v": 1})
                    break
        proxy.cut()  # the frozen write is reset before it reaches PostgreSQL
        if lands:
            proxy.thaw()  # new connections work: the connector writes it again
        reply = await a.recv(60)
        proxy.thaw()
        from tests.gateway.cluster.test_records import stored

        snapshot = await stored(cluster, name)
        assert snapshot is not None and reply.correlation_id == "2", reply
        print(f"outcome: {reply.action!r}, stored version {snapshot.version}")
        if reply.action == R.WRITE_ACKNOWLEDGEMENT:  # then PostgreSQL holds it
            expected = (2, {"v": 2})
        else:
            assert reply.action == R.RECORD_UPDATE_ERROR, reply
            assert "may be lost" in json.loads(reply.data)
            expected = (1, {"v": 1})
        assert (snapshot.version, snapshot.data) == expected
        for node in cluster:  # and the cluster reads what storage holds, on every node
            async with await login(node.ws_url, f"r-{node.name}") as reader:
                await reader.send(rec(R.READ, name=name))
                got = await reader.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=20)
                assert (got.version, json.loads(got.data)) == expected, node.name
        await a.close()
        await b.close()


async def acknowledged(client: WireClient, names: list[str], version: int) -> None:
    """Writes ``{"v": version}`` as ``version`` of each of ``names`` in turn, each acknowledged."""
    for name in names:
        await client.send(write(name, {"v": version}, ack=name, version=version))
        reply = await client.recv(20)
        assert reply.action == R.WRITE_ACKNOWLEDGEMENT, reply


async def read_once(client: WireClient, name: str) -> tuple[int, Any] | None:
    """One READ: (version, data), or None if the node refused it (RECORD_LOAD_ERROR)."""
    await client.send(rec(R.READ, name=name))
    msg = await client.recv(20)
    if msg.action != R.READ_RESPONSE:
        return None
    return int(msg.version), json.loads(msg.data)


async def read_answered(client: WireClient, name: str) -> tuple[int, Any]:
    """READ until the node answers (it refuses while it cannot read Redis)."""
    while True:
        got = await read_once(client, name)
        if got is not None:
            return got
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("loss", ["redis-restarted", "bus-killed"])
async def test_a_node_whose_bus_is_away_does_not_serve_what_the_bus_missed(
    cluster: ClusterNodes, redis: RedisServer, loss: str
) -> None:
    """Node 1's bus loses Redis (Redis restarted empty, or only the bus's connection killed)
    and cannot subscribe again (its SUBSCRIBE answers are held: a bus in its reconnect backoff,
    up to 2 s) while Redis serves commands again. Node 1 reads records (caching them, before),
    node 0 writes them again (acknowledged), the bus never tells node 1. Node 1's reads must
    then answer node 0's versions or an error, never the versions it read before (before: its
    cache answered them until its bus subscribed again; the intermittent failure of
    ``test_a_write_redis_lost...[write-lands-late]``, whose re-read of storage, announced on the
    bus, was missed this way). Released, every node reads node 0's versions."""
    import redis.asyncio as aioredis

    from conformance.netfaults import FaultProxy

    names = [f"cr/bus-away/{i}" for i in range(3)]
    cluster.options.update({"max_bus_lag": 0.5})
    admin = aioredis.Redis.from_url(redis.url)
    async with FaultProxy(("127.0.0.1", redis.port)) as proxy:
        cluster.add()
        cluster.add(via=proxy.port)  # node 1: its Redis path through the proxy
        await cluster.start_added()
        a = await login(cluster[0].ws_url, "a")
        b = await login(cluster[1].ws_url, "b")
        try:
            await acknowledged(a, names, 1)
            proxy.hold_replies_on(b"SUBSCRIBE")  # node 1's bus alone: its commands flow
            if loss == "redis-restarted":
                await asyncio.to_thread(redis.kill)
                await asyncio.to_thread(redis.start)
                await admin.aclose()
                admin = aioredis.Redis.from_url(redis.url)
                members = f"{{{cluster.prefix}}}:members"
                async with asyncio.timeout(20):  # both registered again: their re-reads ran
                    while True:
                        if await admin.scard(members) >= 2:
                            break
                        await asyncio.sleep(0.05)
            else:
                assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 2
            async with asyncio.timeout(20):  # node 1 reads them (Redis answers again)
                for name in names:
                    assert await read_answered(b, name) == (1, {"v": 1}), name
            await acknowledged(a, names, 2)  # the bus never tells node 1
            for name in names:
                got = await read_once(b, name)
                assert got in (None, (2, {"v": 2})), name  # an error, never the version before
            proxy.release_marked()
            async with asyncio.timeout(20):  # subscribed again: node 1 reads node 0's versions
                for name in names:
                    assert await read_answered(b, name) == (2, {"v": 2}), name
        finally:
            await a.close()
            await b.close()
            await admin.aclose()


async def test_reads_that_storage_failed_leave_nothing_behind(cluster: ClusterNodes) -> None:
    """Storage is unreachable; a client asks the HEAD of 2,000 names Redis does not hold, and
    each read fails (RECORD_LOAD_ERROR naming storage). The node's bookkeeping of reads in
    flight (``recordgate_cluster_record_reads_open``) must return to 0: a failed read that
    stayed counted would keep every later change of that name decoded and held, and a client
    repeating such reads would grow the node's memory without bound."""
    from tests.proxy import TcpProxy

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        node = cluster.add()
        node.config.write_text(
            node.config.read_text().replace("storage:\n", "storage:\n  timeout: 2\n")
        )
        node.config.write_text(proxy.url_for(node.config.read_text()))
        await asyncio.to_thread(node.start)
        reader = await login(node.ws_url, "reader")
        await proxy.cut()  # PostgreSQL unreachable from the node
        names = [f"cr/unread/{i}" for i in range(2000)]
        await reader.send(rec(R.HEAD_BULK, names=names, correlation_id="h"))
        reply = await reader.recv(60)
        assert reply.action != R.HEAD_RESPONSE_BULK, reply
        for name in names[:50]:
            await reader.send(rec(R.READ, name=name))
            reply = await reader.recv(60)
            assert reply.action != R.READ_RESPONSE, reply
        await asyncio.to_thread(  # reads of the bulk's other batches may still be failing
            wait_until,
            "no read left open",
            lambda: node.metrics()["recordgate_cluster_record_reads_open"] == 0,
            30.0,
        )
        await proxy.restore()
        await reader.close()


async def test_subscribed_records_do_not_hold_the_cache_past_its_bounds(
    cluster: ClusterNodes,
) -> None:
    """``cache.max_bytes`` bounds the record data a node holds, as on one node: a client that
    subscribes to 40 records of 100 kB on a node whose cache may hold 1 MB must not make it
    hold 4 MB (subscribed records were never evicted). Changes still reach the subscriber in
    order, once, after their records left the cache."""
    cluster.extra = "cache:\n  max_bytes: 1048576\n"
    nodes = cluster.start(2)
    names = [f"cr/big/{i}" for i in range(40)]
    writer = await login(nodes[1].ws_url, "writer")
    for name in names:
        await writer.send(write(name, {"blob": "x" * 100_000, "n": 1}, ack=name, version=1))
    for _ in names:
        assert (await writer.recv(30)).action == R.WRITE_ACKNOWLEDGEMENT
    watcher = await login(nodes[0].ws_url, "watcher")
    await watcher.send(rec(R.SUBSCRIBEANDHEAD, names=names, correlation_id="s"))
    await watcher.recv_until(Topic.RECORD, R.HEAD_RESPONSE_BULK, timeout=30)
    for name in names:  # node 0 reads each (as a subscriber's client would)
        await watcher.send(rec(R.READ, name=name))
        await watcher.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=30)
    metrics = await asyncio.to_thread(nodes[0].metrics)
    assert metrics["recordgate_store_cached_bytes"] <= 1_048_576
    for version in (2, 3):
        for name in names:
            await writer.send(write(name, {"n": version}, version=version))
    seen = await drain(watcher)
    assert all(seen.get(name) == [2, 3] for name in names), seen
    metrics = await asyncio.to_thread(nodes[0].metrics)
    assert metrics["recordgate_store_cached_bytes"] <= 1_048_576
    await watcher.close()
    await writer.close()


async def test_a_change_the_bus_did_not_confirm_in_time_is_stored_without_waiting_for_orphans(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """The node's bus (its Pub/Sub connection, through a proxy) is held while a write commits:
    Redis made the change, but the bus does not deliver it within ``cluster.max_bus_lag``. The
    writer is told the change was made but not confirmed in order (not a plain failure), and
    the node queues it for storage at once: PostgreSQL holds it long before ``orphan_after``
    (120 s here), the only other way it would get there (before: stored after 120 s)."""
    from conformance.netfaults import FaultProxy
    from tests.gateway.cluster.test_records import stored

    name = "cr/bus-lagged"
    # A bus held longer than 2 * bus_check_interval counts as lost (test_bus_silent.py);
    # here it stands for a bus that lags, so the check is left far behind.
    cluster.options.update({"orphan_after": 120, "max_bus_lag": 0.5, "bus_check_interval": 30})
    async with FaultProxy(("127.0.0.1", redis.port)) as proxy:
        node = cluster.add(via=proxy.port)
        await asyncio.to_thread(node.start)
        async with await login(node.ws_url, "a") as a:
            await a.send(write(name, {"v": 1}, ack="1", version=1))
            assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
            proxy.hold_replies_on(b"SUBSCRIBE")  # the bus alone: commands still flow
            await a.send(write(name, {"v": 2}, ack="2", version=2))
            reply = await a.recv_until(Topic.RECORD, R.RECORD_UPDATE_ERROR, timeout=20)
            text = json.loads(reply.data)
            assert "change was made" in text and "max_bus_lag" in text, text
            proxy.release_marked()
            async with asyncio.timeout(30):  # well before orphan_after (120 s)
                while True:
                    snapshot = await stored(cluster, name)
                    if snapshot is not None and snapshot.version == 2:
                        break
                    await asyncio.sleep(0.2)
            assert snapshot.data == {"v": 2}
            assert node.metrics()["recordgate_cluster_record_bus_lagged_total"] >= 1
            assert node.metrics().get("recordgate_cluster_record_orphans_flushed_total", 0) == 0
            await a.send(rec(R.READ, name=name))
            got = await a.recv_until(Topic.RECORD, R.READ_RESPONSE, timeout=20)
            assert (got.version, json.loads(got.data)) == (2, {"v": 2})


async def test_answers_that_gave_up_on_the_bus_leave_no_waiter_behind(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """The bus is held while 20 writes of different records commit: each gives up after
    ``cluster.max_bus_lag`` and must leave the queue of position waiters at once (before, each
    stayed queued until the bus passed its position, which after a Redis restart may never
    happen), shown by ``recordgate_cluster_record_position_waiters``. Released, every change is
    stored."""
    from conformance.netfaults import FaultProxy
    from tests.gateway.cluster.test_records import stored

    names = [f"cr/gave-up/{i}" for i in range(20)]
    # A bus held longer than 2 * bus_check_interval counts as lost (test_bus_silent.py);
    # here it stands for a bus that lags, so the check is left far behind.
    cluster.options.update({"orphan_after": 120, "max_bus_lag": 0.5, "bus_check_interval": 30})
    async with FaultProxy(("127.0.0.1", redis.port)) as proxy:
        node = cluster.add(via=proxy.port)
        await asyncio.to_thread(node.start)
        async with await login(node.ws_url, "a") as a:
            for name in names:  # cached here: the writes below need no read
                await a.send(write(name, {"v": 1}, ack=name, version=1))
            for _ in names:
                assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
            proxy.hold_replies_on(b"SUBSCRIBE")
            for name in names:
                await a.send(write(name, {"v": 2}, ack=name, version=2))
            refused = set()
            for _ in names:
                reply = await a.recv_until(Topic.RECORD, R.RECORD_UPDATE_ERROR, timeout=30)
                refused.add(reply.name)
            assert refused == set(names)
            metrics = node.metrics()
            assert metrics["recordgate_cluster_record_bus_lagged_total"] >= len(names)
            assert metrics["recordgate_cluster_record_position_waiters"] == 0, metrics
            proxy.release_marked()
            async with asyncio.timeout(60):
                for name in names:
                    while True:
                        snapshot = await stored(cluster, name)
                        if snapshot is not None and snapshot.version == 2:
                            break
                        await asyncio.sleep(0.2)
                    assert snapshot.data == {"v": 2}


async def test_position_waiters_of_a_counter_that_restarted_fail_at_once(
    redis: RedisServer,
) -> None:
    """A node's answer waits for the bus to reach position 150; Redis restarts empty, so its
    change counter begins again from 0 and may not reach 150 for a long time. When the node
    subscribes again (``subscribed``, as after any bus loss) the waiter fails at once with an
    error naming the restart and leaves the queue (before: it stayed until max_bus_lag, 60 s
    here, and stayed queued after)."""
    import uuid

    import redis.asyncio as aioredis

    from connectors.registry import create_connector
    from gateway.cluster.records import ClusterRecords
    from gateway.config import ClusterConfig
    from gateway.exceptions import RecordsUnavailable
    from tests.servers import require_postgres

    prefix = f"t{uuid.uuid4().hex[:10]}"
    config = ClusterConfig(url=redis.url, prefix=prefix, max_bus_lag=60)
    connector = create_connector("sql", require_postgres(), table=f"{prefix}_records")
    records = ClusterRecords(connector, cluster=config)
    client = aioredis.Redis.from_url(redis.url)
    try:
        records.bind(client, "n0")
        await client.set(records.keys.position, 100)
        await records.subscribed()
        waiting = asyncio.create_task(records._caught_up(150))
        for _ in range(1000):  # queued at its first step
            if records.position_waiters:
                break
            await asyncio.sleep(0.01)
        assert records.position_waiters == 1
        await asyncio.to_thread(redis.kill)
        await asyncio.to_thread(redis.start)
        async with asyncio.timeout(20):
            while True:
                try:
                    await records.subscribed()
                    break
                except aioredis.ConnectionError:
                    await asyncio.sleep(0.1)
        with pytest.raises(RecordsUnavailable, match="restarted"):
            await asyncio.wait_for(waiting, 10)
        assert records.position_waiters == 0
    finally:
        await client.aclose()


async def test_a_node_registered_again_with_its_bus_intact_serves_every_version_in_order(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """Node 1's heartbeat lapses (deleted here; in the history run a node starved of CPU
    past ``node_timeout``) while its bus, intact, is behind Redis (its Pub/Sub answers held):
    versions 2 and 3 are committed by node 0 and still on their way. Node 1 registers again;
    its bus lost nothing, so its subscriber must get 2, then 3 (before: the rejoin re-read the
    records as after a bus outage, took Redis's change counter as delivered, pushed version 3
    at once and dropped 2 when the bus brought it: the subscriber saw 1, 3, the history
    checker's intermittent ``no-gap`` violation of ``test_history.py``'s SIGKILL run)."""
    import redis.asyncio as aioredis

    from conformance.netfaults import FaultProxy

    name = "cr/rejoin"
    # the held bus stands for one that lags: its silence check is left far behind
    cluster.options.update({"bus_check_interval": 30, "max_bus_lag": 30})
    admin = aioredis.Redis.from_url(redis.url)
    async with FaultProxy(("127.0.0.1", redis.port)) as proxy:
        cluster.add()
        node = cluster.add(via=proxy.port)
        await cluster.start_added()
        a = await login(cluster[0].ws_url, "a")
        s = await login(cluster[1].ws_url, "s")
        try:
            await a.send(write(name, {"v": 1}, ack="1", version=1))
            assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
            await s.send(rec(R.SUBSCRIBEANDHEAD, names=[name], correlation_id="s"))
            await s.recv_until(Topic.RECORD, R.HEAD_RESPONSE_BULK, timeout=10)
            proxy.hold_replies_on(b"SUBSCRIBE")  # node 1's bus alone: its commands flow
            for version in (2, 3):
                await a.send(write(name, {"v": version}, ack=str(version), version=version))
                assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
            members = await admin.smembers(f"{{{cluster.prefix}}}:members")
            (node_id,) = [m.decode() for m in members if m.decode().startswith("node1/")]
            heartbeat = f"{{{cluster.prefix}}}:node:{node_id}"
            assert await admin.delete(heartbeat) == 1
            await asyncio.to_thread(  # registered again
                wait_until, "node 1's rejoin", lambda: "registering again" in node.log_text(), 20
            )
            await asyncio.sleep(1.0)  # what the rejoin does with records, done
            proxy.release_marked()
            seen = await drain(s)
            assert seen.get(name) == [2, 3], seen
        finally:
            await a.close()
            await s.close()
            await admin.aclose()


async def test_subscribe_and_head_of_many_names_misses_no_version_served_meanwhile(
    cluster: ClusterNodes, redis: RedisServer
) -> None:
    """A client (re)subscribes to x and y at once with SUBSCRIBEANDHEAD, as a reconnecting
    client does, while y's lane is busy (a write on node 1 waiting for node 1's bus, held) and
    x's version 2, from node 0, is on that bus before it. x's head is taken at once (1), then
    the bus delivers x v2 to x's subscribers, then y's write completes and the head answer
    goes out with the subscription. The client must not then get x v3 right after a head of
    1: the answer names what the node served up to the subscription (before: head 1, then
    update 3, the history checker's intermittent ``no-gap`` violation after a reconnect)."""
    from conformance.netfaults import FaultProxy

    x, y = "cr/heads/x", "cr/heads/y"
    cluster.options.update({"bus_check_interval": 30, "max_bus_lag": 30})
    async with FaultProxy(("127.0.0.1", redis.port)) as proxy:
        cluster.add()
        cluster.add(via=proxy.port)  # node 1: its Redis path through the proxy
        await cluster.start_added()
        a = await login(cluster[0].ws_url, "a")
        w = await login(cluster[1].ws_url, "w")
        s = await login(cluster[1].ws_url, "s")
        try:
            for name in (x, y):
                await a.send(write(name, {"v": 1}, ack=name, version=1))
                assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
                assert await read_answered(w, name) == (1, {"v": 1})  # cached on node 1
            proxy.hold_replies_on(b"SUBSCRIBE")  # node 1's bus alone: its commands flow
            await a.send(write(x, {"v": 2}, ack="x2", version=2))
            assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
            await w.send(write(y, {"v": 2}, ack="y2", version=2))  # waits for node 1's bus
            await asyncio.sleep(0.5)
            await s.send(rec(R.SUBSCRIBEANDHEAD, names=[x, y], correlation_id="s"))
            await asyncio.sleep(0.5)
            proxy.release_marked()
            assert (await w.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
            heads = await s.recv_until(Topic.RECORD, R.HEAD_RESPONSE_BULK, timeout=20)
            await a.send(write(x, {"v": 3}, ack="x3", version=3))
            assert (await a.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
            seen = await drain(s)
            assert heads.versions is not None
            assert (heads.versions[x], seen.get(x)) == (2, [3]), (heads.versions, seen)
        finally:
            await a.close()
            await w.close()
            await s.close()


async def test_a_second_delete_is_acknowledged_only_once_storage_has_the_deletion(
    cluster: ClusterNodes,
) -> None:
    """A record is deleted on node 0 while node 0's storage path is frozen: its deletion is
    committed in Redis, not stored, and the deleter waits. A second client deletes the same
    record (on node 1, whose storage path works): the record reads as absent, but storage still
    holds it, so its DELETE_SUCCESS must wait until storage has the deletion (an
    acknowledgement means the delete is durable), as the first deleter's does."""
    from conformance.netfaults import FaultProxy
    from tests.gateway.cluster.test_records import stored

    cluster.options.update({"flush_lease": 30.0, "orphan_after": 60.0})
    name = "cr/deleted-twice"
    async with FaultProxy(("127.0.0.1", 5432)) as proxy:
        await start_with_slow_reads(cluster, proxy)
        first = await login(cluster[0].ws_url, "first")
        await first.send(write(name, {"v": 1}, ack="1"))
        assert (await first.recv(20)).action == R.WRITE_ACKNOWLEDGEMENT
        proxy.freeze()
        await first.send(rec(R.DELETE, name=name, correlation_id="d1"))
        second = await login(cluster[1].ws_url, "second")
        async with asyncio.timeout(30):  # until node 1 sees the record deleted
            while True:
                await second.send(rec(R.HEAD, name=name))
                head = await second.recv_until(Topic.RECORD, R.HEAD_RESPONSE, timeout=10)
                if head.version == -1:
                    break
                await asyncio.sleep(0.1)
        await second.send(rec(R.DELETE, name=name, correlation_id="d2"))
        answered = None
        with contextlib.suppress(TimeoutError):
            answered = await second.recv(3)
            assert answered.action != R.DELETE_SUCCESS or await stored(cluster, name) is None, (
                "DELETE_SUCCESS while storage still holds the record"
            )
        proxy.thaw()
        assert (await first.recv_until(Topic.RECORD, R.DELETE_SUCCESS, timeout=60)).name == name
        assert await stored(cluster, name) is None
        if answered is None:  # the second deleter hears too, once storage has the deletion
            answered = await second.recv_until(Topic.RECORD, R.DELETE_SUCCESS, timeout=60)
        assert (answered.action, answered.name) == (R.DELETE_SUCCESS, name)
        await first.close()
        await second.close()
