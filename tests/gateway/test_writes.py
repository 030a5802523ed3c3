"""When a connection's output reaches its socket: once per read for what the read produced, and
in a long read every ``FLUSH_EVERY`` messages per connection waiting, so a peer on another core
starts on the first answers while the rest are handled, while a fan-out still writes each
subscriber once per read. Real sockets against a real server; ``Connection._flush`` and
``data_received`` are wrapped only to count the writes and reads."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from gateway.connection import FLUSH_EVERY, Connection
from gateway.protocol import EventAction, Message, RecordAction, Topic, encode
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.gateway.test_framing import ACCEPTED, LOGGED_IN, LOGIN, UPGRADE, frame, opened, replies
from tests.wire import WireClient, write

MB = 1 << 20


class Counted:
    """Per connection id: the reads that brought data, and the event frames of each write."""

    def __init__(self) -> None:
        self.reads: dict[int, int] = {}
        self.writes: dict[int, list[int]] = {}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counted]:
    seen = Counted()
    flush, received = Connection._flush, Connection.data_received

    def counting_flush(self: Connection) -> None:
        frames = sum(1 for data in self.protocol.writes if data[:1] == b"\x82")
        if frames:
            seen.writes.setdefault(self.id, []).append(frames)
        flush(self)

    def counting_read(self: Connection, data: bytes) -> None:
        seen.reads[self.id] = seen.reads.get(self.id, 0) + 1
        received(self, data)

    # patched on the class before any connection exists: the loops look the method up then
    monkeypatch.setattr(Connection, "_flush", counting_flush)
    monkeypatch.setattr(Connection, "data_received", counting_read)
    yield seen


def emit(i: int) -> bytes:
    return frame(encode(Message(Topic.EVENT, EventAction.EMIT, name="e", data=f'"{i}"')))


async def subscribed(connect, count: int) -> list:
    peers = []
    for _ in range(count):
        peer = await connect()
        await peer.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["e"], correlation_id="1")
        )
        await peer.recv()
        peers.append(peer)
    return peers


async def publisher(server: Server) -> tuple[asyncio.StreamWriter, int]:
    """A raw, logged-in socket (so its emits go out in one TCP write) and its connection's id."""
    known = {conn.id for conn in server.connections}
    reader, writer = await opened(server)
    writer.write(LOGIN)
    assert await replies(reader, 2) == ACCEPTED + LOGGED_IN
    (source,) = {conn.id for conn in server.connections} - known
    return writer, source


async def received(peer, count: int) -> list[str | None]:
    return [(await peer.recv()).data for _ in range(count)]


async def test_a_long_read_is_written_out_as_it_goes(server: Server, connect, counted) -> None:
    """100 emits in one TCP write to one subscriber: it gets them, in order, in writes of at
    most FLUSH_EVERY frames (a single write of all 100 once the read ends, before)."""
    (peer,) = await subscribed(connect, 1)
    (subscriber,) = {conn.id for conn in server.connections}
    writer, _ = await publisher(server)
    counted.writes.clear()
    writer.write(b"".join(emit(i) for i in range(100)))
    assert await received(peer, 100) == [f'"{i}"' for i in range(100)]
    writes = counted.writes[subscriber]
    assert sum(writes) == 100
    assert max(writes) <= FLUSH_EVERY, writes
    writer.close()


async def test_a_fan_out_writes_each_subscriber_once_per_read(
    server: Server, connect, counted
) -> None:
    """100 emits in one TCP write to 8 subscribers: 8 connections wait for output, so the
    read would have to handle 8 * FLUSH_EVERY messages before writing mid-read; each subscriber
    gets one write per read of the publisher's."""
    subscribers = 8
    assert subscribers * FLUSH_EVERY > 100
    peers = await subscribed(connect, subscribers)
    ids = {c.id for c in server.connections}
    writer, source = await publisher(server)
    reads_before = counted.reads[source]
    counted.writes.clear()
    writer.write(b"".join(emit(i) for i in range(100)))
    for peer in peers:
        assert await received(peer, 100) == [f'"{i}"' for i in range(100)]
    reads = counted.reads[source] - reads_before
    for conn in ids:
        writes = counted.writes[conn]
        assert sum(writes) == 100
        assert len(writes) <= reads, (writes, reads)
    writer.close()


async def test_a_connection_dropped_by_a_write_mid_read_handles_no_more_of_it(
    make_server: ServerFactory,
) -> None:
    """300 READs of a 400 kB record in one TCP write from a client that reads nothing: the
    first write of the read (FLUSH_EVERY answers, 12.8 MB) passes max_send_buffer_total, so the
    server drops the connection; the other answers would go nowhere, and are not built (before:
    all 300, 120 MB, on either loop: each write emptied the count max_send_buffer is checked
    against, and dropped what it was given)."""
    server = await make_server(
        {"server": {"max_send_buffer": 64 * MB, "max_send_buffer_total": 4 * MB}}
    )
    owner = await WireClient.connect(url_of(server), login={})
    await owner.send(write("big", {"s": "x" * 400_000}))
    await owner.send(Message(Topic.RECORD, RecordAction.READ, name="big"))
    await owner.recv_until(Topic.RECORD, RecordAction.READ_RESPONSE)

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    known = {conn.id for conn in server.connections}
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(UPGRADE)
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.write(LOGIN)
    assert await replies(reader, 2) == ACCEPTED + LOGGED_IN
    (greedy,) = [conn for conn in server.connections if conn.id not in known]
    sent = server._outbox.sent[Topic.RECORD]
    read = frame(encode(Message(Topic.RECORD, RecordAction.READ, name="big")))
    writer.write(read * 300)
    async with asyncio.timeout(5):
        await greedy.closed
    assert server.trips["server.max_send_buffer_total"] == 1
    # FLUSH_EVERY, or twice that if the kernel took most of the first write
    assert server._outbox.sent[Topic.RECORD] - sent <= 2 * FLUSH_EVERY
    writer.close()
    await owner.close()


async def test_a_read_answered_past_max_send_buffer_lets_other_clients_in(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 READs of a 1 kB record in one TCP write (34 kB: 2 MB of answers) from a client that
    reads them as they come, on a thread of its own: no callback of the loop builds more than
    max_send_buffer (256 kB) of them plus FLUSH_EVERY, so the read takes several (before: one
    callback built all 2,000, or as many as the socket took until max_send_buffer, every other
    client waiting meanwhile); a client that kept up (no max_send_buffer trip) got them all."""
    built: list[int] = []
    received = Connection.data_received

    def counting_read(self: Connection, data: bytes) -> None:
        before = self._outbox.sent[Topic.RECORD]
        received(self, data)
        built.append(self._outbox.sent[Topic.RECORD] - before)

    monkeypatch.setattr(Connection, "data_received", counting_read)
    limit = 256 * 1024
    server = await make_server({"server": {"max_send_buffer": limit}})
    owner = await WireClient.connect(url_of(server), login={})
    await owner.send(write("big", {"s": "x" * 1000}))
    await owner.send(Message(Topic.RECORD, RecordAction.READ, name="big"))
    size = len(encode(await owner.recv_until(Topic.RECORD, RecordAction.READ_RESPONSE)))
    count = 2000
    read = frame(encode(Message(Topic.RECORD, RecordAction.READ, name="big")))

    def client() -> int:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(UPGRADE)
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            sock.sendall(LOGIN)
            rest = head.split(b"\r\n\r\n", 1)[1]
            for _ in range(2):  # the login's replies: small frames
                while len(rest) < 2 or len(rest) < 2 + rest[1]:
                    rest += sock.recv(4096)
                rest = rest[2 + rest[1] :]
            sock.sendall(read * count)
            got = 0
            while got < count * size and (data := sock.recv(1 << 20)):
                got += len(data)
            return got

    built.clear()
    got = await asyncio.to_thread(client)
    assert max(built) <= limit // size + FLUSH_EVERY, built
    assert len([answers for answers in built if answers]) > 1, built
    if not server.trips["server.max_send_buffer"]:
        assert sum(built) == count
        assert got >= count * size
    await owner.close()
