"""Flush throughput of the write-behind store over the ``mongodb`` connector vs PyMongo's own
``bulk_write`` of the same conditional replace-upserts.

N distinct records are queued in a ``CachedStore`` over ``MongoConnector`` and ``flush()`` is
timed (batches of ``--batch-size``, one unordered ``bulk_write`` each). The baseline sends the
same documents, in the same batches, into a collection of the same layout straight through
``AsyncMongoClient.bulk_write(ordered=False)``, with the same ``ReplaceOne({_id, version: {$lt:
v}}, doc, upsert=True)`` per record, the same write concern (``w: majority, j: true``) and the
same work per record (collection derived, version as ``Int64``, one timestamp per batch), but
none of the connector's checks (JSON validity, BSON faithfulness) and no store.

Without ``--url`` it starts the MongoDB **stand-in** NX-27017 (``nx-27017 --db memory``, from the
``test`` extra) on a free port: no genuine MongoDB can be installed where this was written. The
stand-in is much slower than MongoDB, so its server time dominates the wall-clock ratio; the
client's CPU per record (this process) shows the connector's own cost either way, and "both"
adds the stand-in's CPU (from ``/proc``, when this script started it). ``--url
mongodb://host/db`` measures a genuine server.

Runs are interleaved (each round runs both variants, fresh collections each time); the table
gives medians and, in brackets, the spread (lowest-highest) over the rounds.

    python benchmarks/flush_mongodb.py [--records 5000] [--batch-size 500] [--rounds 5]
        [--url mongodb://127.0.0.1:27017/bench]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import median, spread, workdir

from connectors.base import collection_of
from connectors.mongodb import MongoConnector
from gateway.config import WriteBehindConfig
from gateway.store import CachedStore, Record
from tests.standins.mongodb import MongoStandin  # common put the checkout on sys.path

Docs = list[tuple[str, dict[str, Any]]]


SERVER_PID: int | None = None
"""The stand-in's process, when this script started it: its CPU time is measured too."""


def server_cpu() -> float:
    """CPU seconds (user + system) the server process has used so far (0 if unknown)."""
    if SERVER_PID is None:
        return 0.0
    fields = Path(f"/proc/{SERVER_PID}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Clock:
    wall: float = 0.0
    cpu: float = 0.0
    """CPU seconds of this process (the client)."""
    server: float = 0.0
    """CPU seconds of the server process, if known."""

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        wall, cpu, server = time.perf_counter(), time.process_time(), server_cpu()
        yield
        self.wall, self.cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.server = server_cpu() - server


def documents(count: int) -> Docs:
    return [
        (f"user/{i}", {"name": f"user {i}", "age": i % 90, "tags": ["a", "b"], "score": i * 0.5})
        for i in range(count)
    ]


async def through_store(url: str, docs: Docs, batch: int) -> Clock:
    collection = f"flush_{uuid.uuid4().hex[:10]}"
    settings = WriteBehindConfig(interval=3600, batch_size=batch, max_pending=len(docs) + 1)
    store = CachedStore(
        MongoConnector(url, collection=collection, timeout=60), write_behind=settings
    )
    await store.open()
    try:
        for name, data in docs:
            store.put(Record(name, 1, data))
        clock = Clock()
        with clock.running():
            await store.flush()
        assert store.stats.flushed == len(docs) and store.stats.failed == 0
    finally:
        await store.close()
        await drop(url, collection)
    return clock


async def raw_bulk_write(url: str, docs: Docs, batch: int) -> Clock:
    from bson import Int64
    from pymongo import AsyncMongoClient, ReplaceOne, WriteConcern

    collection_name = f"raw_{uuid.uuid4().hex[:10]}"
    async with MongoConnector(url, collection=collection_name, timeout=60):
        pass  # the same layout and index
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, timeoutMS=60000)
    database = client.get_default_database("recordgate")
    collection = database.get_collection(
        collection_name, write_concern=WriteConcern(w="majority", j=True)
    )
    try:
        clock = Clock()
        with clock.running():
            for start in range(0, len(docs), batch):
                now = datetime.now(UTC)
                requests = [
                    ReplaceOne(
                        {"_id": name, "version": {"$lt": 1}},
                        {
                            "_id": name,
                            "collection": collection_of(name),
                            "version": Int64(1),
                            "data": data,
                            "updated_at": now,
                        },
                        upsert=True,
                    )
                    for name, data in docs[start : start + batch]
                ]
                result = await collection.bulk_write(requests, ordered=False)
                assert result.upserted_count == len(requests)
    finally:
        await client.close()
        await drop(url, collection_name)
    return clock


async def drop(url: str, collection: str) -> None:
    async with MongoConnector(url, collection=collection, timeout=60) as connector:
        await connector.drop()


Run = Callable[[str, Docs, int], Awaitable[Clock]]
VARIANTS: dict[str, Run] = {"pymongo bulk_write": raw_bulk_write, "recordgate flush": through_store}


async def measure(url: str, args: argparse.Namespace) -> None:
    docs = documents(args.records)
    rates: dict[str, list[float]] = {key: [] for key in VARIANTS}
    cpu: dict[str, list[float]] = {key: [] for key in VARIANTS}
    both: dict[str, list[float]] = {key: [] for key in VARIANTS}
    ratios: list[float] = []
    for _ in range(args.rounds):
        walls = {}
        for key, run in VARIANTS.items():
            clock = await run(url, docs, args.batch_size)
            walls[key] = clock.wall
            rates[key].append(len(docs) / clock.wall)
            cpu[key].append(clock.cpu / len(docs) * 1e6)
            both[key].append((clock.cpu + clock.server) / len(docs) * 1e6)
        ratios.append(walls["pymongo bulk_write"] / walls["recordgate flush"])
    base = "pymongo bulk_write"
    print(f"median [lowest-highest] of {args.rounds} rounds; ratios to {base}")
    print(
        f"  {'variant':<20}{'records/s':>22}{'ratio':>8}{'client CPU us/rec':>24}{'ratio':>7}"
        f"{'both CPU us/rec':>24}{'ratio':>7}"
    )
    for key in VARIANTS:
        print(
            f"  {key:<20}{spread(rates[key]):>22}{median(rates[key]) / median(rates[base]):>7.2f}x"
            f"{spread(cpu[key], 1):>24}{median(cpu[base]) / median(cpu[key]):>6.2f}x"
            f"{spread(both[key], 1):>24}{median(both[base]) / median(both[key]):>6.2f}x"
        )
    print(f"  median of per-round throughput ratios: {median(ratios):.2f}x")


async def main(args: argparse.Namespace) -> None:
    print(f"records={args.records} batch_size={args.batch_size} rounds={args.rounds}")
    if args.url:
        print(f"server: {args.url}")
        await measure(args.url, args)
        return
    with workdir() as tmp:
        standin = MongoStandin(Path(tmp)).start()
        global SERVER_PID
        SERVER_PID = standin.process.pid if standin.process else None
        try:
            print("server: NX-27017 MongoDB stand-in (in memory), not a genuine MongoDB")
            await measure(standin.url("bench"), args)
        finally:
            standin.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", default=None, help="a genuine MongoDB (default: the stand-in)")
    asyncio.run(main(parser.parse_args()))
