"""Update throughput of ``recordgate start``: in memory vs SQLite, PostgreSQL and MariaDB.

Each writer connection creates its records (acked, so they are durable), then sends pre-encoded
UPDATE frames with exact versions as fast as the socket takes them, and ends with one acked
write; the clock stops when every writer's final ack arrives (a write ack waits for storage,
so the last flush is inside the measurement). Configurations run side by side, in a rotated
order per round; the median of the rounds and their spread are reported with the ratio to
in-memory (of the medians, and per round: against the same round's in-memory run).

    python benchmarks/update_throughput.py [--updates 40000] [--records 100] [--writers 2]
        [--rounds 3] [--interval 1.0] [--postgres URL | --no-postgres]
        [--mariadb URL | --no-mariadb]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from common import (
    MARIADB_URL,
    POSTGRES_URL,
    Backend,
    backends,
    median,
    recordgate,
    spread,
    workdir,
)

from gateway.protocol import Message, RecordAction, Topic, encode
from tests.wire import WireClient

R = RecordAction


async def writer(
    url: str, tag: str, records: int, updates: int, ready: asyncio.Event, start: asyncio.Event
) -> int:
    """One connection's share; sets ``ready`` once set up, sends on ``start``; returns how
    many error replies it got."""
    client = await WireClient.connect(url, login={})
    names = [f"bench/{tag}/{i}" for i in range(records)]
    for i, name in enumerate(names):
        await client.send(
            Message(
                Topic.RECORD,
                R.CREATEANDUPDATE,
                name=name,
                version=-1,
                data=json.dumps({"n": -1}),
                correlation_id=str(i),
                is_write_ack=True,
            )
        )
    for _ in names:
        ack = await client.recv(30)
        assert ack.action == R.WRITE_ACKNOWLEDGEMENT, ack
    versions = dict.fromkeys(names, 1)  # created at 0, the first write made it 1
    frames = []
    for i in range(updates):
        name = names[i % records]
        versions[name] += 1
        data = json.dumps({"n": i, "user": {"name": "bench", "age": i % 90}})
        frames.append(
            encode(Message(Topic.RECORD, R.UPDATE, name=name, version=versions[name], data=data))
        )
    final = encode(
        Message(
            Topic.RECORD,
            R.UPDATE,
            name=names[0],
            version=versions[names[0]] + 1,
            data=json.dumps({"n": "done"}),
            correlation_id="done",
            is_write_ack=True,
        )
    )
    ready.set()
    await start.wait()
    for frame in frames:
        await client.ws.send(frame)
    await client.ws.send(final)
    errors = 0
    while True:
        msg = await client.recv(120)
        if msg.action == R.WRITE_ACKNOWLEDGEMENT and msg.correlation_id == "done":
            break
        errors += 1
    await client.close()
    return errors


async def run_once(
    backend: Backend, args: argparse.Namespace, where: Path, round_: int
) -> tuple[float, float]:
    """(updates per second, server CPU microseconds per update)."""
    config = {
        "storage": backend.section(),
        "write_behind": {"interval": args.interval},
    }
    async with recordgate(config, where) as server:
        url = server.url
        start = asyncio.Event()
        ready = [asyncio.Event() for _ in range(args.writers)]
        per_writer = args.updates // args.writers
        records = args.records // args.writers
        tasks = [
            asyncio.create_task(writer(url, f"{round_}-{w}", records, per_writer, ready[w], start))
            for w in range(args.writers)
        ]
        for event in ready:  # every writer connected, created its records, encoded its frames
            await event.wait()
        await asyncio.sleep(0.2)  # let the creations' flushes settle
        began, cpu = time.perf_counter(), server.cpu_seconds()
        start.set()
        errors = sum(await asyncio.gather(*tasks))
        elapsed, cpu = time.perf_counter() - began, server.cpu_seconds() - cpu
    await backend.drop()
    if errors:
        print(f"  ! {backend.label}: {errors} error replies")
    total = per_writer * args.writers
    return total / elapsed, cpu / total * 1e6


async def main(args: argparse.Namespace) -> None:
    with workdir() as tmp:
        where = Path(tmp)
        configs = backends(
            where,
            None if args.no_postgres else args.postgres,
            None if args.no_mariadb else args.mariadb,
        )
        rates: dict[str, list[float]] = {b.label: [] for b in configs}
        cpus: dict[str, list[float]] = {b.label: [] for b in configs}
        for round_ in range(args.rounds):
            order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
            for backend in order:
                rate, cpu = await run_once(backend, args, where, round_)
                rates[backend.label].append(rate)
                cpus[backend.label].append(cpu)
                print(
                    f"  round {round_ + 1} {backend.label:<11} {rate:10.0f} updates/s "
                    f"{cpu:6.1f} us CPU/update"
                )
    print(
        f"\nupdates={args.updates} records={args.records} writers={args.writers} "
        f"interval={args.interval}s rounds={args.rounds}: median [lowest-highest]; ratios to "
        "memory of the medians, and per round (the same round's memory run)"
    )
    print(
        f"{'storage':<12}{'updates/s':>24}{'vs memory':>10}{'per round':>19}"
        f"{'CPU us/upd':>20}{'vs memory':>10}{'per round':>19}"
    )
    base, base_cpu = rates["memory"], cpus["memory"]
    for label in rates:
        got, used = rates[label], cpus[label]
        rate_ratios = [a / b for a, b in zip(got, base, strict=True)]
        cpu_ratios = [b / a for a, b in zip(used, base_cpu, strict=True)]
        print(
            f"{label:<12}{spread(got):>24}{median(got) / median(base):>9.2f}x"
            f"{spread(rate_ratios, 2):>19}{spread(used, 1):>20}"
            f"{median(base_cpu) / median(used):>9.2f}x{spread(cpu_ratios, 2):>19}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=40_000)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=1.0, help="write_behind.interval")
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--mariadb", default=MARIADB_URL)
    parser.add_argument("--no-mariadb", action="store_true")
    asyncio.run(main(parser.parse_args()))
