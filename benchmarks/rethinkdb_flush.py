"""Flush throughput of the write-behind store on RethinkDB vs a raw bulk insert through the driver.

N distinct records are queued in a ``CachedStore`` over the ``rethinkdb`` connector and
``flush()`` is timed (batches of ``--batch-size``, one query each, hard durability): as new
records (``recordgate``: version 1, which the connector first tries as a bulk insert), and as
updates of records stored before (``recordgate update``: version 2, the conditional
``for_each`` with a change entry for every document). Baselines write the same documents (same
fields, same work per row: JSON text of the data, the hashed id, the version key, one timestamp
per batch) in the same batches into a fresh table, unconditionally:

* ``insert``: ``table.insert(list_of_dicts, durability="hard")``, the driver's plain bulk insert;
* ``insert r.json``: ``table.insert(r.json(text), durability="hard")``, the same documents as one
  JSON text, as the connector sends them (the least work a driver call can do for these rows).

Without ``--url`` it runs against reqlite 2.3.0 (npm, in ``tests/standins/reqlite``; installed by
the test suite's first RethinkDB test), a stand-in that is **not** RethinkDB: its figures say
how the connector's work compares with a plain insert on the same server, not how fast
RethinkDB is. Runs are interleaved; medians with the spread (lowest-highest) over the rounds.

    python benchmarks/rethinkdb_flush.py [--records 10000] [--batch-size 500] [--rounds 5]
        [--url rethinkdb://host:28015/db]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from common import median, spread  # also puts the checkout on sys.path

from connectors._common import dump_json
from connectors.base import Put, collection_of
from connectors.rethinkdb import RethinkDBConnector
from connectors.rethinkdb.driver import reql
from connectors.rethinkdb.layout import document_fields, record_id, version_key
from gateway.config import WriteBehindConfig
from gateway.store import CachedStore, Record

Docs = list[tuple[str, dict[str, Any]]]
Run = Callable[[str, Docs, int], Awaitable[float]]


def documents(count: int) -> Docs:
    return [
        (f"user/{i}", {"name": f"user {i}", "age": i % 90, "tags": ["a", "b"], "score": i * 0.5})
        for i in range(count)
    ]


async def through_store(url: str, docs: Docs, batch: int, *, version: int = 1) -> float:
    table = f"flush_{uuid.uuid4().hex[:10]}"
    settings = WriteBehindConfig(interval=3600, batch_size=batch, max_pending=len(docs) + 1)
    connector = RethinkDBConnector(url, table=table, timeout=60)
    store = CachedStore(connector, write_behind=settings)
    await store.open()
    try:
        for start in range(0, len(docs) if version > 1 else 0, batch):  # stored before: untimed
            older = [Put(n, version - 1, d) for n, d in docs[start : start + batch]]
            assert all(r.ok for r in await connector.write(older))
        for name, data in docs:
            store.put(Record(name, version, data))
        started = time.perf_counter()
        await store.flush()
        elapsed = time.perf_counter() - started
        assert store.stats.flushed == len(docs) and store.stats.failed == 0
        await connector.drop()
    finally:
        await store.close()
    return elapsed


async def updates_through_store(url: str, docs: Docs, batch: int) -> float:
    return await through_store(url, docs, batch, version=2)


async def _raw(url: str, docs: Docs, batch: int, as_text: bool) -> float:
    table = f"raw_{uuid.uuid4().hex[:10]}"
    async with RethinkDBConnector(url, table=table) as connector:  # same table, same indexes
        r = reql()
        address = connector.address
        conn = await r.connect(host=address.host, port=address.port, db=address.database)
        target = connector.table
        try:
            started = time.perf_counter()
            for start in range(0, len(docs), batch):
                now = datetime.now(UTC)
                rows = docs[start : start + batch]
                if as_text:
                    stamp = dump_json(
                        {"$reql_type$": "TIME", "epoch_time": now.timestamp(), "timezone": "+00:00"}
                    )
                    text = ",".join(
                        f'{document_fields(n, 1, dump_json(d))[:-1]},"updated_at":{stamp}}}'
                        for n, d in rows
                    )
                    query = target.insert(r.json(f"[{text}]"), durability="hard")
                else:
                    query = target.insert(
                        [
                            {
                                "id": record_id(n),
                                "name": n,
                                "collection": collection_of(n),
                                "version": 1,
                                "version_key": version_key(1),
                                "data": d,
                                "data_json": dump_json(d),
                                "updated_at": now,
                            }
                            for n, d in rows
                        ],
                        durability="hard",
                    )
                result = await query.run(conn)
                assert result["inserted"] == len(rows), result
            elapsed = time.perf_counter() - started
        finally:
            await conn.close(noreply_wait=False)
        await connector.drop()
    return elapsed


async def raw_insert(url: str, docs: Docs, batch: int) -> float:
    return await _raw(url, docs, batch, as_text=False)


async def raw_insert_json(url: str, docs: Docs, batch: int) -> float:
    return await _raw(url, docs, batch, as_text=True)


async def compare(url: str, args: argparse.Namespace) -> None:
    docs = documents(args.records)
    runs: dict[str, Run] = {
        "insert": raw_insert,
        "insert r.json": raw_insert_json,
        "recordgate": through_store,
        "recordgate update": updates_through_store,
    }
    times: dict[str, list[float]] = {key: [] for key in runs}
    for round_ in range(args.rounds):
        order = list(runs)
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for key in order:
            times[key].append(await runs[key](url, docs, args.batch_size))
    base = [len(docs) / t for t in times["insert"]]
    print(f"median [lowest-highest] of {args.rounds} rounds; ratios to the driver's bulk insert")
    print(f"  {'':<16}{'rows/s':>24}{'ratio':>7}{'per round':>19}")
    for key, values in times.items():
        rates = [len(docs) / t for t in values]
        per_round = [a / b for a, b in zip(rates, base, strict=True)]
        line = f"  {key:<16}{spread(rates):>24}{median(rates) / median(base):>6.2f}x"
        print(line + f"{spread(per_round, 2):>19}")


async def main(args: argparse.Namespace) -> None:
    print(f"records={args.records} batch_size={args.batch_size} rounds={args.rounds}")
    if args.url:
        print(f"server: {args.url}")
        await compare(args.url, args)
        return
    from tests.standins.rethinkdb import STANDIN, start_reqlite, stop

    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for the reqlite stand-in (or pass --url)")
    process, port = start_reqlite(node)
    print(f"server: {STANDIN}, 127.0.0.1:{port}")
    try:
        await compare(f"rethinkdb://127.0.0.1:{port}/bench", args)
    finally:
        stop(process)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", default=None, help="a RethinkDB server instead of the stand-in")
    asyncio.run(main(parser.parse_args()))
