"""The paced many-records load on a live server and event loop, for instruction counts.

``records_replay.py`` times the server's own callbacks; this runs a real ``Server`` on a real
loop (``--loop asyncio`` or ``uvloop``) with real sockets, so what the loop does per read (the
poll, the read and write system calls' Python side, ``get_buffer`` and ``buffer_updated``,
the transport's bookkeeping) is counted too. A client process (not instrumented) holds
``--records`` records on a writer connection (SUBSCRIBECREATEANDREAD, as the official
client's ``getRecord``) and subscribes ``--conns`` connections to ``records / conns`` each,
then sends ``--updates`` PATCHes of random records, ``--rate`` a second, each its own write,
and waits until every one reached its subscriber. The paced phase runs inside
``operator.call``, which nothing else here calls, so callgrind counts it alone:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no \\
        --toggle-collect=_operator_call python benchmarks/records_live.py --loop uvloop

The total over ``--updates`` is the figure (instructions per update, idle wakeups included);
keep ``--rate`` low enough for the server under valgrind (about 50 times slower) to read each
update on its own, as the paced load does at full speed. Another tree: ``PYTHONPATH=DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import operator
import os
import selectors
import socket
import sys
import time

from records_replay import patches

from gateway.config import config_from_dict
from gateway.protocol import (
    AuthAction,
    ConnectionAction,
    EventAction,
    Message,
    RecordAction,
    Topic,
    encode,
)
from gateway.server import Server


def masked(frame: bytes) -> bytes:
    """``frame`` as a client's binary WebSocket frame (masked, with a random key)."""
    key = os.urandom(4)
    size = len(frame)
    if size < 126:
        head = bytes((0x82, 0x80 | size))
    elif size < 1 << 16:
        head = b"\x82\xfe" + size.to_bytes(2, "big")
    else:
        head = b"\x82\xff" + size.to_bytes(8, "big")
    body = bytes(b ^ key[i & 3] for i, b in enumerate(frame))
    return head + key + body


class Peer:
    """A blocking raw WebSocket client: sends masked frames, counts or reads server frames."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /deepstream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        self.buf = self.buf.split(b"\r\n\r\n", 1)[1]
        self.send(Message(Topic.CONNECTION, ConnectionAction.CHALLENGE, url="x"))
        self.send(Message(Topic.AUTH, AuthAction.REQUEST, data="{}"))
        self.until(Topic.AUTH, AuthAction.AUTH_SUCCESSFUL)

    def send(self, msg: Message) -> None:
        self.sock.sendall(masked(encode(msg)))

    def frames(self) -> list[bytes]:
        """The complete frames read so far (unmasked binary server frames)."""
        out = []
        while len(self.buf) >= 2:
            size, start = self.buf[1] & 0x7F, 2
            if size == 126:
                size, start = int.from_bytes(self.buf[2:4], "big"), 4
            elif size == 127:
                size, start = int.from_bytes(self.buf[2:10], "big"), 10
            if len(self.buf) < start + size:
                break
            out.append(self.buf[start : start + size])
            self.buf = self.buf[start + size :]
        return out

    def until(self, topic: int, action: int, cid: str | None = None) -> None:
        """Read until a message of ``topic``/``action`` (and ``cid``) arrives."""
        from gateway.protocol import decode

        while True:
            for frame in self.frames():
                msg = decode(frame)
                if (msg.topic, msg.action) == (topic, action) and cid in (None, msg.correlation_id):
                    return
            self.buf += self.sock.recv(1 << 20)

    def sync(self, tag: str) -> None:
        """Wait until everything sent before is handled (messages are handled in order)."""
        self.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=[tag], correlation_id=tag))
        self.until(Topic.EVENT, EventAction.SUBSCRIBE, tag)


def client(args: argparse.Namespace) -> None:
    names = [f"bench/live/{i}" for i in range(args.records)]
    per_conn = args.records // args.conns
    writer = Peer(args.port)
    for first in range(0, args.records, 500):
        writer.send(
            Message(
                Topic.RECORD,
                RecordAction.SUBSCRIBECREATEANDREAD,
                names=names[first : first + 500],
                correlation_id=str(first),
            )
        )
    writer.sync("w")
    subs = []
    for i in range(args.conns):
        sub = Peer(args.port)
        sub.send(
            Message(
                Topic.RECORD,
                RecordAction.SUBSCRIBE,
                names=names[i * per_conn : (i + 1) * per_conn],
                correlation_id="s",
            )
        )
        sub.sync("s")
        sub.sock.setblocking(False)
        subs.append(sub)
    writer.sock.setblocking(False)
    frames = [
        masked(encode(update)) for update in patches(names[: per_conn * args.conns], args.updates)
    ]
    selector = selectors.DefaultSelector()
    for sub in subs:
        selector.register(sub.sock, selectors.EVENT_READ, sub)
    print("ready", flush=True)
    sys.stdin.readline()
    delivered, sent, start = 0, 0, time.monotonic()
    while delivered < args.updates:
        now = time.monotonic()
        due = start + sent / args.rate
        if sent < args.updates and now >= due:
            writer.sock.send(frames[sent])
            sent += 1
            continue
        timeout = max(0.0, due - now) if sent < args.updates else 1.0
        for key, _ in selector.select(timeout):
            sub = key.data
            sub.buf += sub.sock.recv(1 << 20)
            delivered += len(sub.frames())
    try:
        stray = writer.sock.recv(1 << 20)
    except BlockingIOError:
        stray = b""
    print(f"done {delivered} {len(stray)}", flush=True)
    sys.stdin.readline()  # the sockets close after the measured phase


async def line(stream: asyncio.StreamReader) -> str:
    return (await stream.readline()).decode().strip()


async def setup(args: argparse.Namespace) -> tuple[Server, asyncio.subprocess.Process]:
    config = config_from_dict(
        {
            "storage": {"type": "memory"},
            "server": {"host": "127.0.0.1", "port": 0, "max_messages_per_second": 0},
        }
    )
    server = Server(config)
    await server.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        str(server.port),
        *sys.argv[1:],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert await line(proc.stdout) == "ready"
    return server, proc


async def paced(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"go\n")
    return await line(proc.stdout)


async def teardown(server: Server, proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"quit\n")
    await proc.wait()
    await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="updates a second")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--conns", type=int, default=50, help="subscriber connections")
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client is not None:
        args.port = args.client
        client(args)
        return
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server, proc = loop.run_until_complete(setup(args))
    spent = time.process_time()
    done = operator.call(loop.run_until_complete, paced(proc))  # what callgrind counts
    spent = time.process_time() - spent
    loop.run_until_complete(teardown(server, proc))
    print(f"{done}; {spent / args.updates * 1e6:.1f} us of server CPU per update ({args.loop})")


if __name__ == "__main__":
    main()
