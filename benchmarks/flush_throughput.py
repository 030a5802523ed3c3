"""Flush throughput of the write-behind store vs the database's own bulk upsert.

For each database, N distinct records are queued in a ``CachedStore`` over the ``sql`` connector
and ``flush()`` is timed (batches of ``--batch-size``, one transaction each). The baseline writes
the same rows, in the same batches, into a table of the same layout straight through the driver
the connector uses, with the same conditional upsert (``ON CONFLICT (name) DO UPDATE ... WHERE
version < excluded``) and the same work per row: serialise the data to the same JSON text
(the stdlib encoder, built once), derive the collection, one timestamp per batch.

* SQLite: aiosqlite ``executemany`` and ``commit`` per batch, on a connection with the
  connector's pragmas (WAL, ``synchronous=NORMAL``). For information, also the same with the
  JSON through recordgate's own encoder (``aiosqlite+rg-json``: the C encoder built once, about
  0.6 us a row cheaper than the stdlib's public API, which the connector uses), and the
  synchronous stdlib ``sqlite3`` (no thread hops: a floor no asyncio program reaches).
* PostgreSQL: asyncpg ``executemany`` in a transaction per batch.
* MariaDB: asyncmy ``executemany`` (which sends the rows as multi-row ``INSERT`` statements of up
  to about a megabyte, like the connector) and ``commit`` per batch, with the connector's
  statement shape (``ON DUPLICATE KEY UPDATE col = IF(VALUES(version) > version, ...)``), charset
  and isolation level (READ COMMITTED); the timestamp is formatted once per batch.

Runs are interleaved (each round runs every variant once, fresh tables each time); the table
gives medians and, in brackets, the spread (lowest-highest) over the rounds.

    python benchmarks/flush_throughput.py [--records 20000] [--batch-size 500] [--rounds 5]
        [--postgres URL | --no-postgres] [--mariadb URL | --no-mariadb]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import MARIADB_URL, POSTGRES_URL, median, spread, workdir

from connectors._common import dump_json
from connectors.base import collection_of
from connectors.sql import SQLConnector
from gateway.config import WriteBehindConfig
from gateway.store import CachedStore, Record

Docs = list[tuple[str, dict[str, Any]]]


@dataclass
class Clock:
    """Wall-clock and process CPU time (every thread: aiosqlite's worker too) of a block."""

    wall: float = 0.0
    cpu: float = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall, self.cpu = time.perf_counter() - wall, time.process_time() - cpu


Run = Callable[[str, Docs, int], Awaitable[Clock]]

UPSERT = (
    "INSERT INTO {table} AS cur (name, collection, version, data, updated_at) VALUES ({values}) "
    "ON CONFLICT (name) DO UPDATE SET version = excluded.version, data = excluded.data, "
    "updated_at = excluded.updated_at WHERE cur.version < excluded.version"
)
NEWER = "VALUES(version) > version"
MYSQL_UPSERT = (
    "INSERT INTO {table} (name, collection, version, data, updated_at) "
    "VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
    f"data = IF({NEWER}, VALUES(data), data), "
    f"updated_at = IF({NEWER}, VALUES(updated_at), updated_at), "
    f"version = IF({NEWER}, VALUES(version), version)"
)
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
# The connector's JSON text (compact, UTF-8 kept), through the stdlib's public API at its fastest.
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def documents(count: int) -> Docs:
    return [
        (f"user/{i}", {"name": f"user {i}", "age": i % 90, "tags": ["a", "b"], "score": i * 0.5})
        for i in range(count)
    ]


def batches(
    docs: Docs, size: int, stamp: Callable[[], Any], encode: Callable[[Any], str] = ENCODER.encode
) -> Iterator[list[tuple[Any, ...]]]:
    """Each batch's rows, serialised when the batch is due (as the connector does)."""
    for start in range(0, len(docs), size):
        now = stamp()
        yield [(n, collection_of(n), 1, encode(d), now) for n, d in docs[start : start + size]]


def text_stamp() -> str:
    """UTC to the microsecond, as SQLite's and MariaDB's columns take it."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def through_store(url: str, docs: Docs, batch: int) -> Clock:
    table = f"flush_{uuid.uuid4().hex[:10]}"
    settings = WriteBehindConfig(interval=3600, batch_size=batch, max_pending=len(docs) + 1)
    connector = SQLConnector(url, table=table)
    store = CachedStore(connector, write_behind=settings)
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
        async with SQLConnector(url, table=table) as conn:
            await conn.drop()
    return clock


async def empty_table(url: str) -> str:
    """A fresh table with the connector's layout (the baseline writes into the same shape)."""
    table = f"raw_{uuid.uuid4().hex[:10]}"
    async with SQLConnector(url, table=table):
        pass
    return table


async def drop_table(url: str, table: str) -> None:
    async with SQLConnector(url, table=table) as conn:
        await conn.drop()


async def raw_aiosqlite(
    url: str, docs: Docs, batch: int, encode: Callable[[Any], str] = ENCODER.encode
) -> Clock:
    import aiosqlite

    table = await empty_table(url)
    statement = UPSERT.format(table=table, values="?, ?, ?, ?, ?")
    try:
        async with aiosqlite.connect(url.split("///", 1)[1]) as db:
            for pragma in SQLITE_PRAGMAS:
                await db.execute(pragma)
            clock = Clock()
            with clock.running():
                for rows in batches(docs, batch, text_stamp, encode):
                    await db.executemany(statement, rows)  # opens the batch's transaction
                    await db.commit()
    finally:
        await drop_table(url, table)
    return clock


async def raw_sqlite3(url: str, docs: Docs, batch: int) -> Clock:
    table = await empty_table(url)
    statement = UPSERT.format(table=table, values="?, ?, ?, ?, ?")
    db = sqlite3.connect(url.split("///", 1)[1])
    try:
        for pragma in SQLITE_PRAGMAS:
            db.execute(pragma)
        clock = Clock()
        with clock.running():
            for rows in batches(docs, batch, text_stamp):
                db.executemany(statement, rows)
                db.commit()
    finally:
        db.close()
        await drop_table(url, table)
    return clock


async def raw_asyncpg(url: str, docs: Docs, batch: int) -> Clock:
    import asyncpg

    table = await empty_table(url)
    statement = UPSERT.format(table=table, values="$1, $2, $3, $4::jsonb, $5")
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        clock = Clock()
        with clock.running():
            for rows in batches(docs, batch, lambda: datetime.now(UTC)):
                async with conn.transaction():
                    await conn.executemany(statement, rows)
    finally:
        await conn.close()
        await drop_table(url, table)
    return clock


async def raw_asyncmy(url: str, docs: Docs, batch: int) -> Clock:
    import asyncmy
    from sqlalchemy.engine import make_url

    table = await empty_table(url)
    statement = MYSQL_UPSERT.format(table=table)
    parsed = make_url(url)
    conn = await asyncmy.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=parsed.database,
        charset="utf8mb4",
        init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    )
    try:
        clock = Clock()
        with clock.running():
            for rows in batches(docs, batch, text_stamp):
                async with conn.cursor() as cursor:
                    await cursor.executemany(statement, rows)  # opens the batch's transaction
                await conn.commit()
    finally:
        await conn.ensure_closed()
        await drop_table(url, table)
    return clock


async def compare(
    label: str, url: str, raws: dict[str, Run], args: argparse.Namespace, *, cpu: bool
) -> None:
    """Every variant once per round, the order rotated; then per variant: rows/s, the ratio to
    the first baseline (of the medians, and the median of the per-round ratios, which
    interference from other processes disturbs less) and, with ``cpu``, CPU time per row."""
    docs = documents(args.records)
    runs: dict[str, Run] = {"recordgate": through_store, **raws}
    clocks: dict[str, list[Clock]] = {key: [] for key in runs}
    for round_ in range(args.rounds):
        order = list(runs)
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for key in order:
            clocks[key].append(await runs[key](url, docs, args.batch_size))
    baseline = next(iter(raws))
    base_rates = [len(docs) / c.wall for c in clocks[baseline]]
    base_cpu = [c.cpu * 1e6 / len(docs) for c in clocks[baseline]]
    print(f"{label}: median [lowest-highest] of {args.rounds} rounds; ratios to {baseline}")
    header = f"  {'':<18}{'rows/s':>26}{'ratio':>7}{'per round':>19}"
    print(header + (f"{'CPU us/row':>22}{'ratio':>7}" if cpu else ""))
    for key, runs_ in clocks.items():
        rates = [len(docs) / c.wall for c in runs_]
        per_round = [a / b for a, b in zip(rates, base_rates, strict=True)]
        line = f"  {key:<18}{spread(rates):>26}{median(rates) / median(base_rates):>6.2f}x"
        line += f"{spread(per_round, 2):>19}"
        if cpu:
            used = [c.cpu * 1e6 / len(docs) for c in runs_]
            line += f"{spread(used, 2):>22}{median(base_cpu) / median(used):>6.2f}x"
        print(line)


async def main(args: argparse.Namespace) -> None:
    print(f"records={args.records} batch_size={args.batch_size} rounds={args.rounds}")
    with workdir() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'flush.db'}"
        raws: dict[str, Run] = {
            "aiosqlite": raw_aiosqlite,
            "aiosqlite+rg-json": functools.partial(raw_aiosqlite, encode=dump_json),
            "sqlite3": raw_sqlite3,
        }
        await compare("sqlite", url, raws, args, cpu=True)
    if not args.no_postgres:
        # No CPU column: the server's share of the work runs in another process.
        await compare("postgresql", args.postgres, {"asyncpg": raw_asyncpg}, args, cpu=False)
    if not args.no_mariadb:
        await compare("mariadb", args.mariadb, {"asyncmy": raw_asyncmy}, args, cpu=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--mariadb", default=MARIADB_URL)
    parser.add_argument("--no-mariadb", action="store_true")
    asyncio.run(main(parser.parse_args()))
