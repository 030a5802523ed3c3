"""The server plumbing: HTTP paths, lifecycle, many clients, and handlers that fail."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import pytest

from gateway.connection import Connection
from gateway.protocol import EventAction, Message, Topic
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.wire import WireClient


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("path", ["/health-check", "/health-check?probe=1"])
async def test_health_check_is_200(server: Server, path: str) -> None:
    assert await http_get(server.port, path) == (200, b"OK\n")


@pytest.mark.parametrize("path", ["/", "/nope", "/deepstreamx", "/health-check/more"])
async def test_unknown_paths_are_404(server: Server, path: str) -> None:
    status, _ = await http_get(server.port, path)
    assert status == 404


async def test_paths_come_from_the_config(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"path": "/ws", "health_path": "/up"}})
    assert (await http_get(server.port, "/up"))[0] == 200
    assert (await http_get(server.port, "/health-check"))[0] == 404
    peer = await WireClient.connect(f"ws://127.0.0.1:{server.port}/ws", login={})
    await peer.close()


async def test_many_clients_are_served_at_once(connect) -> None:
    subscribers = await asyncio.gather(*(connect() for _ in range(40)))
    for i, peer in enumerate(subscribers):
        await peer.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["all"], correlation_id=str(i))
        )
    for i, peer in enumerate(subscribers):
        assert (await peer.recv()).correlation_id == str(i)
    publisher = await connect()
    for n in range(5):
        await publisher.send(Message(Topic.EVENT, EventAction.EMIT, name="all", data=str(n)))
    for peer in subscribers:
        assert [(await peer.recv()).data for _ in range(5)] == ["0", "1", "2", "3", "4"]


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not condition():  # noqa: ASYNC110 (polls server state, which has no event)
            await asyncio.sleep(0.01)


async def test_a_vanished_client_is_forgotten(server: Server, connect) -> None:
    gone, stays = await connect(), await connect()
    for peer in (gone, stays):
        await peer.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["n"], correlation_id="1")
        )
        await peer.recv()
    assert len(server.connections) == 2
    gone.ws.transport.abort()  # no close handshake: the TCP connection just drops
    await until(lambda: len(server.connections) == 1)
    assert list(server.events.subscriptions.subscribers("n")) == list(server.connections)
    await connect()  # and new clients still get in


class ExplodingHandler:
    """A handler with a bug: one action raises, one awaits and then raises."""

    def handle(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        if msg.action == 2:
            raise RuntimeError("sync bug")
        return self._later()

    async def _later(self) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async bug")

    def on_disconnect(self, conn: Connection) -> None:
        raise RuntimeError("cleanup bug")


async def test_a_failing_handler_is_logged_and_the_connection_goes_on(
    server: Server, connect, caplog: pytest.LogCaptureFixture
) -> None:
    server.handlers[Topic.PRESENCE] = ExplodingHandler()
    peer = await connect()
    with caplog.at_level(logging.ERROR, logger="gateway.server"):
        await peer.send(Message(Topic.PRESENCE, 2))
        await peer.send(Message(Topic.PRESENCE, 4, correlation_id="q"))
        await peer.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["x"], correlation_id="1")
        )
        assert (await peer.recv()).correlation_id == "1"
        await peer.close()
        await until(lambda: not server.connections)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("handling" in m for m in messages) == 2
    assert any("cleanup" in m for m in messages)


async def test_graceful_close_says_goodbye_and_releases_the_port(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    peers = [await WireClient.connect(url_of(server), login={}) for _ in range(3)]
    await server.close()
    for peer in peers:
        async with asyncio.timeout(2):
            await peer.ws.wait_closed()
        assert peer.ws.close_code == 1001  # going away
    assert not server.connections
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", server.port))


async def test_server_is_an_async_context_manager() -> None:
    from gateway.config import config_from_dict

    config = config_from_dict(
        {"server": {"host": "127.0.0.1", "port": 0}, "storage": {"type": "memory"}}
    )
    async with Server(config) as server:
        assert server.port != 0
        assert (await http_get(server.port, "/health-check"))[0] == 200
    with pytest.raises(OSError):
        await http_get(server.port, "/health-check")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_broadcast_framing_is_the_websocket_framing(size: int) -> None:
    from websockets.frames import Frame, Opcode

    from gateway.connection import _ws_frame

    data = bytes(i % 251 for i in range(size))
    assert _ws_frame(data) == Frame(Opcode.BINARY, data).serialize(mask=False)
    assert _ws_frame(data) is _ws_frame(data)  # framed once per broadcast


@pytest.mark.parametrize("size", [100, 60_000, 70_000, 500_000])
async def test_broadcasts_of_every_size_arrive_intact(connect, size: int) -> None:
    subscribers = [await connect() for _ in range(3)]
    for peer in subscribers:
        await peer.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["big"], correlation_id="1")
        )
        await peer.recv()
    sent = ['"' + "x" * (size - n) + '"' for n in range(3)]  # JSON, one byte shorter each
    publisher = await connect()
    for data in sent:
        await publisher.send(Message(Topic.EVENT, EventAction.EMIT, name="big", data=data))
    for peer in subscribers:
        assert [(await peer.recv()).data for _ in range(3)] == sent


# -- the WebSocket layer: message order, fragments, pings, timeouts --------------------------


class SlowHandler:
    """Notes what it handles, in order; action 2 holds its connection until ``release``."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        self.release = asyncio.Event()
        self.at_disconnect: list[list[str | None]] = []

    def handle(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        self.seen.append(msg.correlation_id)
        return self._hold(msg) if msg.action == 2 else None

    async def _hold(self, msg: Message) -> None:
        await self.release.wait()
        self.seen.append(f"{msg.correlation_id} done")

    def on_disconnect(self, conn: Connection) -> None:
        self.at_disconnect.append(list(self.seen))


def the_connection(server: Server) -> Connection:
    (conn,) = server.connections
    return conn


async def test_messages_wait_behind_a_slow_one_and_reading_pauses(server: Server, connect) -> None:
    from gateway.connection import MAX_QUEUE

    slow = server.handlers[Topic.PRESENCE] = SlowHandler()
    peer = await connect()
    transport = the_connection(server).transport
    assert transport is not None
    await peer.send(Message(Topic.PRESENCE, 2, correlation_id="slow"))
    count = MAX_QUEUE + 36
    for i in range(count):
        await peer.send(Message(Topic.PRESENCE, 4, correlation_id=str(i)))
    await until(lambda: not transport.is_reading())  # too many waiting: reading paused
    assert slow.seen == ["slow"]
    slow.release.set()
    await until(lambda: len(slow.seen) == count + 2)
    assert slow.seen == ["slow", "slow done", *map(str, range(count))]
    assert transport.is_reading()
    await peer.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["x"], correlation_id="1"))
    assert (await peer.recv()).correlation_id == "1"
    assert the_connection(server)._queue is None  # the waiting line goes once it is empty


async def test_an_idle_connection_keeps_neither_a_waiting_line_nor_the_handshake_headers(
    server: Server, connect
) -> None:
    """What an idle connection costs (issue 11): no deque until a message must wait, no
    cancelled timer, and the handshake request, which websockets' parser keeps, without its
    headers."""
    peer = await connect()
    conn = the_connection(server)
    assert conn._queue is None
    assert conn._timer is None  # the opening handshake's deadline, cancelled, is not kept
    kept = conn.protocol.parser.gi_frame  # the parser generator: its frame holds the request
    assert kept is not None
    request = kept.f_locals["request"]
    assert len(request.headers) == 0
    await peer.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["x"], correlation_id="1"))
    assert (await peer.recv()).correlation_id == "1"


async def test_a_client_gone_mid_message_is_forgotten_after_what_it_sent(
    server: Server, connect
) -> None:
    slow = server.handlers[Topic.PRESENCE] = SlowHandler()
    peer = await connect()
    await peer.send(Message(Topic.PRESENCE, 2, correlation_id="slow"))
    await peer.send(Message(Topic.PRESENCE, 4, correlation_id="after"))
    await peer.close()
    await asyncio.sleep(0.05)
    assert slow.at_disconnect == []  # not while a message of its own is still being handled
    slow.release.set()
    await until(lambda: bool(slow.at_disconnect))
    assert slow.at_disconnect == [["slow", "slow done", "after"]]
    assert not server.connections


async def test_fragmented_messages_are_put_together(connect) -> None:
    from gateway.protocol import encode

    peer = await connect()
    frame = encode(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["f"], correlation_id="7"))
    await peer.ws.send([frame[:3], b"", frame[3:5], frame[5:]])
    assert await peer.recv() == Message(
        Topic.EVENT, EventAction.SUBSCRIBE, correlation_id="7", is_ack=True
    )
    await peer.ws.send(["fragmented ", "text"])
    async with asyncio.timeout(2):
        await peer.ws.wait_closed()
    assert peer.ws.close_code == 1003  # as any text frame


async def test_text_that_is_not_utf8_closes_with_1007(connect) -> None:
    peer = await connect()
    async with peer.ws.send_context():
        peer.ws.protocol.send_text(b"\xff\xfe")
    async with asyncio.timeout(2):
        await peer.ws.wait_closed()
    assert peer.ws.close_code == 1007


async def test_websocket_pings_are_answered(connect) -> None:
    peer = await connect()
    pong = await peer.ws.ping(b"hello")
    async with asyncio.timeout(2):
        await pong


async def upgraded(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw TCP peer that has done the opening handshake and then reads nothing by itself."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /deepstream HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert head.startswith(b"HTTP/1.1 101 ")
    return reader, writer


async def test_a_peer_that_never_finishes_the_close_handshake_is_dropped(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from websockets.frames import Frame, Opcode

    monkeypatch.setattr("gateway.connection.CLOSE_TIMEOUT", 0.2)
    reader, writer = await upgraded(server.port)
    writer.write(Frame(Opcode.TEXT, b"text").serialize(mask=True))  # the server closes: 1003
    async with asyncio.timeout(2):
        rest = await reader.read()  # until the server gives up waiting and drops the socket
    assert rest[:4] == b"\x88\x1f\x03\xeb"  # a close frame, 1003 and its reason
    writer.close()
    await until(lambda: not server.connections)


async def test_a_socket_that_never_says_hello_is_dropped(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.connection.OPEN_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    async with asyncio.timeout(2):
        assert await reader.read() == b""
    writer.close()


async def test_a_failing_http_answer_is_a_500(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(server, "respond", broken)
    with caplog.at_level(logging.ERROR, logger="gateway.connection"):
        assert (await http_get(server.port, "/health-check"))[0] == 500
    assert any("/health-check" in r.getMessage() for r in caplog.records)


async def test_closing_the_server_does_not_wait_for_sockets_still_in_their_handshake(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /deepstream HTTP/1.1\r\n")  # and never the rest
    await asyncio.sleep(0.05)
    async with asyncio.timeout(2):
        await server.close()
    writer.close()
