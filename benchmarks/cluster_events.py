"""Events across cluster nodes: deliveries/s, CPU per delivery and latency, 1-3 nodes.

Starts a private ``redis-server`` (free loopback port, no persistence) and, per configuration,
real ``recordgate start`` processes: ``alone`` (no cluster section: today's single server) and
clusters of 1, 2 and 3 nodes (PostgreSQL as the shared storage the config requires; events do
not touch it). ``--subs`` raw WebSocket subscribers (``tests/wire.py``) are spread round-robin
over the nodes; one emitter on node 0. Phase 1: ``--emits`` emits as fast as the socket takes
them; the clock stops when every subscriber has all of them (deliveries/s), and the nodes'
user+system CPU (``/proc``) per delivery. Phase 2: ``--rate`` emits/s for ``--seconds``, each
carrying its send time: latency p50/p99 for subscribers on node 0 (same node as the emitter) and
on other nodes (through Redis). Clients run in this process: on a small machine they share its
cores with the servers, so compare the rows, not the absolute figures. Ends with one JSON line.

    python benchmarks/cluster_events.py [--rounds 3] [--subs 6] [--emits 5000] [--rate 500]
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

from common import Running, median, recordgate, workdir

from gateway.protocol import EventAction, Message, Topic, encode
from tests.redis_server import RedisServer
from tests.wire import WireClient

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def configs(redis_url: str, table: str) -> dict[str, tuple[int, dict[str, Any] | None]]:
    cluster = {"url": redis_url, "prefix": f"bench{uuid.uuid4().hex[:8]}"}
    storage = {"type": "sql", "url": POSTGRES, "table": table}
    return {
        "alone": (1, None),
        "cluster x1": (1, {"cluster": cluster, "storage": storage}),
        "cluster x2": (2, {"cluster": cluster, "storage": storage}),
        "cluster x3": (3, {"cluster": cluster, "storage": storage}),
    }


async def subscriber(url: str, name: str) -> WireClient:
    client = await WireClient.connect(url, login={"username": f"s{uuid.uuid4().hex[:6]}"})
    await client.send(Message(Topic.EVENT, EventAction.SUBSCRIBE, names=[name], correlation_id="1"))
    await client.recv(5)  # the ack
    return client


async def receive(client: WireClient, count: int, stamps: list[float] | None) -> None:
    for _ in range(count):
        msg = await client.recv(30)
        if stamps is not None and msg.data is not None:
            stamps.append(time.perf_counter() - float(json.loads(msg.data)))


async def measure(
    nodes: list[Running], subs: int, emits: int, rate: int, seconds: float
) -> dict[str, float]:
    name = f"bench/{uuid.uuid4().hex[:6]}"
    urls = [f"ws://{n.url.split('://', 1)[-1]}" for n in nodes]
    clients = [await subscriber(urls[i % len(urls)], name) for i in range(subs)]
    emitter = await WireClient.connect(urls[0], login={"username": "emitter"})
    await asyncio.sleep(0.3)
    frame = encode(Message(Topic.EVENT, EventAction.EMIT, name=name, data='"x"'))
    cpu0 = sum(n.cpu_seconds() for n in nodes)
    start = time.perf_counter()
    waiting = [asyncio.create_task(receive(c, emits, None)) for c in clients]
    for _ in range(emits):
        await emitter.send_raw(frame)
    await asyncio.gather(*waiting)
    took = time.perf_counter() - start
    cpu = sum(n.cpu_seconds() for n in nodes) - cpu0
    deliveries = emits * subs
    paced = int(rate * seconds)
    same: list[float] = []
    other: list[float] = []
    waiting = [
        asyncio.create_task(receive(c, paced, same if i % len(urls) == 0 else other))
        for i, c in enumerate(clients)
    ]
    for _ in range(paced):
        msg = Message(
            Topic.EVENT, EventAction.EMIT, name=name, data=json.dumps(str(time.perf_counter()))
        )
        await emitter.send(msg)
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*waiting)
    for client in [*clients, emitter]:
        with contextlib.suppress(Exception):
            await client.close()
    result = {"deliveries_per_s": deliveries / took, "cpu_us_per_delivery": cpu / deliveries * 1e6}
    for label, values in (("same", same), ("other", other)):
        if values:
            quantiles = statistics.quantiles(values, n=100)
            result[f"{label}_p50_ms"] = quantiles[49] * 1000
            result[f"{label}_p99_ms"] = quantiles[98] * 1000
    return result


async def run_config(
    count: int, config: dict[str, Any] | None, directory: Path, args: argparse.Namespace
) -> dict[str, float]:
    cfg = config or {"storage": {"type": "memory"}}
    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(recordgate(cfg, directory)) for _ in range(count)]
        await asyncio.sleep(0.5)
        return await measure(nodes, args.subs, args.emits, args.rate, args.seconds)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subs", type=int, default=6)
    parser.add_argument("--emits", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with workdir() as tmp:
        directory = Path(tmp)
        redis = RedisServer(directory / "redis", appendonly=False).start()
        table = f"bench_{uuid.uuid4().hex[:8]}"
        results: dict[str, list[dict[str, float]]] = {}
        try:
            for round_ in range(args.rounds):
                order = list(configs(redis.url, table).items())
                order = order[round_ % len(order) :] + order[: round_ % len(order)]
                for label, (count, config) in order:
                    result = await run_config(count, config, directory, args)
                    results.setdefault(label, []).append(result)
                    print(label, {k: round(v, 2) for k, v in result.items()}, flush=True)
        finally:
            redis.kill()
            await drop_table(table)
    summary: dict[str, dict[str, float]] = {}
    base = median([r["deliveries_per_s"] for r in results["alone"]])
    header = f"{'config':12} {'deliv/s':>9} {'vs alone':>8} {'CPU us/d':>8}"
    print(f"{header} {'same p50/p99 ms':>16} {'other p50/p99 ms':>17}")
    for label, runs in results.items():
        row = {key: median([r[key] for r in runs if key in r]) for key in runs[0]}
        summary[label] = row
        print(
            f"{label:12} {row['deliveries_per_s']:9.0f} {row['deliveries_per_s'] / base:7.2f}x "
            f"{row['cpu_us_per_delivery']:8.1f} "
            f"{_ms(row, 'same_p50_ms'):7.2f}/{_ms(row, 'same_p99_ms'):<7.2f} "
            f"{_ms(row, 'other_p50_ms'):8.2f}/{_ms(row, 'other_p99_ms'):<7.2f}"
        )
    print(json.dumps(summary))


def _ms(row: dict[str, float], key: str) -> float:
    return row.get(key, float("nan"))


async def drop_table(table: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES.replace("+asyncpg", ""))
    try:
        await connection.execute(f'DROP TABLE IF EXISTS "{table}", "{table}_fences"')
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
