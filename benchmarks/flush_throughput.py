"""Flush throughput of the write-behind store vs the database's own bulk upsert.

For each database, N distinct records are queued in a ``CachedStore`` over the ``sql`` connector
and ``flush()`` is timed (batches of ``--batch-size``, one transaction each). The baseline writes
the same rows, in the same batches, into a table of the same layout straight through the driver
the connector uses, with the same conditional upsert (``ON CONFLICT (name) DO UPDATE ... WHERE
version < excluded``) and the same work per row: serialise the data to the same JSON text
(the stdlib encoder, built once), derive the collection, one timestamp per batch.

* SQLite: aiosqlite ``executemany`` and ``commit`` per batch, on a connection with the
  connector's pragmas (WAL, ``synchronous=NORMAL``). For information, also the synchronous
  stdlib ``sqlite3`` doing the same (no thread hops: a floor no asyncio program reaches).
* PostgreSQL: asyncpg ``executemany`` in a transaction per batch.

Runs are interleaved (each round runs every variant once, fresh tables each time); the table
gives medians and, in brackets, the spread (lowest-highest) over the rounds.

    python benchmarks/flush_throughput.py [--records 20000] [--batch-size 500] [--rounds 5]
        [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import POSTGRES_URL, median, workdir

from connectors.base import collection_of
from connectors.sql import SQLConnector
from gateway.config import WriteBehindConfig
from gateway.store import CachedStore, Record

Docs = list[tuple[str, dict[str, Any]]]
Run = Callable[[str, Docs, int], Awaitable[float]]

UPSERT = (
    "INSERT INTO {table} AS cur (name, collection, version, data, updated_at) VALUES ({values}) "
    "ON CONFLICT (name) DO UPDATE SET version = excluded.version, data = excluded.data, "
    "updated_at = excluded.updated_at WHERE cur.version < excluded.version"
)
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
# The connector's JSON text (compact, UTF-8 kept), through the stdlib's public API at its fastest.
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def documents(count: int) -> Docs:
    return [
        (f"user/{i}", {"name": f"user {i}", "age": i % 90, "tags": ["a", "b"], "score": i * 0.5})
        for i in range(count)
    ]


def batches(docs: Docs, size: int, stamp: Callable[[], Any]) -> Any:
    """Each batch's rows, serialised when the batch is due (as the connector does)."""
    encode = ENCODER.encode
    for start in range(0, len(docs), size):
        now = stamp()
        yield [(n, collection_of(n), 1, encode(d), now) for n, d in docs[start : start + size]]


def sqlite_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def through_store(url: str, docs: Docs, batch: int) -> float:
    table = f"flush_{uuid.uuid4().hex[:10]}"
    settings = WriteBehindConfig(interval=3600, batch_size=batch, max_pending=len(docs) + 1)
    connector = SQLConnector(url, table=table)
    store = CachedStore(connector, write_behind=settings)
    await store.open()
    try:
        for name, data in docs:
            store.put(Record(name, 1, data))
        began = time.perf_counter()
        await store.flush()
        elapsed = time.perf_counter() - began
        assert store.stats.flushed == len(docs) and store.stats.failed == 0
    finally:
        await store.close()
        async with SQLConnector(url, table=table) as conn:
            await conn.drop()
    return len(docs) / elapsed


async def empty_table(url: str) -> str:
    """A fresh table with the connector's layout (the baseline writes into the same shape)."""
    table = f"raw_{uuid.uuid4().hex[:10]}"
    async with SQLConnector(url, table=table):
        pass
    return table


async def drop_table(url: str, table: str) -> None:
    async with SQLConnector(url, table=table) as conn:
        await conn.drop()


async def raw_aiosqlite(url: str, docs: Docs, batch: int) -> float:
    import aiosqlite

    table = await empty_table(url)
    statement = UPSERT.format(table=table, values="?, ?, ?, ?, ?")
    try:
        async with aiosqlite.connect(url.split("///", 1)[1]) as db:
            for pragma in SQLITE_PRAGMAS:
                await db.execute(pragma)
            began = time.perf_counter()
            for rows in batches(docs, batch, sqlite_stamp):
                await db.executemany(statement, rows)  # opens the batch's transaction
                await db.commit()
            elapsed = time.perf_counter() - began
    finally:
        await drop_table(url, table)
    return len(docs) / elapsed


async def raw_sqlite3(url: str, docs: Docs, batch: int) -> float:
    table = await empty_table(url)
    statement = UPSERT.format(table=table, values="?, ?, ?, ?, ?")
    db = sqlite3.connect(url.split("///", 1)[1])
    try:
        for pragma in SQLITE_PRAGMAS:
            db.execute(pragma)
        began = time.perf_counter()
        for rows in batches(docs, batch, sqlite_stamp):
            db.executemany(statement, rows)
            db.commit()
        elapsed = time.perf_counter() - began
    finally:
        db.close()
        await drop_table(url, table)
    return len(docs) / elapsed


async def raw_asyncpg(url: str, docs: Docs, batch: int) -> float:
    import asyncpg

    table = await empty_table(url)
    statement = UPSERT.format(table=table, values="$1, $2, $3, $4::jsonb, $5")
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        began = time.perf_counter()
        for rows in batches(docs, batch, lambda: datetime.now(UTC)):
            async with conn.transaction():
                await conn.executemany(statement, rows)
        elapsed = time.perf_counter() - began
    finally:
        await conn.close()
        await drop_table(url, table)
    return len(docs) / elapsed


def cell(values: list[float]) -> str:
    return f"{median(values):>8.0f} [{min(values):.0f}-{max(values):.0f}]"


async def compare(label: str, url: str, raws: dict[str, Run], args: argparse.Namespace) -> None:
    docs = documents(args.records)
    runs: dict[str, Run] = {"recordgate": through_store, **raws}
    rates: dict[str, list[float]] = {key: [] for key in runs}
    for round_ in range(args.rounds):
        order = list(runs)
        order = order[round_ % len(order) :] + order[: round_ % len(order)]  # rotate the order
        for key in order:
            rates[key].append(await runs[key](url, docs, args.batch_size))
    baseline = next(iter(raws))
    print(f"{label}  (rows/s, median [lowest-highest] of {args.rounds} rounds)")
    for key, values in rates.items():
        ratio = f"{median(values) / median(rates[baseline]):.2f}x of {baseline}"
        ratios = [a / b for a, b in zip(values, rates[baseline], strict=True)]
        spread = f" (per round {min(ratios):.2f}-{max(ratios):.2f})" if key != baseline else ""
        print(f"  {key:<12}{cell(values):>28}  {ratio}{spread}")


async def main(args: argparse.Namespace) -> None:
    print(f"records={args.records} batch_size={args.batch_size} rounds={args.rounds}")
    with workdir() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'flush.db'}"
        await compare("sqlite", url, {"aiosqlite": raw_aiosqlite, "sqlite3": raw_sqlite3}, args)
    if not args.no_postgres:
        await compare("postgresql", args.postgres, {"asyncpg": raw_asyncpg}, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    asyncio.run(main(parser.parse_args()))
