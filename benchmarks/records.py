"""Record loads beyond fan-out, side by side: recordgate vs the reference server, in one run.

- **wide**: 1 record, ``--wide-subs`` subscribers (500) spread over ``--procs`` client
  processes; the writer sets it ``--wide-updates`` times as fast as its client sends (burst),
  then ``--wide-rate`` times a second for ``--seconds`` (paced).
- **many**: ``--records`` records (5,000), each held by exactly one subscriber connection
  (``--conns`` connections, ``records / conns`` records each, over ``--procs`` processes); the
  writer updates random records, ``--many-updates`` as fast as it sends (burst), then
  ``--many-rate`` a second (2,000) for ``--seconds`` (paced).

The subscribers are raw WebSocket clients (``reference/rawsubs.js``: the ``ws`` package and
pre-built messages, counting updates without decoding them), light enough that the server is
what is measured; the writer is the official JS client (``reference/writer.js``), which holds
every record it writes. Per load and server (a fresh process each): deliveries/s in the burst,
server CPU per update and per delivery (``/proc``; burst: from the first send until every
subscriber has every update; paced: likewise), latency send-to-receive p50/p99 in the paced
phase (``process.hrtime``, one monotonic clock for all processes), lost deliveries. recordgate
runs with memory storage and ``server.max_messages_per_second: 0`` (the writer's burst passes
the default per-client rate limit, which the reference does not have). Order rotated per
round; medians; ratio = recordgate / reference.

    python benchmarks/records.py [--rounds 3] [--loads wide,many] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from common import Running, median, on_loops, recordgate, workdir
from fanout import (
    REFERENCE,
    Target,
    ensure_reference,
    limit_trips,
    reference_server,
    rotated,
    status_kb,
    stop,
)

WAIT = 120.0  # seconds for the last delivery of a phase (late, on a loaded machine, is not lost)


class Child:
    """A node process of the harness, its stdout read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, node: str, script: str, url: str, env: dict[str, str]) -> Child:
        process = await asyncio.create_subprocess_exec(
            node,
            script,
            url,
            cwd=REFERENCE,
            env={**os.environ, **env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=1 << 26,  # the latency report is one long line
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            await self.lines.put(raw.decode().strip())
        await self.lines.put("")  # EOF

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    async def expect(self, prefix: str, timeout: float = WAIT) -> str:
        """The next line starting with ``prefix`` (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                line = await self.lines.get()
                if not line and self.process.stdout is not None and self._reader.done():
                    raise RuntimeError(f"harness process exited (code {self.process.returncode})")
                if line.startswith(prefix):
                    return line

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await stop(self.process, grace=5)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


async def delivered(subs: list[Child], owed: list[int]) -> tuple[float, int]:
    """Wait until subscriber process i has had ``owed[i]`` deliveries in all: the monotonic time
    (ms) the last of them arrived, and how many are missing if some never came."""
    for child, count in zip(subs, owed, strict=True):
        child.send(f"wait {count}")
    try:
        reached = await asyncio.gather(*(c.expect("REACHED") for c in subs))
        return max(float(line.split()[2]) for line in reached), 0
    except TimeoutError:
        for child in subs:
            child.send("count")
        counts = [int((await c.expect("COUNT", 10)).split()[1]) for c in subs]
        return float("nan"), sum(owed) - sum(counts)


async def phase(writer: Child, command: str, timeout: float) -> tuple[int, float, list[int]]:
    """Run one writer phase: updates sent, when the first was sent (ms), updates per record."""
    writer.send(command)
    _, count, start, _ = (await writer.expect("SENT", timeout)).split()
    hits = json.loads((await writer.expect("HITS")).split(" ", 1)[1])
    return int(count), float(start), hits


async def run_load(
    node: str, server: Running, load: str, args: argparse.Namespace
) -> dict[str, float]:
    """One load against one server; the subscribers' processes, then the writer's."""
    prefix = f"bench/{uuid.uuid4().hex[:6]}/"
    wide = load == "wide"
    conns = args.wide_subs if wide else args.conns
    records = 1 if wide else args.records
    per_conn = 1 if wide else records // conns
    per_proc = [conns // args.procs + (i < conns % args.procs) for i in range(args.procs)]
    # the records each subscriber process holds, as a range of record indexes
    ranges, first = [], 0
    for n in per_proc:
        ranges.append(range(first * per_conn, (first + n) * per_conn))
        first += n
    children: list[Child] = []
    try:
        first = 0
        for n in per_proc:
            env = {"CONNS": str(n), "FIRST": str(first), "PREFIX": prefix}
            env |= {"SHARED": "1"} if wide else {"PER_CONN": str(per_conn)}
            children.append(await Child.start(node, "rawsubs.js", server.url, env))
            first += n
        subs = list(children)
        for child in subs:
            await child.expect("READY")
        writer = await Child.start(
            node, "writer.js", server.url, {"PREFIX": prefix, "RECORDS": str(records)}
        )
        children.append(writer)
        await writer.expect("READY")
        owed = [0] * len(subs)

        def add(hits: list[int]) -> list[int]:
            for i, (n, held) in enumerate(zip(per_proc, ranges, strict=True)):
                owed[i] += hits[0] * n if wide else sum(hits[j] for j in held)
            return owed

        burst = args.wide_updates if wide else args.many_updates
        cpu0 = server.cpu_seconds()
        burst, start, hits = await phase(writer, f"burst {burst}", WAIT)
        last, lost = await delivered(subs, add(hits))
        cpu1 = server.cpu_seconds()
        deliveries = burst * conns if wide else burst
        for child in subs:
            child.send("lat")
        rate = args.wide_rate if wide else args.many_rate
        cpu2 = server.cpu_seconds()
        paced, _, hits = await phase(
            writer, f"paced {rate} {args.seconds}", args.seconds * 3 + WAIT
        )
        _, lost_paced = await delivered(subs, add(hits))
        cpu3 = server.cpu_seconds()
        samples: list[float] = []
        for child in subs:
            child.send("report")
            samples += json.loads(await child.expect("{"))["lat"]
        samples.sort()
        writer.send("quit")
    finally:
        for child in children:
            await child.close()
    paced_deliveries = paced * conns if wide else paced
    return {
        "deliveries_per_s": deliveries / ((last - start) / 1000),
        "burst_cpu_us_upd": (cpu1 - cpu0) / burst * 1e6,
        "burst_cpu_us_dlv": (cpu1 - cpu0) / deliveries * 1e6,
        "cpu_us_upd": (cpu3 - cpu2) / paced * 1e6,
        "cpu_us_dlv": (cpu3 - cpu2) / paced_deliveries * 1e6,
        "p50_ms": percentile(samples, 0.5),
        "p99_ms": percentile(samples, 0.99),
        "lost": lost + lost_paced,
        "rss_mb": status_kb(server.pid, "VmHWM") / 1024,
        "trips": sum((await limit_trips(server.url)).values()),
    }


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    node = ensure_reference()
    config: dict[str, Any] = {
        "storage": {"type": "memory"},
        "server": {"max_messages_per_second": 0, "max_connections_per_ip": 100_000},
    }
    loads = args.loads.split(",")
    with workdir() as tmp:
        where = Path(tmp)
        targets = [
            Target("reference", lambda: reference_server(node)),
        ]
        for loop, on_loop in on_loops(config):
            targets.append(Target(f"recordgate-{loop}", partial(recordgate, on_loop, where)))
        if args.before:
            env = {"PYTHONPATH": args.before}
            targets.append(Target("recordgate-before", lambda: recordgate(config, where, env)))
        samples: dict[str, dict[str, list[dict[str, float]]]] = {
            load: {t.label: [] for t in targets} for load in loads
        }
        for round_ in range(args.rounds):
            for target in rotated(targets, round_):
                for load in loads:
                    async with target.start() as server:
                        sample = await run_load(node, server, load, args)
                    samples[load][target.label].append(sample)
                    extra = f"  LOST {sample['lost']:.0f}" if sample["lost"] else ""
                    extra += f"  LIMIT TRIPS {sample['trips']:.0f}" if sample["trips"] else ""
                    print(
                        f"  round {round_ + 1} {target.label:<18} {load:<5}"
                        f" {sample['deliveries_per_s']:>8.0f} dlv/s"
                        f"  burst CPU {sample['burst_cpu_us_upd']:7.2f} us/upd"
                        f" {sample['burst_cpu_us_dlv']:6.2f} us/dlv"
                        f"  paced CPU {sample['cpu_us_upd']:7.2f} us/upd"
                        f"  p50 {sample['p50_ms']:.2f} p99 {sample['p99_ms']:.2f} ms"
                        f"  RSS {sample['rss_mb']:.0f} MB{extra}",
                        flush=True,
                    )
    print(
        f"\nwide: 1 record, {args.wide_subs} subscribers, burst {args.wide_updates} updates, "
        f"paced {args.wide_rate}/s; many: {args.records} records, one subscriber each over "
        f"{args.conns} connections, burst {args.many_updates}, paced {args.many_rate}/s; "
        f"paced for {args.seconds} s; {args.procs} subscriber processes; rounds={args.rounds} "
        "(medians; ratio = target / reference: higher is better for dlv/s, lower for the rest)"
    )
    head = ("dlv/s", "burst us/upd", "us/dlv", "paced us/upd", "p50 ms", "p99 ms", "RSS MB")
    keys = ("deliveries_per_s", "burst_cpu_us_upd", "burst_cpu_us_dlv", "cpu_us_upd")
    keys += ("p50_ms", "p99_ms", "rss_mb")
    print(f"{'load':<6}{'server':<19}" + "".join(f"{h:>13}{'ratio':>7}" for h in head))
    summary: dict[str, Any] = {"params": vars(args), "results": {}, "ratios": {}}
    for load, per in samples.items():
        base = {k: median([s[k] for s in per["reference"]]) for k in keys}
        for label, found in per.items():
            row = {k: median([s[k] for s in found]) for k in keys}
            lost = sum(s["lost"] for s in found)
            cells = "".join(f"{row[k]:>13.2f}{row[k] / base[k]:>6.2f}x" for k in keys)
            print(f"{load:<6}{label:<19}{cells}" + (f"  (lost {lost:.0f})" if lost else ""))
            summary["results"].setdefault(load, {})[label] = row | {"lost": lost}
            summary["ratios"].setdefault(load, {})[label] = {
                k: round(row[k] / base[k], 3) for k in keys
            }
    print(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loads", default="wide,many", help="comma-separated: wide, many")
    parser.add_argument("--procs", type=int, default=4, help="subscriber processes")
    parser.add_argument("--seconds", type=float, default=4, help="paced phase length")
    parser.add_argument("--wide-subs", type=int, default=500)
    parser.add_argument("--wide-updates", type=int, default=2000)
    parser.add_argument("--wide-rate", type=int, default=40, help="paced updates/s, wide")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--conns", type=int, default=50, help="subscriber connections, many")
    parser.add_argument("--many-updates", type=int, default=20_000)
    parser.add_argument("--many-rate", type=int, default=2000, help="paced updates/s, many")
    parser.add_argument("--before", help="another tree to run recordgate from, as a target")
    parsed = parser.parse_args()
    if parsed.before:
        parsed.before = os.path.abspath(parsed.before)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(main(parsed))
    except KeyboardInterrupt:
        sys.exit(130)
    except asyncio.CancelledError:
        sys.exit(143)
