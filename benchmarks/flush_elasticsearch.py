"""Flush throughput of the write-behind store on Elasticsearch vs the client's raw ``_bulk``.

N distinct records are queued in a ``CachedStore`` over the ``elasticsearch`` connector and
``flush()`` is timed (batches of ``--batch-size``: per batch one realtime ``mget`` of the stored
versions and one ``_bulk`` of ``create`` items). The baselines write the same documents (the
connector's layout: name, collection, version, updated_at, data_json, searchable, data; the same
JSON text of the data, one timestamp per batch) in the same batches into a fresh index created by
the connector (same mapping), unconditionally, through the same client:

* ``bulk``: ``client.bulk(operations=[action, document, ...])``, the client serialising dicts;
* ``async_bulk``: ``elasticsearch.helpers.async_bulk`` with ``chunk_size`` = the batch size.

Without ``--url`` it runs against the Elasticsearch stand-in of the tests (osmem-server behind
the header proxy, ``tests/standins/elasticsearch.py``), which is **not** Elasticsearch: its
figures say how the connector's work compares with a plain bulk on the same server, not how fast
Elasticsearch is. Runs are interleaved; medians with the spread (lowest-highest) over the rounds.

    python benchmarks/flush_elasticsearch.py [--records 10000] [--batch-size 500] [--rounds 5]
        [--url http://host:9200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from common import median, spread  # also puts the checkout on sys.path

from connectors._common import dump_json
from connectors.base import collection_of
from connectors.elasticsearch import ElasticsearchConnector
from connectors.elasticsearch.layout import doc_id
from gateway.config import WriteBehindConfig
from gateway.store import CachedStore, Record

Docs = list[tuple[str, dict[str, Any]]]
Run = Callable[[str, Docs, int], Awaitable[tuple[float, float]]]
"""One run: (wall seconds, CPU seconds of this process, the client's side only)."""


def documents(count: int) -> Docs:
    return [
        (f"user/{i}", {"name": f"user {i}", "age": i % 90, "tags": ["a", "b"], "score": i * 0.5})
        for i in range(count)
    ]


async def through_store(url: str, docs: Docs, batch: int) -> tuple[float, float]:
    index = f"bench_{uuid.uuid4().hex[:10]}"
    settings = WriteBehindConfig(interval=3600, batch_size=batch, max_pending=len(docs) + 1)
    connector = ElasticsearchConnector(url, index=index, timeout=120)
    store = CachedStore(connector, write_behind=settings)
    await store.open()
    try:
        for name, data in docs:
            store.put(Record(name, 1, data))
        started, cpu = time.perf_counter(), time.process_time()
        await store.flush()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert store.stats.flushed == len(docs) and store.stats.failed == 0
        await connector.drop()
    finally:
        await store.close()
    return elapsed, cpu


def _source(name: str, data: dict[str, Any], now: str) -> dict[str, Any]:
    return {
        "name": name,
        "collection": collection_of(name),
        "version": 1,
        "updated_at": now,
        "data_json": dump_json(data),
        "searchable": True,
        "data": data,
    }


async def _raw(url: str, docs: Docs, batch: int, helper: bool) -> tuple[float, float]:
    from elasticsearch.helpers import async_bulk

    index = f"raw_{uuid.uuid4().hex[:10]}"
    async with ElasticsearchConnector(url, index=index, timeout=120) as connector:  # the mapping
        client = connector.settings.create()  # the connector's client settings
        try:
            started, cpu = time.perf_counter(), time.process_time()
            for start in range(0, len(docs), batch):
                now = datetime.now(UTC).isoformat(timespec="milliseconds")
                rows = docs[start : start + batch]
                if helper:
                    actions = (
                        {"_index": index, "_id": doc_id(n), "_source": _source(n, d, now)}
                        for n, d in rows
                    )
                    done, errors = await async_bulk(client, actions, chunk_size=batch)
                    assert done == len(rows) and not errors
                else:
                    operations: list[dict[str, Any]] = []
                    for name, data in rows:
                        operations.append({"index": {"_index": index, "_id": doc_id(name)}})
                        operations.append(_source(name, data, now))
                    response = await client.bulk(operations=operations)
                    assert not response["errors"]
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            await client.close()
        await connector.drop()
    return elapsed, cpu


async def raw_bulk(url: str, docs: Docs, batch: int) -> tuple[float, float]:
    return await _raw(url, docs, batch, helper=False)


async def raw_async_bulk(url: str, docs: Docs, batch: int) -> tuple[float, float]:
    return await _raw(url, docs, batch, helper=True)


async def compare(url: str, args: argparse.Namespace) -> None:
    docs = documents(args.records)
    runs: dict[str, Run] = {
        "bulk": raw_bulk,
        "async_bulk": raw_async_bulk,
        "recordgate": through_store,
    }
    times: dict[str, list[float]] = {key: [] for key in runs}
    cpus: dict[str, list[float]] = {key: [] for key in runs}
    for round_ in range(args.rounds):
        order = list(runs)
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for key in order:
            wall, cpu = await runs[key](url, docs, args.batch_size)
            times[key].append(wall)
            cpus[key].append(cpu)
    base = [len(docs) / t for t in times["bulk"]]
    print(f"median [lowest-highest] of {args.rounds} rounds; ratios to the client's _bulk;")
    print("client CPU: this process only, microseconds per record (the server's work excluded)")
    print(f"  {'':<12}{'records/s':>24}{'ratio':>7}{'per round':>19}{'client CPU us':>20}")
    for key, values in times.items():
        rates = [len(docs) / t for t in values]
        per_round = [a / b for a, b in zip(rates, base, strict=True)]
        cpu_us = [c / len(docs) * 1e6 for c in cpus[key]]
        line = f"  {key:<12}{spread(rates):>24}{median(rates) / median(base):>6.2f}x"
        print(line + f"{spread(per_round, 2):>19}{spread(cpu_us):>20}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", help="a genuine cluster (default: start the stand-in)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(compare(args.url, args))
        return
    from tests.standins.elasticsearch import ElasticsearchStandIn, standin_binary

    binary = standin_binary()
    if binary is None:
        raise SystemExit("osmem-server (the stand-in) is not installed: pip install -e '.[test]'")
    standin = ElasticsearchStandIn(binary).start()
    try:
        print(f"Elasticsearch stand-in (osmem-server behind the header proxy) at {standin.url}")
        asyncio.run(compare(standin.url, args))
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
