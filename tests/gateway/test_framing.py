"""The connection's own WebSocket frame parser (``Connection._frames_received``) against raw
TCP peers: frames cut anywhere, control frames and fragments between data frames, frames sent
with the handshake, and frames websockets must refuse."""

from __future__ import annotations

import asyncio
import json
import random
import socket

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from gateway.connection import BufferedConnection
from gateway.protocol import (
    AuthAction,
    ConnectionAction,
    EventAction,
    Message,
    Topic,
    decode,
    encode,
)
from gateway.server import Server
from tests.gateway.test_server import the_connection, until

UPGRADE = (
    b"GET /deepstream HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def frame(payload: bytes, opcode: Opcode = Opcode.BINARY, fin: bool = True) -> bytes:
    """A client frame (masked, with a random mask)."""
    return Frame(opcode, payload, fin=fin).serialize(mask=True)


def subscribe(tag: str) -> bytes:
    return encode(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=[tag], correlation_id=tag))


LOGIN = frame(encode(Message(Topic.CONNECTION, ConnectionAction.CHALLENGE, url="x"))) + frame(
    encode(Message(Topic.AUTH, AuthAction.REQUEST, data=json.dumps({})))
)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (unmasked): its opcode and payload."""
    head = await asyncio.wait_for(reader.readexactly(2), 5)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(length)


async def replies(reader: asyncio.StreamReader, count: int) -> list[str]:
    """The next ``count`` frames, each as what it says: a message's topic/action/correlation id,
    ``pong:<data>`` or ``close:<code>``."""
    found = []
    for _ in range(count):
        opcode, payload = await read_frame(reader)
        if opcode == Opcode.PONG:
            found.append(f"pong:{payload.decode()}")
        elif opcode == Opcode.CLOSE:
            found.append(f"close:{int.from_bytes(payload[:2], 'big')}")
        else:
            msg = decode(payload)
            found.append(f"{msg.topic}/{msg.action}/{msg.correlation_id}")
    return found


ACCEPTED = [f"{Topic.CONNECTION}/{ConnectionAction.ACCEPT}/None"]
LOGGED_IN = [f"{Topic.AUTH}/{AuthAction.AUTH_SUCCESSFUL}/None"]


def acked(*tags: str) -> list[str]:
    return [f"{Topic.EVENT}/{EventAction.SUBSCRIBE}/{tag}" for tag in tags]


async def opened(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.write(UPGRADE)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    return reader, writer


@pytest.mark.parametrize("cut", ["bytes", "random"])
async def test_frames_cut_anywhere_arrive_whole_and_in_order(server: Server, cut: str) -> None:
    """Data frames, a ping and a fragmented message, sent a byte at a time or in random
    pieces: every message is handled once, in order, and the pong comes between them."""
    reader, writer = await opened(server)
    stream = LOGIN + b"".join(frame(subscribe(str(i))) for i in range(3))
    stream += frame(b"p", Opcode.PING)
    stream += b"".join(frame(subscribe(str(i))) for i in range(3, 5))
    five = subscribe("5")
    stream += frame(five[:4], fin=False) + frame(five[4:6], Opcode.CONT, fin=False)
    stream += frame(five[6:], Opcode.CONT)
    stream += frame(subscribe("6"))
    rng = random.Random(11)
    pos = 0
    while pos < len(stream):
        size = 1 if cut == "bytes" else rng.randint(1, 40)
        writer.write(stream[pos : pos + size])
        await writer.drain()
        await asyncio.sleep(0.001)
        pos += size
    expected = ACCEPTED + LOGGED_IN + acked("0", "1", "2") + ["pong:p"] + acked("3", "4", "5", "6")
    assert await replies(reader, len(expected)) == expected
    assert the_connection(server)._inbound is not None  # the connection parsed them itself
    writer.close()


async def test_frames_sent_with_the_handshake_are_handled_then_the_connection_parses(
    server: Server,
) -> None:
    """A client that sends frames before the 101 (not allowed, but possible), the last one cut
    in its middle: websockets parses those, and the connection takes over only at a frame's
    end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    one = frame(subscribe("1"))
    writer.write(UPGRADE + LOGIN + frame(subscribe("0")) + one[:5])
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    assert await replies(reader, 3) == ACCEPTED + LOGGED_IN + acked("0")
    conn = the_connection(server)
    assert conn._inbound is None  # websockets is in the middle of a frame
    writer.write(one[5:])
    assert await replies(reader, 1) == acked("1")
    writer.write(frame(subscribe("2")))
    assert await replies(reader, 1) == acked("2")
    assert conn._inbound is not None
    writer.close()


async def test_an_unmasked_frame_closes_with_1002(server: Server) -> None:
    reader, writer = await opened(server)
    writer.write(LOGIN)
    assert await replies(reader, 2) == ACCEPTED + LOGGED_IN
    writer.write(Frame(Opcode.BINARY, subscribe("0")).serialize(mask=False))
    assert await replies(reader, 1) == ["close:1002"]
    writer.close()


async def test_nothing_after_a_close_frame_is_handled(server: Server) -> None:
    reader, writer = await opened(server)
    writer.write(LOGIN)
    assert await replies(reader, 2) == ACCEPTED + LOGGED_IN
    writer.write(frame(subscribe("0")) + frame(b"\x03\xe8", Opcode.CLOSE) + frame(subscribe("1")))
    assert await replies(reader, 2) == [*acked("0"), "close:1000"]
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then the server closes the socket
    writer.close()
    await until(lambda: not server.connections)


@pytest.mark.parametrize("split", [1, 3, 9])
async def test_a_frame_over_max_size_closes_with_1009_whatever_arrives_first(
    make_server, split: int
) -> None:
    server = await make_server({"server": {"max_message_size": 1000}})
    reader, writer = await opened(server)
    writer.write(LOGIN)
    assert await replies(reader, 2) == ACCEPTED + LOGGED_IN
    big = frame(b"x" * 2500)  # websockets' max_size is twice max_message_size
    writer.write(big[:split])  # the header (2 + 2 + 4 bytes), cut or not
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(big[split:])
    assert await replies(reader, 1) == ["close:1009"]
    writer.close()
    await until(lambda: server.trips["server.max_message_size"] == 1)  # as the socket goes


async def test_the_state_the_connection_reads_is_websockets_state(server: Server) -> None:
    """The connection reads websockets' private ``_state`` per frame and per send (its
    ``state`` property costs twenty times as much): it must be what the property says, open
    and closing."""
    reader, writer = await opened(server)
    writer.write(LOGIN)
    assert await replies(reader, 2) == ACCEPTED + LOGGED_IN
    conn = the_connection(server)
    protocol = conn.protocol
    assert protocol._state is protocol.state is State.OPEN and conn.is_open
    conn.close(1000)
    assert protocol._state is protocol.state is State.CLOSING and not conn.is_open
    assert await replies(reader, 1) == ["close:1000"]
    writer.close()


def sized(size: int, tag: str) -> tuple[bytes, str]:
    """A subscribe of event ``tag`` whose correlation id pads it to ``size`` bytes, and the id."""
    pad = size - len(subscribe(tag))
    for _ in range(3):  # the correlation id's length prefix grows with it
        cid = tag + "x" * pad
        data = encode(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=[tag], correlation_id=cid))
        pad += size - len(data)
    assert len(data) == size
    return data, cid


@pytest.mark.parametrize("cut", ["whole", "random"])
async def test_frames_of_each_length_encoding_arrive_whole(server: Server, cut: str) -> None:
    """Frames whose length takes 7 bits, 16 bits and 64 bits, at each boundary, in one write or
    cut anywhere: each is handled once, in order, with its payload intact."""
    reader, writer = await opened(server)
    writer.write(LOGIN)
    assert await replies(reader, 2) == ACCEPTED + LOGGED_IN
    sizes = [125, 126, 127, 1000, 65535, 65536, 70000, 20, 125]
    sent = [sized(size, str(i)) for i, size in enumerate(sizes)]
    stream = b"".join(frame(data) for data, _ in sent)
    rng = random.Random(5)
    pos = 0
    while pos < len(stream):
        size = len(stream) if cut == "whole" else rng.choice([1, 2, 3, 9, 130, 5000, 70000])
        writer.write(stream[pos : pos + size])
        await writer.drain()
        pos += size
    for i, (_, cid) in enumerate(sent):
        msg = decode((await read_frame(reader))[1])
        assert (msg.action, msg.correlation_id) == (EventAction.SUBSCRIBE, cid), i
    assert the_connection(server)._inbound is not None  # the connection parsed them itself
    writer.close()


async def test_the_loop_reads_into_the_shared_buffer_except_on_uvloop(server: Server) -> None:
    """The standard loop's data_received path allocates 256 KiB per read (an mmap and munmap
    each time): there the connection reads into one shared buffer. uvloop slices its own
    buffer, which costs less than the two buffered callbacks: there it is a plain protocol."""
    reader, writer = await opened(server)
    writer.write(LOGIN + frame(subscribe("0")))
    assert await replies(reader, 3) == ACCEPTED + LOGGED_IN + acked("0")
    conn = the_connection(server)
    uvloop = type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    assert isinstance(conn, asyncio.BufferedProtocol) is not uvloop
    assert isinstance(conn, BufferedConnection) is not uvloop
    writer.close()
