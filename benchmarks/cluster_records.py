"""Records across cluster nodes: deliveries/s, CPU per delivery and update latency, 1-3 nodes.

Starts a private ``redis-server`` (free loopback port, no persistence) and, per configuration,
real ``recordgate start`` processes, all on one PostgreSQL table per configuration (records
are flushed write-behind to it): ``alone`` (no cluster section: a single server) and clusters
of 1, 2 and 3 nodes. ``--subs`` raw WebSocket subscribers (``tests/wire.py``) are spread
round-robin over the nodes, each subscribed to the ``--records`` records; one writer on node 0.
Phase 1: ``--updates`` whole-record UPDATEs with exact versions, round-robin over the records,
as fast as the socket takes them; the clock stops when every subscriber has every update
(deliveries/s), and the nodes' user+system CPU (``/proc``) per delivery, Redis's beside it.
Phase 2: ``--rate`` updates/s for ``--seconds``, each carrying its send time: latency p50/p99
for subscribers on node 0 (the writer's node) and on the other nodes (through Redis). Clients
run in this process on the same cores as the servers: compare the rows, not absolute figures.
Ends with one JSON line.

    python benchmarks/cluster_records.py [--rounds 3] [--subs 6] [--records 10]
        [--updates 10000] [--rate 300] [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import POSTGRES_URL, Running, median, recordgate, workdir

from gateway.protocol import Message, RecordAction, Topic, encode
from tests.redis_server import RedisServer
from tests.wire import WireClient, write

R = RecordAction


def configs(redis_url: str) -> dict[str, tuple[int, dict[str, Any] | None]]:
    return {
        "alone": (1, None),
        "cluster x1": (1, {"url": redis_url}),
        "cluster x2": (2, {"url": redis_url}),
        "cluster x3": (3, {"url": redis_url}),
    }


async def subscriber(url: str, names: list[str]) -> WireClient:
    client = await WireClient.connect(url, login={"username": f"s{uuid.uuid4().hex[:6]}"})
    for name in names:
        await client.send(Message(Topic.RECORD, R.SUBSCRIBECREATEANDREAD, names=[name]))
        await client.recv_until(Topic.RECORD, R.READ_RESPONSE, 10)
    return client


async def receive(client: WireClient, count: int, stamps: list[float] | None) -> None:
    """Wait for ``count`` updates; with ``stamps``, note each one's age (its data is a time)."""
    got = 0
    while got < count:
        msg = await client.recv(60)
        if msg.topic != Topic.RECORD or msg.action != R.UPDATE:
            raise AssertionError(f"unexpected {msg}")  # an error or refusal must not pass
        got += 1
        if stamps is not None and msg.data is not None:
            stamps.append(time.perf_counter() - float(json.loads(msg.data)["t"]))


async def measure(
    nodes: list[Running],
    redis: Running,
    subs: int,
    records: int,
    updates: int,
    rate: int,
    seconds: float,
) -> dict[str, float]:
    names = [f"bench/{uuid.uuid4().hex[:6]}/{i}" for i in range(records)]
    urls = [f"ws://{n.url.split('://', 1)[-1]}" for n in nodes]
    writer = await WireClient.connect(urls[0], login={"username": "writer"})
    for name in names:  # created (acked: durable) before anyone subscribes
        await writer.send(write(name, {"t": "0"}, ack="c"))
        await writer.recv_until(Topic.RECORD, R.WRITE_ACKNOWLEDGEMENT, 10)
    clients = [await subscriber(urls[i % len(urls)], names) for i in range(subs)]
    version = dict.fromkeys(names, 1)

    def frame(i: int, data: str) -> bytes:
        name = names[i % records]
        version[name] += 1
        msg = Message(Topic.RECORD, R.UPDATE, name=name, version=version[name], data=data)
        return encode(msg)

    frames = [frame(i, '{"t":"0"}') for i in range(updates)]
    cpu0 = sum(n.cpu_seconds() for n in nodes)
    redis0 = redis.cpu_seconds()
    start = time.perf_counter()
    waiting = [asyncio.create_task(receive(c, updates, None)) for c in clients]
    for data in frames:
        await writer.send_raw(data)
    await asyncio.gather(*waiting)
    took = time.perf_counter() - start
    cpu = sum(n.cpu_seconds() for n in nodes) - cpu0
    redis_cpu = redis.cpu_seconds() - redis0
    deliveries = updates * subs
    paced = int(rate * seconds)
    same: list[float] = []
    other: list[float] = []
    waiting = [
        asyncio.create_task(receive(c, paced, same if i % len(urls) == 0 else other))
        for i, c in enumerate(clients)
    ]
    for i in range(paced):
        await writer.send_raw(frame(i, json.dumps({"t": str(time.perf_counter())})))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*waiting)
    for client in [*clients, writer]:
        with contextlib.suppress(Exception):
            await client.close()
    result = {
        "deliveries_per_s": deliveries / took,
        "cpu_us_per_delivery": cpu / deliveries * 1e6,
        "redis_us_per_delivery": redis_cpu / deliveries * 1e6,
    }
    for label, values in (("same", same), ("other", other)):
        if values:
            quantiles = statistics.quantiles(values, n=100)
            result[f"{label}_p50_ms"] = quantiles[49] * 1000
            result[f"{label}_p99_ms"] = quantiles[98] * 1000
    return result


async def run_config(
    count: int,
    cluster: dict[str, Any] | None,
    directory: Path,
    redis: Running,
    args: argparse.Namespace,
) -> dict[str, float]:
    table = f"bench_{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {"storage": {"type": "sql", "url": args.postgres, "table": table}}
    if cluster is not None:
        config["cluster"] = {**cluster, "prefix": f"bench{uuid.uuid4().hex[:8]}"}
    try:
        async with contextlib.AsyncExitStack() as stack:
            nodes = [
                await stack.enter_async_context(recordgate(config, directory)) for _ in range(count)
            ]
            await asyncio.sleep(0.5)
            return await measure(
                nodes, redis, args.subs, args.records, args.updates, args.rate, args.seconds
            )
    finally:
        await drop_table(args.postgres, table)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subs", type=int, default=6)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--updates", type=int, default=10000)
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--only", help="comma-separated configurations (default: all four)")
    args = parser.parse_args()
    with workdir() as tmp:
        directory = Path(tmp)
        redis = RedisServer(directory / "redis", appendonly=False).start()
        assert redis.process is not None
        redis_process = Running(redis.url, redis.process.pid)
        results: dict[str, list[dict[str, float]]] = {}
        try:
            for round_ in range(args.rounds):
                chosen = args.only.split(",") if args.only else list(configs(redis.url))
                order = [(k, v) for k, v in configs(redis.url).items() if k in chosen]
                order = order[round_ % len(order) :] + order[: round_ % len(order)]
                for label, (count, cluster) in order:
                    result = await run_config(count, cluster, directory, redis_process, args)
                    results.setdefault(label, []).append(result)
                    print(label, {k: round(v, 2) for k, v in result.items()}, flush=True)
        finally:
            redis.kill()
    summary: dict[str, dict[str, float]] = {}
    first = results.get("alone") or next(iter(results.values()))
    base = median([r["deliveries_per_s"] for r in first])
    base_p50 = median([r["same_p50_ms"] for r in first])
    header = f"{'config':12} {'deliv/s':>9} {'vs alone':>8} {'CPU us/d':>8} {'redis':>6}"
    print(f"{header} {'same p50/p99 ms':>16} {'other p50/p99 ms':>17} {'other p50 vs alone':>18}")
    for label, runs in results.items():
        row = {key: median([r[key] for r in runs if key in r]) for key in runs[0]}
        summary[label] = row
        print(
            f"{label:12} {row['deliveries_per_s']:9.0f} {row['deliveries_per_s'] / base:7.2f}x "
            f"{row['cpu_us_per_delivery']:8.1f} {row['redis_us_per_delivery']:6.1f} "
            f"{_ms(row, 'same_p50_ms'):7.2f}/{_ms(row, 'same_p99_ms'):<7.2f} "
            f"{_ms(row, 'other_p50_ms'):8.2f}/{_ms(row, 'other_p99_ms'):<7.2f} "
            f"{_ms(row, 'other_p50_ms') / base_p50:17.2f}x"
        )
    print(json.dumps(summary))


def _ms(row: dict[str, float], key: str) -> float:
    return row.get(key, float("nan"))


async def drop_table(url: str, table: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await connection.execute(f'DROP TABLE IF EXISTS "{table}", "{table}_fences"')
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
