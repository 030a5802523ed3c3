"""Bad input over real sockets: the exact answer, and everyone else is still served afterwards.

The expected answers are those of the reference server (deepstream 7.0.2), recorded side by
side with a raw peer; where ours deliberately differs, the test says so
(``gateway/protocol/session.py`` lists the deviations).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.auth import AuthResult
from gateway.protocol import (
    AuthAction,
    ConnectionAction,
    EventAction,
    Message,
    ParserAction,
    Topic,
    encode,
)
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.wire import WireClient

Check = Callable[[], Awaitable[None]]
GARBAGE = b"\xff\xff\xff\xff"
PING = Message(Topic.CONNECTION, ConnectionAction.PING)
PONG = Message(Topic.CONNECTION, ConnectionAction.PONG)


class PasswordAuthenticator:
    """Lets in whoever sends the one password; the user id is the given username."""

    def __init__(self, password: str) -> None:
        self.password = password

    async def authenticate(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult:
        if auth_data.get("password") != self.password:
            return AuthResult(False, client_data={"reason": "wrong password"})
        return AuthResult(True, user_id=str(auth_data.get("username", "open")))


class BrokenAuthenticator:
    async def authenticate(
        self, auth_data: dict[str, Any], connection: dict[str, Any] | None = None
    ) -> AuthResult:
        raise RuntimeError("directory service down")


def frame(topic: int, payload: bytes) -> bytes:
    body = bytes([0x10, topic, 0x1A, len(payload)]) + payload
    return bytes([len(body)]) + body


def auth(data: Any) -> Message:
    return Message(Topic.AUTH, AuthAction.REQUEST, data=json.dumps(data))


async def bystanders(url: str) -> tuple[Check, list[WireClient]]:
    """A subscriber and a publisher, logged in before the bad input arrives."""
    sub = await WireClient.connect(url, login={})
    pub = await WireClient.connect(url, login={})
    await sub.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["news"], correlation_id="1"))
    assert (await sub.recv()).is_ack

    async def still_served() -> None:
        await pub.send(Message(Topic.EVENT, EventAction.EMIT, name="news", data='"x"'))
        assert await sub.recv() == Message(Topic.EVENT, EventAction.EMIT, name="news", data='"x"')

    return still_served, [sub, pub]


@pytest.fixture
async def still_served(url: str) -> AsyncIterator[Check]:
    check, peers = await bystanders(url)
    yield check
    for peer in peers:
        await peer.close()


async def expect_closed(peer: WireClient, code: int) -> None:
    async with asyncio.timeout(2):
        await peer.ws.wait_closed()
    assert peer.ws.close_code == code


async def expect_open(peer: WireClient) -> None:
    """Still open and still answering: a PING after login gets its PONG."""
    await peer.send(PING)
    assert await peer.recv() == PONG


# -- bytes that are not a deepstream message ----------------------------------------------


async def test_garbage_before_the_challenge(connect, still_served: Check) -> None:
    peer = await connect(login=None)
    await peer.send_raw(GARBAGE)
    assert await peer.recv() == Message(Topic.CONNECTION, ConnectionAction.INVALID_MESSAGE)
    await peer.handshake()  # the connection is still usable
    await still_served()


async def test_garbage_before_login(connect, still_served: Check) -> None:
    peer = await connect(login=None)
    await peer.handshake()
    await peer.send_raw(GARBAGE)
    assert await peer.recv() == Message(Topic.AUTH, AuthAction.INVALID_MESSAGE)
    await peer.login({})
    await still_served()


@pytest.mark.parametrize(
    "data",
    [
        GARBAGE,
        b"",
        encode(Message(Topic.EVENT, EventAction.EMIT, name="x", data="1"))[:-2],
        frame(Topic.EVENT, bytes.fromhex("08023202fffe")),  # name is not UTF-8
        frame(Topic.PARSER, bytes.fromhex("0801")),
    ],
    ids=["garbage", "empty", "truncated", "bad utf-8", "parser topic"],
)
async def test_undecodable_after_login_is_an_unknown_topic(
    connect, still_served: Check, data: bytes
) -> None:
    # The reference turns what it cannot parse into a PARSER message, and nothing serves PARSER.
    # (Deviation: it reads bad UTF-8 leniently, as U+FFFD; we refuse it like other bad bytes.)
    peer = await connect()
    await peer.send_raw(data)
    assert await peer.recv() == Message(
        Topic.PARSER, ParserAction.UNKNOWN_TOPIC, original_topic=Topic.PARSER
    )
    await expect_open(peer)
    await still_served()


@pytest.mark.parametrize(
    "topic",
    [Topic.MONITORING, Topic.CLUSTER, Topic.LOCK, Topic.STATE_REGISTRY, 0, 50, Topic.ERROR],
    ids=["MONITORING", "CLUSTER", "LOCK", "STATE_REGISTRY", "0", "50", "ERROR"],
)
async def test_topics_we_do_not_serve_are_unknown_topics(
    connect, still_served: Check, topic: int
) -> None:
    # The reference answers the same (and means to, but fails to, send the original topic).
    peer = await connect()
    await peer.send_raw(frame(topic, bytes.fromhex("0802")))
    assert await peer.recv() == Message(
        Topic.PARSER, ParserAction.UNKNOWN_TOPIC, original_topic=topic
    )
    await expect_open(peer)
    await still_served()


@pytest.mark.parametrize("topic", [Topic.EVENT, Topic.RECORD, Topic.RPC, Topic.PRESENCE])
async def test_unknown_actions_are_reported(connect, still_served: Check, topic: int) -> None:
    # Deviation: the reference drops these silently; PARSER UNKNOWN_ACTION is the protocol's word.
    peer = await connect()
    await peer.send(Message(topic, 99, name="x"))
    assert await peer.recv() == Message(
        Topic.PARSER, ParserAction.UNKNOWN_ACTION, original_topic=topic, original_action=99
    )
    await expect_open(peer)
    await still_served()


@pytest.mark.parametrize(
    "msg",
    [
        Message(Topic.CONNECTION, ConnectionAction.CHALLENGE),
        Message(Topic.CONNECTION, ConnectionAction.PONG),
        Message(Topic.CONNECTION, 99),
        auth({}),
    ],
    ids=["challenge", "pong", "unknown connection action", "auth"],
)
async def test_handshake_topics_after_login_are_unknown_topics(
    connect, still_served: Check, msg: Message
) -> None:
    peer = await connect()
    await peer.send(msg)
    assert await peer.recv() == Message(
        Topic.PARSER, ParserAction.UNKNOWN_TOPIC, original_topic=msg.topic
    )
    await expect_open(peer)
    await still_served()


@pytest.mark.parametrize("login", [None, {}], ids=["before challenge", "after login"])
async def test_text_frames_close_the_socket(
    connect, still_served: Check, login: dict[str, Any] | None
) -> None:
    # The reference closes too, without a code; 1003 is RFC 6455's "unsupported data".
    peer = await connect(login=login)
    await peer.send_raw("hello")
    await expect_closed(peer, 1003)
    await still_served()


# -- size limits ------------------------------------------------------------------------


async def test_frames_over_the_size_limit(make_server: ServerFactory) -> None:
    """Up to the limit: served. Up to twice: answered, kept. Beyond: closed with 1009."""
    server = await make_server({"server": {"max_message_size": 10_000}})
    url = url_of(server)
    still_served, peers = await bystanders(url)
    peer = await WireClient.connect(url, login={})
    peers.append(peer)

    def subscribe(size: int) -> Message:  # names of 1 kB each (limits.max_name_length: 2048)
        names = [f"{i:04}" + "n" * 996 for i in range(size // 1000)]
        return Message(Topic.EVENT, EventAction.SUBSCRIBE, names=names, correlation_id="c")

    fits = subscribe(9_000)
    assert len(encode(fits)) <= 10_000
    await peer.send(fits)
    assert await peer.recv() == Message(
        Topic.EVENT, EventAction.SUBSCRIBE, correlation_id="c", is_ack=True
    )

    too_big = subscribe(15_000)
    await peer.send(too_big)
    reply = await peer.recv()
    assert (reply.topic, reply.action) == (Topic.PARSER, ParserAction.MAXIMUM_MESSAGE_SIZE_EXCEEDED)
    assert json.loads(reply.data or "") == (
        f"message of {len(encode(too_big))} bytes exceeds the limit of 10000"
    )
    await expect_open(peer)
    await still_served()

    await peer.send(subscribe(25_000))  # the reference closes like this at the limit
    await expect_closed(peer, 1009)
    await still_served()
    for p in peers:
        await p.close()


async def test_long_names_within_the_limit_are_served(connect, still_served: Check) -> None:
    sub, pub = await connect(), await connect()
    name = "ü/" * 682  # 2046 bytes of UTF-8, within limits.max_name_length
    await sub.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=[name], correlation_id="1"))
    assert (await sub.recv()).is_ack
    await pub.send(Message(Topic.EVENT, EventAction.EMIT, name=name, data="1"))
    assert (await sub.recv()).name == name
    await still_served()


# -- handshake order ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["news"]), auth({})],
    ids=["event", "auth"],
)
async def test_messages_before_the_challenge(connect, still_served: Check, msg: Message) -> None:
    peer = await connect(login=None)
    await peer.send(msg)
    assert await peer.recv() == Message(Topic.CONNECTION, ConnectionAction.INVALID_MESSAGE)
    await peer.send(PING)  # no PONG before the challenge, as the reference
    await peer.expect_silence(0.1)
    await peer.handshake()
    await peer.login({})
    await still_served()


@pytest.mark.parametrize(
    "msg",
    [
        Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["news"]),
        Message(Topic.CONNECTION, ConnectionAction.CHALLENGE),
    ],
    ids=["event", "second challenge"],
)
async def test_messages_before_login(connect, still_served: Check, msg: Message) -> None:
    peer = await connect(login=None)
    await peer.handshake()
    await peer.send(msg)
    assert await peer.recv() == Message(Topic.AUTH, AuthAction.INVALID_MESSAGE)
    await peer.send(PING)
    await peer.expect_silence(0.1)
    await peer.login({})
    await still_served()


@pytest.mark.parametrize(
    "msg",
    [
        Message(Topic.AUTH, AuthAction.REQUEST, data="{nope"),  # crashes the reference server
        auth([1, 2]),  # Deviation: the reference lets arrays through
        auth("text"),
        auth(None),
        Message(Topic.AUTH, AuthAction.REQUEST),
        Message(Topic.AUTH, AuthAction.AUTH_SUCCESSFUL, data="{}"),
        Message(Topic.AUTH, 99, data="{}"),
    ],
    ids=["not json", "array", "string", "null", "absent", "wrong action", "unknown action"],
)
async def test_bad_auth_data_is_refused_and_closed(
    connect, still_served: Check, msg: Message
) -> None:
    peer = await connect(login=None)
    await peer.handshake()
    await peer.send(msg)
    assert await peer.recv() == Message(Topic.AUTH, AuthAction.INVALID_MESSAGE_DATA)
    await expect_closed(peer, 1000)
    await still_served()


# -- authentication -----------------------------------------------------------------------


async def test_too_many_auth_attempts(make_server: ServerFactory) -> None:
    server = await make_server(authenticator=PasswordAuthenticator("secret"))
    still_served, peers = await bystanders_with_password(server)
    peer = await WireClient.connect(url_of(server))
    await peer.handshake()
    for _ in range(3):
        await peer.send(auth({"username": "mallory", "password": "guess"}))
        assert await peer.recv() == Message(
            Topic.AUTH, AuthAction.AUTH_UNSUCCESSFUL, data='{"reason":"wrong password"}'
        )
    assert await peer.recv() == Message(Topic.AUTH, AuthAction.TOO_MANY_AUTH_ATTEMPTS)
    await expect_closed(peer, 1000)
    await still_served()
    for p in peers:
        await p.close()


async def test_a_failed_attempt_can_be_followed_by_a_good_one(make_server: ServerFactory) -> None:
    server = await make_server(authenticator=PasswordAuthenticator("secret"))
    peer = await WireClient.connect(url_of(server))
    await peer.handshake()
    await peer.send(auth({"password": "guess"}))
    assert (await peer.recv()).action == AuthAction.AUTH_UNSUCCESSFUL
    await peer.login({"username": "ann", "password": "secret"})
    await expect_open(peer)
    await peer.close()


async def test_an_authenticator_that_fails_counts_as_a_refusal(
    make_server: ServerFactory,
) -> None:
    server = await make_server(authenticator=BrokenAuthenticator())
    peer = await WireClient.connect(url_of(server))
    await peer.handshake()
    await peer.send(auth({"username": "ann"}))
    assert await peer.recv() == Message(Topic.AUTH, AuthAction.AUTH_UNSUCCESSFUL)
    await peer.close()


async def bystanders_with_password(server: Server) -> tuple[Check, list[WireClient]]:
    url = url_of(server)
    sub = await WireClient.connect(url, login={"password": "secret"})
    pub = await WireClient.connect(url, login={"password": "secret"})
    await sub.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["news"], correlation_id="1"))
    assert (await sub.recv()).is_ack

    async def still_served() -> None:
        await pub.send(Message(Topic.EVENT, EventAction.EMIT, name="news", data='"x"'))
        assert (await sub.recv()).name == "news"

    return still_served, [sub, pub]


# -- timers ---------------------------------------------------------------------------------


async def test_unauthenticated_clients_time_out(make_server: ServerFactory) -> None:
    server = await make_server(
        {"server": {"unauthenticated_timeout": 0.2}},
        authenticator=PasswordAuthenticator("secret"),
    )
    still_served, peers = await bystanders_with_password(server)
    idle = await WireClient.connect(url_of(server))
    failed = await WireClient.connect(url_of(server))
    await failed.handshake()
    await failed.send(auth({"password": "guess"}))
    assert (await failed.recv()).action == AuthAction.AUTH_UNSUCCESSFUL
    # Deviation: a failed attempt stops the reference's timer for good; ours keeps running.
    for peer in (idle, failed):
        assert await peer.recv(timeout=1) == Message(
            Topic.CONNECTION, ConnectionAction.AUTHENTICATION_TIMEOUT
        )
        await expect_closed(peer, 1000)
    await asyncio.sleep(0.1)
    await still_served()  # logged in before the timeout, so never timed out
    for p in peers:
        await p.close()


async def test_silent_sockets_are_dropped_after_two_heartbeats(
    make_server: ServerFactory,
) -> None:
    server = await make_server({"server": {"heartbeat_interval": 0.1}})
    url = url_of(server)
    silent = await WireClient.connect(url, login={})
    lively = await WireClient.connect(url, login={})
    loop = asyncio.get_running_loop()
    start = loop.time()
    while silent.ws.close_code is None and loop.time() - start < 2:
        await lively.send(PING)
        assert await lively.recv() == PONG
        await asyncio.sleep(0.05)
    assert silent.ws.close_code == 1000
    assert loop.time() - start >= 0.2  # not before two intervals without a message
    await expect_open(lively)
    await silent.close()
    await lively.close()


# -- connection actions ---------------------------------------------------------------------


async def test_ping_is_answered_with_pong(connect) -> None:
    peer = await connect()
    await peer.send(PING)
    assert await peer.recv() == PONG
    await peer.expect_silence(0.05)


@pytest.mark.parametrize("login", [None, {}], ids=["before challenge", "after login"])
async def test_closing_is_answered_with_closed_then_close(
    connect, still_served: Check, login: dict[str, Any] | None
) -> None:
    # Deviation: the reference never implemented CLOSING (its client closes by itself).
    peer = await connect(login=login)
    await peer.send(Message(Topic.CONNECTION, ConnectionAction.CLOSING))
    assert await peer.recv() == Message(Topic.CONNECTION, ConnectionAction.CLOSED)
    await expect_closed(peer, 1000)
    await still_served()
