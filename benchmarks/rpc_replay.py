"""The RPC load replayed in one process: where recordgate's own CPU goes, without the loop.

A real ``Server`` (memory storage, no rate limit) gets two connections over fake transports:
a requester and a provider, logged in as clients are. Each round feeds the requester's
connection ``--batch`` REQUEST frames in one read, then the provider's connection the ACCEPT
and RESPONSE of each in one read, as rpc.py's clients do, and checks that every answer reached
the requester. Only the server's own callbacks (``data_received``) are timed, in process CPU
time, so the figure is steadier than ``rpc.py``'s on a shared machine; system calls, the
event loop and the other processes are not in it. ``--profile`` prints cProfile's top
functions of those callbacks.

The callbacks run inside ``operator.call``, which nothing else here calls, so Valgrind can
count their instructions alone, a figure no other process on the machine moves:

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \
        python benchmarks/rpc_replay.py --round-trips 3000 --batch 12

(the total Ir over the round trips). ``--batch 2`` is nearest the official JS client's reads
on the default loop (``rpc_reads.py``, 2026-11-30: on uvloop 2.75 REQUESTs per requester read
and 4.1 answers per provider read, 0.85 reads per round trip; here one read per round trip),
``--batch 4`` on the standard loop (4.6 and 8.0, 0.47 reads per round trip); ``--batch 12``,
used for the counts before that, has a sixth of a read per round trip. ``--batch 50`` is the
raw client's pattern (about 25 round trips per read).

    python benchmarks/rpc_replay.py [--round-trips 50000] [--batch 25] [--profile]

Run it against another tree with ``PYTHONPATH=DIR`` (e.g. a ``git archive`` of main).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import operator
import os
import pstats
import time
from collections.abc import Iterator
from typing import Any

from gateway.config import config_from_dict
from gateway.connection import Connection
from gateway.protocol import AuthAction, ConnectionAction, Message, RpcAction, Topic, encode
from gateway.protocol.codec import decode
from gateway.server import Server


def masked(frame: bytes) -> bytes:
    """``frame`` as a client's binary WebSocket frame (masked, with a zero key)."""
    size = len(frame)
    head = bytes((0x82, 0x80 | size)) if size < 126 else b"\x82\xfe" + size.to_bytes(2, "big")
    return head + b"\0\0\0\0" + frame


def unframed(data: bytes) -> Iterator[bytes]:
    """The messages in what the server wrote (unmasked binary frames)."""
    pos = 0
    while pos < len(data):
        size = data[pos + 1] & 0x7F
        pos += 2
        if size == 126:
            size = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        yield data[pos : pos + size]
        pos += size


class Transport(asyncio.Transport):
    """Keeps what the server writes; never blocks, never closes by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def messages(self) -> list[Message]:
        out, self.out = self.out, []
        return [decode(m) for data in out for m in unframed(data)]


async def client(server: Server) -> tuple[Connection, Transport]:
    """A logged-in connection of ``server`` over a fake transport."""
    conn = server._new_socket()
    transport = Transport()
    conn.connection_made(transport)
    key = base64.b64encode(os.urandom(16)).decode()
    conn.data_received(
        f"GET /deepstream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    for msg in (
        Message(Topic.CONNECTION, ConnectionAction.CHALLENGE, url="x"),
        Message(Topic.AUTH, AuthAction.REQUEST, data="{}"),
    ):
        conn.data_received(masked(encode(msg)))
        for _ in range(10):  # the login is a task
            await asyncio.sleep(0)
    transport.out.clear()
    assert conn.authenticated, "the fake client did not log in"
    return conn, transport


def request(number: int) -> Message:
    """The requester's REQUEST number ``number``, as rpc.py's clients send it."""
    return Message(
        Topic.RPC,
        RpcAction.REQUEST,
        name="bench/x",
        correlation_id=str(number),
        data=f'{{"i":{number}}}',
    )


async def main(args: argparse.Namespace) -> None:
    config = config_from_dict(
        {
            "storage": {"type": "memory"},
            "server": {"host": "127.0.0.1", "port": 0, "max_messages_per_second": 0},
        }
    )
    profiler = cProfile.Profile() if args.profile else None
    async with Server(config) as server:
        requester, to_requester = await client(server)
        provider, to_provider = await client(server)
        provide = Message(Topic.RPC, RpcAction.PROVIDE, names=["bench/x"], correlation_id="p")
        provider.data_received(masked(encode(provide)))
        to_provider.out.clear()
        spent, done, first = 0.0, 0, 10_000_000

        def timed(conn: Connection, data: bytes) -> float:
            if profiler is not None:
                profiler.enable()
            start = time.process_time()
            operator.call(conn.data_received, data)  # what callgrind counts (see above)
            spent = time.process_time() - start
            if profiler is not None:
                profiler.disable()
            return spent

        while done < args.round_trips:
            numbers = range(first + done, first + done + args.batch)
            requests = b"".join(masked(encode(request(i))) for i in numbers)
            spent += timed(requester, requests)
            forwarded = to_provider.messages()
            assert len(forwarded) == args.batch, forwarded[:3]
            answers = b"".join(
                masked(encode(Message(Topic.RPC, action, name=m.name, **fields)))
                for m in forwarded
                for action, fields in (
                    (RpcAction.ACCEPT, {"correlation_id": m.correlation_id}),
                    (RpcAction.RESPONSE, {"correlation_id": m.correlation_id, "data": m.data}),
                )
            )
            spent += timed(provider, answers)
            answered = to_requester.messages()
            assert len(answered) == 2 * args.batch, answered[:3]
            assert answered[-1].action == RpcAction.RESPONSE, answered[-1]
            done += args.batch
            await asyncio.sleep(0)  # let the loop run its timers
        requester.connection_lost(None)
        provider.connection_lost(None)
    print(
        f"{spent / done * 1e6:.2f} us of server CPU per round trip (callbacks only), "
        f"{done} round trips, {args.batch} per read"
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=25, help="round trips per read")
    parser.add_argument("--profile", action="store_true")
    asyncio.run(main(parser.parse_args()))
