"""Messages per read on a live recordgate server under the RPC load: what ``rpc_replay.py``'s
``--batch`` must match for its counts to reflect that load.

Runs a ``Server`` in this process (memory storage, no rate limit) on the chosen loop, the
client of ``rpc.py`` (``reference/rpc.js``, the official JS client, or ``rawrpc.js``) against
it, and counts per connection the reads (``data_received`` calls) and the messages each read
brought (``Server.received`` calls). The counting wrappers are Python on every read and
message, so the server here is a little slower than a plain one and its reads a little
larger: the figures are an upper bound on the messages per read.

    python benchmarks/rpc_reads.py [--loop uvloop|asyncio] [--client official|raw]
                                   [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
from typing import Any

from fanout import REFERENCE, ensure_reference
from rpc import CLIENTS

from gateway.config import config_from_dict
from gateway.connection import Connection
from gateway.server import Server

reads: collections.Counter[int] = collections.Counter()
messages: collections.Counter[int] = collections.Counter()
per_read: collections.Counter[tuple[int, int]] = collections.Counter()  # (conn, size): reads


def count() -> None:
    """Wrap ``Server.received`` and every connection class's ``data_received``."""
    received = Server.received

    def counted(self: Server, conn: Connection, frame: Any) -> Any:
        messages[conn.id] += 1
        return received(self, conn, frame)

    Server.received = counted  # type: ignore[method-assign]
    for cls in {Connection, *Connection.__subclasses__()}:
        if "data_received" in cls.__dict__:

            def data_received(self: Connection, data: Any, _read: Any = cls.data_received) -> None:
                before = messages[self.id]
                _read(self, data)
                reads[self.id] += 1
                per_read[self.id, messages[self.id] - before] += 1

            cls.data_received = data_received  # type: ignore[method-assign]


async def main(args: argparse.Namespace) -> None:
    config = config_from_dict(
        {
            "storage": {"type": "memory"},
            "server": {
                "host": "127.0.0.1",
                "port": 0,
                "max_messages_per_second": 0,
                "event_loop": args.loop,
            },
        }
    )
    count()
    async with Server(config) as server:
        client = await asyncio.create_subprocess_exec(
            ensure_reference(),
            CLIENTS[args.client],
            f"ws://127.0.0.1:{server.port}/deepstream",
            cwd=REFERENCE,
            env={**os.environ, "REQUESTS": str(args.requests), "IN_FLIGHT": "50"},
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await client.communicate()
    print(out.decode().strip().splitlines()[-1])
    busy = [conn for conn in reads if messages[conn] > args.requests / 2]
    total_reads = sum(reads[conn] for conn in busy)
    for conn in busy:
        common = sorted(
            ((size, n) for (c, size), n in per_read.items() if c == conn), key=lambda x: -x[1]
        )[:6]
        print(
            f"connection {conn}: {messages[conn]} messages in {reads[conn]} reads, "
            f"{messages[conn] / reads[conn]:.2f} per read; commonest (messages, reads): {common}"
        )
    print(f"{total_reads / args.requests:.2f} reads per round trip (both connections)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="official")
    parser.add_argument("--requests", type=int, default=20_000)
    parsed = parser.parse_args()
    if parsed.loop == "uvloop":
        import uvloop

        uvloop.run(main(parsed))
    else:
        asyncio.run(main(parsed))
