"""Flush throughput of the write-behind store vs the database's own bulk upsert.

For each database, N distinct records are queued in a ``CachedStore`` over the ``sql`` connector
and ``flush()`` is timed (batches of ``--batch-size``, one transaction each). The baseline writes
the same rows, in the same batches, into a table of the same layout straight through the driver:
``sqlite3.executemany`` (with the connector's pragmas) and asyncpg's ``executemany``, both with
the same conditional upsert (``ON CONFLICT (name) DO UPDATE ... WHERE version < excluded``).
Runs alternate, fresh tables each time; medians are reported.

    python benchmarks/flush_throughput.py [--records 20000] [--batch-size 500] [--rounds 3]
        [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import POSTGRES_URL, median, workdir

from connectors.base import collection_of
from connectors.sql import SQLConnector
from gateway.config import WriteBehindConfig
from gateway.store import CachedStore, Record

UPSERT = (
    "INSERT INTO {table} (name, collection, version, data, updated_at) VALUES ({values}) "
    "ON CONFLICT (name) DO UPDATE SET version = excluded.version, data = excluded.data, "
    "updated_at = excluded.updated_at WHERE {table}.version < excluded.version"
)


def documents(count: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"user/{i}", {"name": f"user {i}", "age": i % 90, "tags": ["a", "b"], "score": i * 0.5})
        for i in range(count)
    ]


async def through_store(url: str, docs: list[tuple[str, dict[str, Any]]], batch: int) -> float:
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


def rows(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    return [(n, collection_of(n), 1, json.dumps(d), now) for n, d in docs]


async def raw_sqlite(url: str, docs: list[tuple[str, dict[str, Any]]], batch: int) -> float:
    table = await empty_table(url)
    path = url.split("///", 1)[1]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    statement = UPSERT.format(table=table, values="?, ?, ?, ?, ?")
    began = time.perf_counter()
    prepared = rows(docs)  # serialising is part of the work in both runs
    for start in range(0, len(prepared), batch):
        conn.execute("BEGIN")
        conn.executemany(statement, prepared[start : start + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.execute(f"DROP TABLE {table}")
    conn.close()
    return len(docs) / elapsed


async def raw_postgres(url: str, docs: list[tuple[str, dict[str, Any]]], batch: int) -> float:
    import asyncpg

    table = await empty_table(url)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    statement = UPSERT.format(table=table, values="$1, $2, $3, $4::jsonb, $5")
    try:
        began = time.perf_counter()
        prepared = rows(docs)
        for start in range(0, len(prepared), batch):
            async with conn.transaction():
                await conn.executemany(statement, prepared[start : start + batch])
        elapsed = time.perf_counter() - began
        await conn.execute(f"DROP TABLE {table}")
    finally:
        await conn.close()
    return len(docs) / elapsed


async def main(args: argparse.Namespace) -> None:
    docs = documents(args.records)
    with workdir() as tmp:
        targets = [("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'flush.db'}", raw_sqlite)]
        if not args.no_postgres:
            targets.append(("postgresql", args.postgres, raw_postgres))
        print(f"records={args.records} batch_size={args.batch_size} rounds={args.rounds}")
        print(f"{'database':<12}{'recordgate rows/s':>19}{'driver rows/s':>15}{'ratio':>8}")
        for label, url, raw in targets:
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(await through_store(url, docs, args.batch_size))
                theirs.append(await raw(url, docs, args.batch_size))
            a, b = median(ours), median(theirs)
            print(f"{label:<12}{a:>19.0f}{b:>15.0f}{a / b:>7.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    asyncio.run(main(parser.parse_args()))
