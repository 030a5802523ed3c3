"""The connection's own frame parser at its edges, against raw TCP peers: frames exactly at
websockets' max_size and one byte over it in each length encoding, fragmented messages at the
message limit, RSV bits, text frames, every cut of a frame across two reads, and a close frame
behind messages that wait for an earlier one."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.frames import Frame, Opcode

from gateway.protocol import EventAction, Message, ParserAction, Topic, decode, encode
from gateway.server import Server
from tests.conftest import ServerFactory
from tests.gateway.test_framing import (
    ACCEPTED,
    LOGGED_IN,
    LOGIN,
    acked,
    frame,
    opened,
    read_frame,
    replies,
    sized,
    subscribe,
)
from tests.gateway.test_server import the_connection, until

TOO_BIG = f"{Topic.PARSER}/{ParserAction.MAXIMUM_MESSAGE_SIZE_EXCEEDED}/None"


async def logged_in(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await opened(server)
    writer.write(LOGIN)
    assert await replies(reader, 2) == ACCEPTED + LOGGED_IN
    return reader, writer


# max_message_size 62, 63 and 32768: websockets' max_size (twice it) is 124 (a 7-bit length),
# 126 (the first 16-bit length) and 65536 (the first 64-bit length).
@pytest.mark.parametrize("limit", [62, 63, 32768])
@pytest.mark.parametrize("cut", ["whole", "header"])
async def test_a_frame_at_max_size_is_read_and_one_byte_more_closes_1009(
    make_server: ServerFactory, limit: int, cut: str
) -> None:
    server = await make_server({"server": {"max_message_size": limit}})
    reader, writer = await logged_in(server)
    max_size = 2 * limit
    for size in (max_size, max_size - 1):  # read: answered, the connection kept
        data = frame(b"x" * size)
        if cut == "header":  # the header alone first, then the payload
            writer.write(data[: len(data) - size])
            await writer.drain()
            await asyncio.sleep(0.02)
            data = data[len(data) - size :]
        writer.write(data + frame(subscribe(str(size))))
        assert await replies(reader, 2) == [TOO_BIG, *acked(str(size))]
    assert the_connection(server)._inbound is not None  # the connection parsed them itself
    tripped = server.trips["server.max_message_size"]  # (the answered ones count too)
    over = frame(b"x" * (max_size + 1))
    if cut == "header":
        writer.write(over[:4])
        await writer.drain()
        await asyncio.sleep(0.02)
        over = over[4:]
    writer.write(over + frame(subscribe("after")))
    assert await replies(reader, 1) == ["close:1009"]
    writer.close()
    await until(lambda: server.trips["server.max_message_size"] == tripped + 1)


@pytest.mark.parametrize("extra", [0, 1])
async def test_a_fragmented_message_at_max_size_is_read_and_one_byte_more_closes_1009(
    make_server: ServerFactory, extra: int
) -> None:
    """The limit is the message's, not each fragment's: three fragments under it whose sum
    is max_size are one message; one byte more closes with 1009. A ping between them is
    answered at once."""
    server = await make_server({"server": {"max_message_size": 100}})
    reader, writer = await logged_in(server)
    body = b"x" * (200 + extra)
    writer.write(
        frame(body[:80], fin=False)
        + frame(b"p", Opcode.PING)
        + frame(body[80:160], Opcode.CONT, fin=False)
        + frame(body[160:], Opcode.CONT)
        + frame(subscribe("0"))
    )
    expected = ["pong:p", TOO_BIG, *acked("0")] if not extra else ["pong:p", "close:1009"]
    assert await replies(reader, len(expected)) == expected
    writer.close()


@pytest.mark.parametrize("head1", [0xC2, 0xA2, 0x92, 0xC1, 0x83, 0x8B])
async def test_rsv_bits_or_a_reserved_opcode_close_1002_and_nothing_after_is_read(
    server: Server, head1: int
) -> None:
    """RSV1-3 (no extension is negotiated) or a reserved opcode, on an otherwise well-formed
    masked frame between two good ones: the first is read, then 1002, the last never."""
    reader, writer = await logged_in(server)
    bad = bytearray(frame(subscribe("bad")))
    bad[0] = head1
    writer.write(frame(subscribe("0")) + bytes(bad) + frame(subscribe("1")))
    assert await replies(reader, 2) == [*acked("0"), "close:1002"]
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


@pytest.mark.parametrize("payload", [b"\xff\xfe", None])
async def test_text_frames_close_1003_or_1007(server: Server, payload: bytes | None) -> None:
    """The protocol is binary; a text frame (even one carrying a valid binary message, which
    the reference would parse as binary) closes with 1003, a text frame that is not UTF-8
    with 1007, and what follows it is not read."""
    reader, writer = await logged_in(server)
    text = Frame(Opcode.TEXT, payload or b"hello").serialize(mask=True)
    writer.write(frame(subscribe("0")) + text + frame(subscribe("1")))
    assert await replies(reader, 2) == [*acked("0"), f"close:{1003 if payload is None else 1007}"]
    writer.close()


async def test_every_cut_of_each_kind_of_frame_across_two_reads(server: Server) -> None:
    """Frames of a 7-bit, a 16-bit and a 64-bit length, a ping, a fragment and its end, each
    written in two pieces cut at every byte of its header and the first bytes of its payload
    (TCP_NODELAY, a pause between): each message is handled once, in order."""
    reader, writer = await logged_in(server)
    conn = the_connection(server)

    def kinds(tag: str) -> list[tuple[bytes, list[str]]]:
        big = subscribe(f"f{tag}")
        medium, medium_id = sized(200, f"m{tag}")
        large, large_id = sized(66000, f"L{tag}")
        return [
            (frame(subscribe(f"s{tag}")), acked(f"s{tag}")),
            (frame(medium), acked(medium_id)),
            (frame(large), acked(large_id)),
            (frame(tag.encode(), Opcode.PING), [f"pong:{tag}"]),
            (frame(big[:3], fin=False) + frame(big[3:], Opcode.CONT), acked(f"f{tag}")),
        ]

    for kind in range(5):
        for cut in range(1, 24):
            data, expected = kinds(str(cut))[kind]
            writer.write(data[:cut])
            await writer.drain()
            await asyncio.sleep(0.005)
            writer.write(data[cut:])
            assert await replies(reader, len(expected)) == expected, (kind, cut)
    writer.write(frame(subscribe("last")))  # after a frame cut in websockets' hands
    assert await replies(reader, 1) == acked("last")
    assert conn._inbound is not None  # the connection took the parsing back
    writer.close()


async def test_messages_waiting_behind_the_login_when_a_close_frame_comes_are_handled(
    server: Server,
) -> None:
    """The login is answered through a task (an awaitable): the emits sent with it wait behind
    it. The close frame after them is echoed at once (so no reply can follow it), but the
    emits before it are still handled, in order (another subscriber gets them), and nothing
    after it is read."""
    other, other_writer = await logged_in(server)
    other_writer.write(frame(subscribe("e")))
    assert await replies(other, 1) == acked("e")
    reader, writer = await opened(server)
    emits = [
        encode(Message(Topic.EVENT, EventAction.EMIT, name="e", data=json.dumps(i)))
        for i in range(5)
    ]
    writer.write(
        LOGIN
        + b"".join(frame(emit) for emit in emits[:4])
        + frame(b"\x03\xe8", Opcode.CLOSE)
        + frame(emits[4])
    )
    got = [decode((await read_frame(other))[1]) for _ in range(4)]
    assert [(msg.action, msg.data) for msg in got] == [(EventAction.EMIT, str(i)) for i in range(4)]
    assert await replies(reader, 2) == [*ACCEPTED, "close:1000"]
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await until(lambda: len(server.connections) == 1)
    other_writer.write(frame(subscribe("done")))  # the fifth emit never came before this
    assert await replies(other, 1) == acked("done")
    other_writer.close()
