"""Flush throughput of the write-behind store over the Redis connector vs redis-py directly.

N distinct records are queued in a ``CachedStore`` over the ``redis`` connector and ``flush()``
is timed (batches of ``--batch-size``, one ``EVALSHA`` each). Two baselines write the same
records, in the same batches, into the same layout straight through redis-py, with the same
work per record (the JSON text through the stdlib encoder built once, the collection, the keys,
one timestamp per batch):

* ``redis-py script``: the connector's own ``write.lua`` through ``evalsha`` (conditional and
  atomic, as the connector is: the Redis analogue of the SQL benchmarks' baseline, the driver's
  ``executemany`` of the same conditional upsert).
* ``redis-py pipeline``: a non-transactional pipeline per batch of ``HSET`` (the five fields)
  and ``ZADD`` to the names index and to the collection's set, plus one ``ZADD`` of the batch's
  collections: the layout written blindly, with no version check and no atomicity.

The server is a ``redis-server`` of the benchmark's own on a free loopback port, AOF on with
``appendfsync everysec`` (the connector's default durability), unless ``--url`` names one
(with AOF on). Runs are interleaved, the order rotated each round; medians and, in brackets, the
spread (lowest-highest).

    python benchmarks/flush_redis.py [--records 20000] [--batch-size 500] [--rounds 5] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import median, spread
from flush_throughput import ENCODER, Clock, Docs, documents

from connectors.base import collection_of
from connectors.redis import RedisConnector
from connectors.redis.layout import Layout
from connectors.redis.script import SHA, SOURCE
from gateway.config import WriteBehindConfig
from gateway.store import CachedStore, Record


class Timing:
    """Wall-clock time, this process's CPU time and the Redis server's CPU time of a block."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = Clock()
        self.server_cpu = 0.0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        before = await _server_cpu(self.url)
        with self.client.running():
            yield
        self.server_cpu = await _server_cpu(self.url) - before


async def _server_cpu(url: str) -> float:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


Run = Callable[[str, Docs, int], Awaitable[Timing]]


def _prefix() -> str:
    return f"bench_{uuid.uuid4().hex[:10]}"


async def _drop(url: str, prefix: str) -> None:
    async with RedisConnector(url, prefix=prefix, timeout=60) as connector:
        await connector.drop()


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


async def through_store(url: str, docs: Docs, batch: int) -> Timing:
    prefix = _prefix()
    settings = WriteBehindConfig(interval=3600, batch_size=batch, max_pending=len(docs) + 1)
    store = CachedStore(RedisConnector(url, prefix=prefix, timeout=60), write_behind=settings)
    await store.open()
    try:
        for name, data in docs:
            store.put(Record(name, 1, data))
        clock = Timing(url)
        async with clock.running():
            await store.flush()
        assert store.stats.flushed == len(docs) and store.stats.failed == 0
    finally:
        await store.close()
        await _drop(url, prefix)
    return clock


async def raw_script(url: str, docs: Docs, batch: int) -> Timing:
    from redis.asyncio import Redis

    prefix = _prefix()
    layout = Layout(prefix)
    client = Redis.from_url(url)
    try:
        assert await client.script_load(SOURCE) == SHA
        clock = Timing(url)
        async with clock.running():
            for start in range(0, len(docs), batch):
                keys: list[bytes] = [layout.names, layout.collections]
                argv: list[Any] = [_stamp()]
                for name, data in docs[start : start + batch]:
                    group = collection_of(name)
                    keys += (layout.record(name), layout.collection(group), layout.fence(name))
                    argv += ("P", name, group, "1", ENCODER.encode(data), "")
                replies = await client.evalsha(SHA, len(keys), *keys, *argv)
                assert all(reply == 0 for reply in replies)
    finally:
        await client.aclose()
        await _drop(url, prefix)
    return clock


async def raw_pipeline(url: str, docs: Docs, batch: int) -> Timing:
    from redis.asyncio import Redis

    prefix = _prefix()
    layout = Layout(prefix)
    client = Redis.from_url(url)
    try:
        clock = Timing(url)
        async with clock.running():
            for start in range(0, len(docs), batch):
                now = _stamp()
                groups: set[str] = set()
                async with client.pipeline(transaction=False) as pipe:
                    for name, data in docs[start : start + batch]:
                        group = collection_of(name)
                        groups.add(group)
                        fields = {"name": name, "collection": group, "version": "1"}
                        fields |= {"data": ENCODER.encode(data), "updated_at": now}
                        pipe.hset(layout.record(name), mapping=fields)
                        pipe.zadd(layout.names, {name: 0})
                        pipe.zadd(layout.collection(group), {name: 0})
                    pipe.zadd(layout.collections, dict.fromkeys(groups, 0))
                    await pipe.execute()
    finally:
        await client.aclose()
        await _drop(url, prefix)
    return clock


@contextlib.contextmanager
def own_server() -> Iterator[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="recordgate-bench-redis-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            yield server.url
        finally:
            server.kill()


async def compare(url: str, args: argparse.Namespace) -> None:
    docs = documents(args.records)
    runs: dict[str, Run] = {
        "recordgate": through_store,
        "redis-py script": raw_script,
        "redis-py pipeline": raw_pipeline,
    }
    clocks: dict[str, list[Timing]] = {key: [] for key in runs}
    for round_ in range(args.rounds):
        order = list(runs)
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for key in order:
            clocks[key].append(await runs[key](url, docs, args.batch_size))
    rows = len(docs)
    rates = {key: [rows / t.client.wall for t in found] for key, found in clocks.items()}
    # CPU of both processes per row: steadier than wall-clock time on a shared machine.
    cpu = {
        key: [(t.client.cpu + t.server_cpu) * 1e6 / rows for t in found]
        for key, found in clocks.items()
    }
    print(f"redis: median [lowest-highest] of {args.rounds} rounds; ratio = recordgate / this")
    print(
        f"  {'':<19}{'rows/s':>24}{'ratio':>7}{'per round':>19}"
        f"{'CPU us/row (both)':>24}{'ratio':>7}"
    )
    for key in runs:
        per_round = [a / b for a, b in zip(rates["recordgate"], rates[key], strict=True)]
        line = f"  {key:<19}{spread(rates[key]):>24}"
        line += (
            f"{median(rates['recordgate']) / median(rates[key]):>6.2f}x{spread(per_round, 2):>19}"
        )
        line += f"{spread(cpu[key], 1):>24}{median(cpu[key]) / median(cpu['recordgate']):>6.2f}x"
        print(line)


async def main(args: argparse.Namespace) -> None:
    print(f"records={args.records} batch_size={args.batch_size} rounds={args.rounds}")
    if args.url:
        await compare(args.url, args)
        return
    with own_server() as url:
        await compare(url, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", default=None, help="a Redis with AOF on (default: start one)")
    asyncio.run(main(parser.parse_args()))
