"""Database writes per update under coalescing, for a range of write rates and working sets.

A ``CachedStore`` over the ``sql`` connector (SQLite file, or PostgreSQL) receives updates at a
steady rate, spread evenly over ``records`` records, for ``--seconds``; then everything is
flushed. The store's counters give the row writes that reached the database; writes/update is
the saving coalescing buys (1.00 without it: every version is written).

    python benchmarks/coalescing.py [--seconds 3] [--interval 1.0] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path

from common import POSTGRES_URL, workdir

from connectors.sql import SQLConnector
from gateway.config import WriteBehindConfig
from gateway.store import CachedStore, Record

SCENARIOS = [  # (updates per second, records written to)
    (1_000, 10),
    (1_000, 1_000),
    (10_000, 100),
    (10_000, 10_000),
    (20_000, 1_000),
]
TICK = 0.01  # seconds between bursts of updates


async def run(url: str, rate: int, records: int, args: argparse.Namespace, coalesce: bool) -> str:
    table = f"coal_{uuid.uuid4().hex[:10]}"
    settings = WriteBehindConfig(
        interval=args.interval, coalesce=coalesce, max_pending=rate * int(args.seconds + 2)
    )
    store = CachedStore(SQLConnector(url, table=table), write_behind=settings)
    await store.open()
    versions = [0] * records
    sent = 0
    began = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - began) < args.seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                i = sent % records
                versions[i] += 1
                store.put(Record(f"r/{i}", versions[i], {"n": sent}))
                sent += 1
            await asyncio.sleep(TICK)
        await store.flush()
        stats = store.stats
    finally:
        await store.close()
        async with SQLConnector(url, table=table) as conn:
            await conn.drop()
    return (
        f"{rate:>8}{records:>9}{'on' if coalesce else 'off':>10}{sent:>10}{stats.flushed:>10}"
        f"{stats.flushed / sent:>14.3f}"
    )


async def main(args: argparse.Namespace) -> None:
    with workdir() as tmp:
        url = (
            f"sqlite+aiosqlite:///{Path(tmp) / 'coalesce.db'}"
            if args.database == "sqlite"
            else args.postgres
        )
        print(f"database={args.database} interval={args.interval}s seconds={args.seconds}")
        header = ("updates/s", "records", "coalesce", "updates", "db writes", "writes/update")
        print(
            f"{header[0]:>8}{header[1]:>9}{header[2]:>10}{header[3]:>10}{header[4]:>10}"
            f"{header[5]:>14}"
        )
        for rate, records in SCENARIOS:
            print(await run(url, rate, records, args, coalesce=True))
        print(await run(url, *SCENARIOS[2], args, coalesce=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=1.0, help="write_behind.interval")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres", default=POSTGRES_URL)
    asyncio.run(main(parser.parse_args()))
