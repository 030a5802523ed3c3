"""The many-records paced load replayed in one process: one PATCH per read, caches hot or cold.

A real ``Server`` (memory storage, no rate limit) gets a writer connection holding
``--records`` records (SUBSCRIBECREATEANDREAD, as the official client's ``getRecord``) and
``--conns`` subscriber connections holding ``records / conns`` each, over fake transports, as
in ``records.py --loads many``. Each update is one read on the writer's connection: a PATCH of
path ``t`` of a random record, with the next version, as the writer's ``set('t', time)``. Only
``data_received`` is timed, in thread CPU time; per chunk of 250 updates, the lowest chunk and
the first quartile are printed besides the mean, as other processes on a shared machine slow
some chunks down.

``--cold MB`` touches every cache line of an ``MB``-sized buffer before each update (not
timed), which evicts the L1 and L2 caches as the other processes do between two updates of the
paced load, where the server sleeps: the same Python then costs 2-2.5 times as much here.
System calls, the event loop and the other processes are not in the figure; ``records.py`` is
the comparison with the reference.

    python benchmarks/records_replay.py [--updates 5000] [--cold 4]

For a count that does not move with the machine's load, run it under cachegrind with
``--feed 0`` and ``--feed N`` (``PYTHONHASHSEED=0``) and divide the difference of the two
``I refs`` by N: instructions per update. Another tree: ``PYTHONPATH=DIR``. The timed reads
run inside ``operator.call``, which nothing else here calls, so callgrind can count them alone
and say which C functions their instructions are in:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no \
        --toggle-collect=_operator_call python benchmarks/records_replay.py --feed 2000
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import random
import time

from rpc_replay import client, masked

from gateway.config import config_from_dict
from gateway.protocol import Message, RecordAction, Topic, encode
from gateway.server import Server

CHUNK = 250


def patches(names: list[str], updates: int) -> list[Message]:
    """The paced load's updates: one path of a random record each, versions counted from the
    records' creation (empty, at version 0); the same list for the same arguments."""
    versions = dict.fromkeys(names, 0)
    rng = random.Random(1)
    out = []
    for n in range(updates):
        name = names[rng.randrange(len(names))]
        versions[name] += 1
        out.append(
            Message(
                Topic.RECORD,
                RecordAction.PATCH,
                name=name,
                version=versions[name],
                path="t",
                data=f"{1234567.123456 + n:.6f}",
            )
        )
    return out


async def main(args: argparse.Namespace) -> None:
    config = config_from_dict(
        {
            "storage": {"type": "memory"},
            "server": {"host": "127.0.0.1", "port": 0, "max_messages_per_second": 0},
        }
    )
    names = [f"bench/replay/{i}" for i in range(args.records)]
    per_conn = args.records // args.conns
    async with Server(config) as server:
        writer, to_writer = await client(server)
        for first in range(0, args.records, 500):
            held = Message(
                Topic.RECORD,
                RecordAction.SUBSCRIBECREATEANDREAD,
                names=names[first : first + 500],
                correlation_id=str(first),
            )
            writer.data_received(masked(encode(held)))
            for _ in range(20):  # the creates are tasks
                await asyncio.sleep(0)
        subscribers = []
        for i in range(args.conns):
            conn, transport = await client(server)
            subscribe = Message(
                Topic.RECORD,
                RecordAction.SUBSCRIBE,
                names=names[i * per_conn : (i + 1) * per_conn],
                correlation_id="s",
            )
            conn.data_received(masked(encode(subscribe)))
            subscribers.append((conn, transport))
        await asyncio.sleep(0)
        to_writer.out.clear()
        for _, transport in subscribers:
            transport.out.clear()
        frames = [
            masked(encode(update))
            for update in patches(names[: per_conn * args.conns], args.updates)
        ]
        junk = bytearray(args.cold << 20)
        lines = bytes(len(junk) // 64)
        feed = frames if args.feed < 0 else frames[: args.feed]
        spent, chunk, chunks, delivered = 0, 0, [], 0
        for k, frame in enumerate(feed, 1):
            if junk:
                junk[::64] = lines  # one write per cache line
            start = time.thread_time_ns()
            operator.call(writer.data_received, frame)  # what callgrind counts (below)
            took = time.thread_time_ns() - start
            spent += took
            chunk += took
            if k % CHUNK == 0:
                chunks.append(chunk / CHUNK)
                chunk = 0
                for _, transport in subscribers:
                    delivered += len(transport.out)
                    transport.out.clear()
                await asyncio.sleep(0)  # let the loop run its timers
        for _, transport in subscribers:
            delivered += len(transport.out)
        assert not to_writer.out, to_writer.messages()[:3]  # no error, no echo of its own
        assert delivered == len(feed), (delivered, len(feed))  # one write per update
        writer.connection_lost(None)
        for conn, _ in subscribers:
            conn.connection_lost(None)
    if feed:
        chunks.sort()
        low, quartile = (chunks[0], chunks[len(chunks) // 4]) if chunks else (0.0, 0.0)
        print(
            f"{spent / len(feed) / 1e3:.2f} us of server CPU per update (data_received), "
            f"lowest chunk {low / 1e3:.2f}, first quartile {quartile / 1e3:.2f}; "
            f"{len(feed)} updates, caches {f'evicted ({args.cold} MB)' if junk else 'hot'}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--conns", type=int, default=50, help="subscriber connections")
    parser.add_argument("--cold", type=int, default=0, help="MB touched before each update")
    parser.add_argument("--feed", type=int, default=-1, help="updates fed (default: all)")
    asyncio.run(main(parser.parse_args()))
