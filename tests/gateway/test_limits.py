"""Limits per topic over real sockets (an in-process server): each refusal is answered with
the topic's error, counted under its configuration key, and leaves the connection usable."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from connectors.base import Snapshot
from connectors.memory.connector import MemoryConnector
from gateway.limits import ThrottledLog
from gateway.protocol import (
    ConnectionAction,
    EventAction,
    Message,
    ParserAction,
    PresenceAction,
    RecordAction,
    RpcAction,
    Topic,
)
from gateway.store.cached import CachedStore
from tests.conftest import ServerFactory, url_of
from tests.wire import WireClient

PING = Message(Topic.CONNECTION, ConnectionAction.PING)
LONG = "é" * 1025  # 2050 bytes of UTF-8, 1025 characters


async def still_open(peer: WireClient) -> None:
    await peer.send(PING)
    assert (await peer.recv()).action == ConnectionAction.PONG


@pytest.mark.parametrize(
    ("msg", "answer"),
    [
        (Message(Topic.EVENT, EventAction.EMIT, name=LONG, data="1"), EventAction),
        (Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["ok", LONG]), EventAction),
        (Message(Topic.RPC, RpcAction.PROVIDE, names=[LONG]), RpcAction),
        (Message(Topic.RPC, RpcAction.REQUEST, name=LONG, correlation_id="7"), RpcAction),
        (Message(Topic.PRESENCE, PresenceAction.SUBSCRIBE, names=[LONG]), PresenceAction),
        (Message(Topic.PRESENCE, PresenceAction.QUERY, names=[LONG]), PresenceAction),
    ],
    ids=["emit", "subscribe", "provide", "request", "presence-subscribe", "presence-query"],
)
async def test_overlong_names_are_refused_on_every_topic(
    make_server: ServerFactory, msg: Message, answer: type
) -> None:
    server = await make_server()
    peer = await WireClient.connect(url_of(server), login={})
    await peer.send(msg)
    got = await peer.recv()
    expected = (
        PresenceAction.INVALID_PRESENCE_USERS
        if answer is PresenceAction
        else answer.INVALID_MESSAGE_DATA  # type: ignore[attr-defined]
    )
    assert (got.topic, got.action, got.is_error) == (msg.topic, expected, True)
    assert got.original_action == msg.action and got.correlation_id == msg.correlation_id
    assert "limits.max_name_length" in json.loads(got.data or '""')
    await still_open(peer)
    assert server.trips["limits.max_name_length"] == 1
    await peer.close()


async def test_names_at_the_limit_are_served(connect) -> None:
    sub, pub = await connect(), await connect()
    name = "é" * 1024  # exactly 2048 bytes
    await sub.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=[name], correlation_id="1"))
    assert (await sub.recv()).is_ack
    await pub.send(Message(Topic.EVENT, EventAction.EMIT, name=name, data="1"))
    assert (await sub.recv()).name == name


@pytest.mark.parametrize("topic", [Topic.RECORD, Topic.EVENT, Topic.RPC, Topic.PRESENCE])
async def test_too_many_names_in_one_message(make_server: ServerFactory, topic: Topic) -> None:
    server = await make_server({"limits": {"max_names_per_message": 3}})
    peer = await WireClient.connect(url_of(server), login={})
    action = {
        Topic.RECORD: RecordAction.SUBSCRIBEANDREAD,
        Topic.EVENT: EventAction.SUBSCRIBE,
        Topic.RPC: RpcAction.PROVIDE,
        Topic.PRESENCE: PresenceAction.SUBSCRIBE,
    }[topic]
    await peer.send(Message(topic, action, names=["a", "b", "c", "d"], correlation_id="1"))
    got = await peer.recv()
    assert got.is_error and got.correlation_id == "1" and got.topic == topic
    await peer.expect_silence(0.1)  # refused whole: no ack, no READ_RESPONSE
    await peer.send(Message(topic, action, names=["a", "b", "c"], correlation_id="2"))
    assert not (await peer.recv()).is_error
    assert server.trips["limits.max_names_per_message"] == 1
    await peer.close()


_SUBSCRIBING = [
    (Topic.RECORD, RecordAction.SUBSCRIBE),
    (Topic.RECORD, RecordAction.SUBSCRIBEANDREAD),
    (Topic.RECORD, RecordAction.SUBSCRIBEANDHEAD),
    (Topic.RECORD, RecordAction.SUBSCRIBECREATEANDREAD),
    (Topic.EVENT, EventAction.SUBSCRIBE),
    (Topic.RPC, RpcAction.PROVIDE),
    (Topic.PRESENCE, PresenceAction.SUBSCRIBE),
]


@pytest.mark.parametrize(("topic", "action"), _SUBSCRIBING, ids=lambda v: getattr(v, "name", v))
async def test_subscriptions_per_connection(
    make_server: ServerFactory, topic: Topic, action: int
) -> None:
    server = await make_server({"limits": {"max_subscriptions_per_connection": 3}})
    peer = await WireClient.connect(url_of(server), login={})

    async def subscribe(names: list[str], cid: str) -> Message:
        await peer.send(Message(topic, action, names=names, correlation_id=cid))
        async with asyncio.timeout(2):
            while True:  # skip READ_RESPONSE / HEAD_RESPONSE and the like
                got = await peer.recv()
                if got.correlation_id == cid or got.is_error:
                    return got

    assert not (await subscribe(["a", "b"], "1")).is_error
    refused = await subscribe(["c", "d"], "2")  # 4: refused whole, nothing of it subscribed
    assert (refused.topic, refused.is_error, refused.original_action) == (topic, True, action)
    assert "limits.max_subscriptions_per_connection" in json.loads(refused.data or '""')
    assert not (await subscribe(["a", "b", "c"], "3")).is_error  # held names count once
    assert (await subscribe(["d"], "4")).is_error
    assert server.trips["limits.max_subscriptions_per_connection"] == 2
    other = await WireClient.connect(url_of(server), login={})  # the limit is per connection
    await other.send(Message(topic, action, names=["x", "y", "z"], correlation_id="5"))
    async with asyncio.timeout(2):
        while (got := await other.recv()).correlation_id != "5":
            assert not got.is_error, got
    assert not got.is_error
    await peer.close()
    await other.close()


async def test_listen_patterns_per_connection(make_server: ServerFactory) -> None:
    server = await make_server({"limits": {"max_listen_patterns": 2}})
    peer = await WireClient.connect(url_of(server), login={})
    for pattern in ("a.*", "b.*"):
        await peer.send(Message(Topic.RECORD, RecordAction.LISTEN, name=pattern))
        assert (await peer.recv()).is_ack
    await peer.send(Message(Topic.RECORD, RecordAction.LISTEN, name="c.*"))
    got = await peer.recv()
    assert (got.action, got.name) == (RecordAction.INVALID_LISTEN_REGEX, "c.*")
    await peer.send(Message(Topic.RECORD, RecordAction.UNLISTEN, name="a.*"))
    assert (await peer.recv()).is_ack
    await peer.send(Message(Topic.RECORD, RecordAction.LISTEN, name="c.*"))
    assert (await peer.recv()).is_ack
    assert server.trips["limits.max_listen_patterns"] == 1
    await peer.close()


async def test_connections_per_ip(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"max_connections_per_ip": 2}})
    url = url_of(server)
    first, second = await WireClient.connect(url, login={}), await WireClient.connect(url)
    with pytest.raises(InvalidStatus) as refused:
        await WireClient.connect(url)
    assert refused.value.response.status_code == 503
    assert b"server.max_connections_per_ip" in refused.value.response.body
    await still_open(first)
    await second.close()
    async with asyncio.timeout(2):  # the slot is free once the server has seen the close
        while True:
            try:
                third = await WireClient.connect(url, login={})
                break
            except InvalidStatus:
                await asyncio.sleep(0.02)
    await still_open(third)
    assert server.trips["server.max_connections_per_ip"] >= 1
    await first.close()
    await third.close()


def test_throttled_log_lets_a_burst_through_then_counts(caplog) -> None:
    logger = logging.getLogger("tests.throttled")
    throttled = ThrottledLog(logger, burst=3, interval=0.2)
    with caplog.at_level(logging.INFO, logger="tests.throttled"):
        for i in range(10):
            throttled.info("client %d did something", i)
        assert [r.getMessage() for r in caplog.records] == [
            f"client {i} did something" for i in range(3)
        ]
        throttled.info("another kind of line")  # templates are throttled apart
        assert len(caplog.records) == 4
        time.sleep(0.25)
        throttled.info("client %d did something", 10)
    assert caplog.records[-1].getMessage() == (
        "client 10 did something (7 similar lines suppressed)"
    )


async def test_messages_waiting_behind_a_slow_one_are_bounded_in_bytes(
    make_server: ServerFactory,
) -> None:
    from tests.gateway.test_server import SlowHandler, the_connection, until

    server = await make_server({"server": {"max_receive_queue": 1_000_000}})
    slow = server.handlers[Topic.PRESENCE] = SlowHandler()
    peer = await WireClient.connect(url_of(server), login={})
    transport = the_connection(server).transport
    assert transport is not None
    await peer.send(Message(Topic.PRESENCE, 2, correlation_id="slow"))
    big = "x" * 400_000
    for i in range(5):  # 2 MB in 5 messages, far fewer than MAX_QUEUE (64)
        await peer.send(Message(Topic.PRESENCE, 4, correlation_id=str(i), data=big))
    await until(lambda: not transport.is_reading())  # paused by bytes, not by count
    slow.release.set()
    await until(lambda: len(slow.seen) == 7)
    assert slow.seen == ["slow", "slow done", *map(str, range(5))]
    assert transport.is_reading()
    await still_open(peer)
    await peer.close()


async def test_listen_patterns_share_one_complexity_budget(make_server: ServerFactory) -> None:
    # "a{50}" is 54 RE2 instructions: two fit in 120, a third does not, from any connection.
    server = await make_server({"limits": {"max_listen_program_total": 120}})
    first, second = [await WireClient.connect(url_of(server), login={}) for _ in range(2)]
    for peer, pattern in ((first, "a{50}"), (second, "b{50}"), (second, "a{50}")):
        await peer.send(Message(Topic.EVENT, EventAction.LISTEN, name=pattern))
        assert (await peer.recv()).is_ack  # the same pattern again costs nothing more
    await second.send(Message(Topic.EVENT, EventAction.LISTEN, name="c{50}"))
    got = await second.recv()
    assert (got.action, got.name) == (EventAction.INVALID_LISTEN_REGEX, "c{50}")
    assert server.trips["limits.max_listen_program_total"] == 1
    await first.close()  # its "a{50}" is still held by the second connection
    await second.send(Message(Topic.EVENT, EventAction.UNLISTEN, name="b{50}"))
    assert (await second.recv()).is_ack
    await second.send(Message(Topic.EVENT, EventAction.LISTEN, name="c{50}"))
    assert (await second.recv()).is_ack  # b's share came back
    await second.close()


async def test_a_new_listener_is_offered_every_subscribed_name_across_loop_passes(
    make_server: ServerFactory,
) -> None:
    """200 kB of subscribed names: matched 64 kB per loop pass (listen.SCAN_BYTES), all offered."""
    server = await make_server({"listen": {"response_timeout": 60}})
    subscriber, listener = [await WireClient.connect(url_of(server), login={}) for _ in "ab"]
    names = [f"n/{i:04}/" + "x" * 94 for i in range(2000)]
    await subscriber.send(
        Message(Topic.EVENT, EventAction.SUBSCRIBE, names=names, correlation_id="s")
    )
    assert (await subscriber.recv(5)).is_ack
    await listener.send(Message(Topic.EVENT, EventAction.LISTEN, name="^n/"))
    assert (await listener.recv()).is_ack
    offered: set[str | None] = set()
    while len(offered) < len(names):
        got = await listener.recv(5)
        if got.action == EventAction.LISTEN_RESPONSE_TIMEOUT:  # it never answers: fine
            continue
        assert got.action == EventAction.SUBSCRIPTION_FOR_PATTERN_FOUND, got
        assert got.subscription not in offered  # each name once
        offered.add(got.subscription)
    assert offered == set(names)
    await listener.close()  # first: the subscriber leaving would send it 2,000 notices
    await subscriber.close()


async def test_a_subscriber_busy_for_a_moment_is_not_closed_for_bytes_it_has_since_taken(
    make_server: ServerFactory,
) -> None:
    """``max_send_buffer`` counts what the socket holds when a frame is queued, not what it
    held at the last write: a subscriber that stopped reading for a moment and caught up is
    sent what fits the limit now (issue 11: healthy subscribers must not be dropped)."""
    import socket

    from tests.gateway.test_server import the_connection, until

    limit = 1_000_000
    server = await make_server({"server": {"max_send_buffer": limit}})
    subscriber = await WireClient.connect(url_of(server), login={})
    conn = the_connection(server)
    transport = conn.transport
    assert transport is not None
    await subscriber.send(
        Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["firehose"], correlation_id="s")
    )
    assert (await subscriber.recv()).is_ack
    publisher = await WireClient.connect(url_of(server), login={})
    # small kernel buffers, so the server's own buffer fills after a few hundred kB
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    sub_transport = subscriber.ws.transport
    sub_transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)

    sub_transport.pause_reading()  # busy for a moment
    chunk = json.dumps("x" * 100_000)
    sent = 0
    while transport.get_write_buffer_size() < 700_000:
        assert sent < 200, "the server's send buffer never filled"
        await publisher.send(Message(Topic.EVENT, EventAction.EMIT, name="firehose", data=chunk))
        await still_open(publisher)  # the emit was handled
        sent += 1
    sub_transport.resume_reading()  # caught up: everything queued is read
    for _ in range(sent):
        assert (await subscriber.recv(10)).data == chunk
    await until(lambda: transport.get_write_buffer_size() == 0)

    # One frame whose copy passes the room left at the last write (< 300 kB) but fits the
    # limit now that the socket is empty.
    big = json.dumps("y" * 600_000)
    await publisher.send(Message(Topic.EVENT, EventAction.EMIT, name="firehose", data=big))
    assert (await subscriber.recv(10)).data == big
    await still_open(subscriber)
    assert server.trips["server.max_send_buffer"] == 0
    await subscriber.close()
    await publisher.close()


async def test_oversized_messages_are_counted(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"max_message_size": 10_000}})
    kept = await WireClient.connect(url_of(server), login={})
    big = Message(Topic.EVENT, EventAction.EMIT, name="e", data=json.dumps("x" * 15_000))
    await kept.send(big)  # up to twice the limit: PARSER error, connection kept
    got = await kept.recv()
    assert (got.topic, got.action) == (Topic.PARSER, ParserAction.MAXIMUM_MESSAGE_SIZE_EXCEEDED)
    await still_open(kept)
    assert server.trips["server.max_message_size"] == 1
    closed = await WireClient.connect(url_of(server), login={})
    await closed.send(Message(Topic.EVENT, EventAction.EMIT, name="e", data="1" * 30_000))
    with pytest.raises(ConnectionClosed):
        await closed.recv()
    assert closed.ws.close_code == 1009
    for _ in range(100):  # counted as the socket goes
        if server.trips["server.max_message_size"] == 2:
            break
        await asyncio.sleep(0.02)
    assert server.trips["server.max_message_size"] == 2
    await kept.close()


class _SlowCountingStorage(MemoryConnector):
    """The memory connector with reads that take a while (a stand-in for a loaded database),
    counting how many are in flight at once."""

    def __init__(self) -> None:
        super().__init__("memory://slow-counting")
        self.in_flight = self.most = 0

    async def get(self, name: str) -> Snapshot | None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return await super().get(name)
        finally:
            self.in_flight -= 1


async def test_storage_reads_in_flight_are_capped_server_wide(make_server: ServerFactory) -> None:
    storage = _SlowCountingStorage()
    store = CachedStore(storage, max_concurrent_loads=8)
    server = await make_server({"limits": {"max_concurrent_loads": 8}}, store=store)
    # 20 clients re-reading 100 names each: 16 reads in flight per client, 320 at once uncapped.
    peers = [await WireClient.connect(url_of(server), login={}) for _ in range(20)]
    for i, peer in enumerate(peers):
        names = [f"n/{i}/{j}" for j in range(100)]
        await peer.send(Message(Topic.RECORD, RecordAction.NOTIFY, names=names, correlation_id="n"))
    for peer in peers:
        assert (await peer.recv(30)).is_ack
        await peer.close()
    assert 1 < storage.most <= 8


class _SlowStorage(MemoryConnector):
    """Reads take 20 ms each (a stand-in for a loaded database)."""

    def __init__(self) -> None:
        super().__init__("memory://slow-fair")

    async def get(self, name: str) -> Snapshot | None:
        await asyncio.sleep(0.02)
        return await super().get(name)


async def test_a_storm_of_reads_does_not_starve_another_clients_read(
    make_server: ServerFactory,
) -> None:
    """20 clients NOTIFY 100 names each (320 reads queued at once behind 4 slots: 1.6 s of
    reading in arrival order); a bystander's single read, sent after them, is served within a
    round of turns, not behind the whole queue."""
    store = CachedStore(_SlowStorage(), max_concurrent_loads=4)
    server = await make_server({"limits": {"max_concurrent_loads": 4}}, store=store)
    storms = [await WireClient.connect(url_of(server), login={}) for _ in range(20)]
    bystander = await WireClient.connect(url_of(server), login={})
    for i, peer in enumerate(storms):
        names = [f"storm/{i}/{j}" for j in range(100)]
        await peer.send(Message(Topic.RECORD, RecordAction.NOTIFY, names=names, correlation_id="n"))
    await asyncio.sleep(0.2)  # the storms' reads are queued
    assert store.stats.loads_waiting > 100
    started = time.monotonic()
    await bystander.send(Message(Topic.RECORD, RecordAction.HEAD, name="quiet/one"))
    reply = await bystander.recv(30)
    waited = time.monotonic() - started
    assert reply.action == RecordAction.HEAD_RESPONSE
    # Served in turns: about 20 owners x 20 ms / 4 slots = 0.1 s; in arrival order: > 1 s.
    assert waited < 0.8, waited
    for peer in storms:
        assert (await peer.recv(60)).is_ack
        await peer.close()
    await bystander.close()
