"""Realtime fan-out, side by side: recordgate vs the reference deepstream server, in one run.

The same load, driven by the official deepstream JS client (``reference/bench.js`` for records,
``reference/events.js`` for events), runs against a fresh server process per measurement, the
server order rotated each round to spread drift over both. Per measurement: deliveries/s (phase
1, as fast as the client sends), latency p50/p99 (phase 2, paced), the server's CPU time per
delivery in phase 1 (from ``/proc``: steadier than wall clock on a shared machine) and its peak
RSS. The scaling check repeats the record load while idle logged-in connections, each subscribed
to a record and an event of its own, are also connected: a fan-out path with no per-message cost
that grows with the number of connections keeps deliveries/s and CPU/delivery flat.

Installs the reference harness (``reference/package-lock.json``) with ``npm ci`` on first use.
Every server listens on 127.0.0.1 on a free port; every process started is stopped on exit
(also on Ctrl-C / SIGTERM). Ends with one JSON line; ratios are recordgate / reference.

    python benchmarks/fanout.py [--rounds 3] [--subs 20] [--records 10] [--updates 20000]
        [--rate 2000] [--seconds 3] [--idle 500] [--scale-rounds 3] [--sqlite]
        [--skip-events] [--skip-scaling] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import Running, median, on_loops, recordgate, workdir
from websockets.exceptions import ConnectionClosed

from gateway.protocol import ConnectionAction, EventAction, Message, RecordAction, Topic
from tests.wire import WireClient

REFERENCE = Path(__file__).resolve().parent / "reference"
LOCK = REFERENCE / "package-lock.json"
INSTALLED_LOCK = REFERENCE / "node_modules" / ".fanout-installed-lock.json"
BENCH_TIMEOUT = 300.0
PING_EVERY = 20.0  # servers drop a socket silent for 2 x 30 s heartbeats

Start = Callable[[], AbstractAsyncContextManager[Running]]


@dataclass(frozen=True)
class Target:
    label: str
    start: Start


@dataclass(frozen=True)
class Sample:
    """One load against one fresh server process."""

    deliveries_per_s: float
    cpu_us: float  # server CPU microseconds per delivery, throughput phase
    p50_ms: float
    p99_ms: float
    rss_mb: float  # server peak RSS (VmHWM) at the end of the run
    lost: int  # deliveries expected but never seen (throughput + latency phases)
    trips: dict[str, int]  # recordgate's /metrics limit trips at the end (reference: empty)


METRICS = ("deliveries_per_s", "cpu_us", "p50_ms", "p99_ms", "rss_mb")


def ensure_reference() -> str:
    """The node executable, with the reference harness's locked dependencies installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        sys.exit("fanout: node and npm are needed to run the reference server and the JS client")
    lock = LOCK.read_bytes()
    if not INSTALLED_LOCK.is_file() or INSTALLED_LOCK.read_bytes() != lock:
        print("installing the reference harness (npm ci) ...", flush=True)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=REFERENCE, check=True)
        INSTALLED_LOCK.write_bytes(lock)
    return node


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``: peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def stop(process: asyncio.subprocess.Process, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; no-op once it has exited."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def drain(stream: asyncio.StreamReader) -> None:
    """Read a child's output to the end so a full pipe never blocks it."""
    while await stream.readline():
        pass


@contextlib.asynccontextmanager
async def reference_server(node: str) -> AsyncIterator[Running]:
    """The reference server (``reference/start-server.js``) on 127.0.0.1 and a free port."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        node,
        "start-server.js",
        cwd=REFERENCE,
        env={**os.environ, "PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,  # out of reach of a terminal's Ctrl-C: stop() ends it
    )
    assert process.stdout is not None
    drainer: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):
            while (line := await process.stdout.readline()) != b"STARTED\n":
                if not line:
                    raise RuntimeError("the reference server exited before it started")
        drainer = asyncio.create_task(drain(process.stdout))
        yield Running(f"ws://127.0.0.1:{port}/deepstream", process.pid)
    finally:
        await stop(process)
        if drainer is not None:
            await drainer


def recordgate_server(
    config: dict[str, Any], where: Path, env: dict[str, str] | None = None
) -> Start:
    return lambda: recordgate(config, where, env)


async def run_load(node: str, script: str, server: Running, env: dict[str, str]) -> Sample:
    """Run one harness script against ``server``; CPU is sampled at its ``PHASE`` lines."""
    process = await asyncio.create_subprocess_exec(
        node,
        script,
        server.url,
        cwd=REFERENCE,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    cpu: dict[str, float] = {}
    report: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(BENCH_TIMEOUT):
            async for raw in process.stdout:
                line = raw.decode().strip()
                if line.startswith("PHASE "):
                    cpu[line.split()[1]] = server.cpu_seconds()
                elif line.startswith("{"):
                    report = json.loads(line)
            await process.wait()
    finally:
        await stop(process, grace=5)
    if report is None or process.returncode != 0:
        raise RuntimeError(f"{script} against {server.url} failed (exit {process.returncode})")
    delivered = report["delivered"]
    lost = report["expected"] - delivered + report["lat_expected"] - report["lat_samples"]
    return Sample(
        deliveries_per_s=report["deliveries_per_s"],
        cpu_us=(cpu["tp-end"] - cpu["tp"]) / max(delivered, 1) * 1e6,
        p50_ms=report["lat_p50_ms"] or float("nan"),
        p99_ms=report["lat_p99_ms"] or float("nan"),
        rss_mb=status_kb(server.pid, "VmHWM") / 1024,
        lost=lost,
        trips=await limit_trips(server.url),
    )


async def limit_trips(url: str) -> dict[str, int]:
    """recordgate's ``recordgate_limit_trips_total`` by limit (empty for the reference): a lost
    delivery with no trip is not one of recordgate's limits at work."""
    metrics = "http://" + url.split("://", 1)[-1].split("/", 1)[0] + "/metrics"

    def fetch() -> str:
        try:
            with urllib.request.urlopen(metrics, timeout=10) as answer:
                return str(answer.read().decode())
        except OSError:
            return ""

    trips: dict[str, int] = {}
    for line in (await asyncio.to_thread(fetch)).splitlines():
        if line.startswith("recordgate_limit_trips_total{"):
            key = line.split('"')[1]
            trips[key] = int(float(line.rsplit(" ", 1)[1]))
    return {k: v for k, v in trips.items() if v}


class IdleConnections:
    """``count`` logged-in raw connections, each subscribed to a record and an event of its
    own (names no load touches); pinged so no heartbeat check drops them, and read so their
    replies never fill a queue."""

    def __init__(self) -> None:
        self.clients: list[WireClient] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, url: str, count: int) -> None:
        tag = uuid.uuid4().hex[:6]
        for first in range(0, count, 50):  # in batches: a burst of 1000 handshakes is no test
            names = [f"idle/{tag}/{i}" for i in range(first, min(first + 50, count))]
            self.clients += await asyncio.gather(*(self._one(url, name) for name in names))
        if self.clients:
            self._tasks.append(asyncio.create_task(self._ping()))
            self._tasks += [asyncio.create_task(self._read(c)) for c in self.clients]

    @staticmethod
    async def _one(url: str, name: str) -> WireClient:
        client = await WireClient.connect(url, login={})
        await client.send(
            Message(
                Topic.RECORD, RecordAction.SUBSCRIBECREATEANDREAD, names=[name], correlation_id="r"
            )
        )
        await client.recv_until(Topic.RECORD, RecordAction.READ_RESPONSE, timeout=30)
        await client.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=[name], correlation_id="e")
        )
        await client.recv_until(Topic.EVENT, EventAction.SUBSCRIBE, timeout=30)
        return client

    async def _ping(self) -> None:
        ping = Message(Topic.CONNECTION, ConnectionAction.PING)
        while True:
            await asyncio.sleep(PING_EVERY)
            for client in self.clients:
                await client.send(ping)

    @staticmethod
    async def _read(client: WireClient) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in client.ws:
                pass

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
        self.clients, self._tasks = [], []


def record_env(args: argparse.Namespace, seconds: float) -> dict[str, str]:
    return {
        "SUBS": str(args.subs),
        "RECORDS": str(args.records),
        "UPDATES": str(args.updates),
        "RATE": str(args.rate),
        "SECONDS": str(seconds),
    }


def event_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        "SUBS": str(args.subs),
        "EVENTS": str(args.records),
        "EMITS": str(args.updates),
        "RATE": str(args.rate),
        "SECONDS": str(args.seconds),
    }


def rotated(items: list[Any], round_: int) -> list[Any]:
    k = round_ % len(items)
    return items[k:] + items[:k]


def show(round_: int, label: str, load: str, sample: Sample) -> None:
    lost = f"  LOST {sample.lost}" if sample.lost else ""
    if sample.trips:
        lost += f"  LIMIT TRIPS {sample.trips}"
    print(
        f"  round {round_ + 1} {label:<18} {load:<7} {sample.deliveries_per_s:>9.0f} deliv/s "
        f"{sample.cpu_us:6.2f} us CPU/deliv  p50 {sample.p50_ms:.2f} p99 {sample.p99_ms:.2f} ms "
        f"peak RSS {sample.rss_mb:.0f} MB{lost}",
        flush=True,
    )


def medians(samples: list[Sample]) -> dict[str, float]:
    return {m: round(median([getattr(s, m) for s in samples]), 3) for m in METRICS} | {
        "lost": sum(s.lost for s in samples)
    }


async def side_by_side(
    node: str, targets: list[Target], args: argparse.Namespace
) -> dict[str, dict[str, dict[str, float]]]:
    """Per load, per target: medians over the rounds."""
    loads = [("record", "bench.js", record_env(args, args.seconds))]
    if not args.skip_events:
        loads.append(("event", "events.js", event_env(args)))
    samples: dict[str, dict[str, list[Sample]]] = {
        load: {t.label: [] for t in targets} for load, _, _ in loads
    }
    for round_ in range(args.rounds):
        for target in rotated(targets, round_):
            for load, script, env in loads:
                async with target.start() as server:
                    sample = await run_load(node, script, server, env)
                samples[load][target.label].append(sample)
                show(round_, target.label, load, sample)
    return {
        load: {label: medians(found) for label, found in per.items()}
        for load, per in samples.items()
    }


async def scaling(
    node: str, targets: list[Target], args: argparse.Namespace
) -> dict[str, dict[str, dict[str, float]]]:
    """Per target, per idle count (0 and ``--idle``): the record load's medians, plus the RSS
    each idle connection adds (``idle_kb_per_connection``)."""
    counts = [0, args.idle]
    env = record_env(args, args.scale_seconds)
    samples = {t.label: {n: list[Sample]() for n in counts} for t in targets}
    idle_kb: dict[str, list[float]] = {t.label: [] for t in targets}
    for round_ in range(args.scale_rounds):
        for target in targets:
            for count in rotated(counts, round_):
                idle = IdleConnections()
                async with target.start() as server:
                    try:
                        before = status_kb(server.pid, "VmRSS")
                        await idle.open(server.url, count)
                        if count:
                            after = status_kb(server.pid, "VmRSS")
                            idle_kb[target.label].append((after - before) / count)
                        sample = await run_load(node, "bench.js", server, env)
                    finally:
                        await idle.close()
                samples[target.label][count].append(sample)
                show(round_, target.label, f"idle={count}", sample)
    result: dict[str, dict[str, dict[str, float]]] = {}
    for label, per in samples.items():
        result[label] = {f"idle_{n}": medians(found) for n, found in per.items()}
        result[label]["idle_kb_per_connection"] = {"median": round(median(idle_kb[label]), 1)}
    return result


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def ratios(ours: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    return {m: ratio(ours[m], base[m]) for m in METRICS}


def cell(metric: str, value: float) -> str:
    return f"{value:>12.0f}" if metric == "deliveries_per_s" else f"{value:>12.2f}"


def print_table(
    results: dict[str, dict[str, dict[str, float]]], base_label: str, args: argparse.Namespace
) -> None:
    print(
        f"\nsubs={args.subs} names={args.records} updates={args.updates} "
        f"paced at {args.rate}/s for {args.seconds}s, rounds={args.rounds} (medians; "
        f"ratio = target / {base_label}: higher is better for deliv/s, lower for the rest)"
    )
    head = ("deliv/s", "CPU us/dlv", "p50 ms", "p99 ms", "RSS MB")
    print(f"{'load':<8}{'server':<20}" + "".join(f"{h:>12}{'ratio':>8}" for h in head))
    for load, per in results.items():
        base = per[base_label]
        for label, row in per.items():
            cells = "".join(f"{cell(m, row[m])}{ratio(row[m], base[m]):>7.2f}x" for m in METRICS)
            lost = f"  (lost {row['lost']:.0f})" if row["lost"] else ""
            print(f"{load:<8}{label:<20}{cells}{lost}")


def print_scaling(scale: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace) -> None:
    idle = f"idle_{args.idle}"
    print(
        f"\nscaling: record load with 0 vs {args.idle} idle connections "
        f"(rounds={args.scale_rounds}; ratio = with idle / without: flat is 1.00x)"
    )
    print(
        f"{'server':<20}{'deliv/s 0':>11}{f'@{args.idle}':>11}{'ratio':>8}"
        f"{'CPU us 0':>10}{f'@{args.idle}':>9}{'ratio':>8}{'p99 ratio':>11}{'KB/idle conn':>14}"
    )
    for label, per in scale.items():
        zero, many = per["idle_0"], per[idle]
        print(
            f"{label:<20}{zero['deliveries_per_s']:>11.0f}{many['deliveries_per_s']:>11.0f}"
            f"{ratio(many['deliveries_per_s'], zero['deliveries_per_s']):>7.2f}x"
            f"{zero['cpu_us']:>10.2f}{many['cpu_us']:>9.2f}"
            f"{ratio(many['cpu_us'], zero['cpu_us']):>7.2f}x"
            f"{ratio(many['p99_ms'], zero['p99_ms']):>10.2f}x"
            f"{per['idle_kb_per_connection']['median']:>14.1f}"
        )


SCALED = ("reference", "recordgate-asyncio", "recordgate-uvloop")  # in the scaling check


async def main(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    node = ensure_reference()
    began = time.monotonic()
    with workdir() as tmp:
        where = Path(tmp)
        targets = [
            Target("reference", lambda: reference_server(node)),
        ]
        for loop, on_loop in on_loops({"storage": {"type": "memory"}}):
            targets.append(Target(f"recordgate-{loop}", recordgate_server(on_loop, where)))
        if args.sqlite:  # the defaults: an SQLite file in ./recordgate-data (the temp dir)
            targets.append(Target("recordgate-sqlite", recordgate_server({}, where)))
        if args.before:  # another tree, e.g. main before a change: same run, same rounds
            memory = {"storage": {"type": "memory"}}
            env = {"PYTHONPATH": args.before}
            targets.append(Target("recordgate-before", recordgate_server(memory, where, env)))
        results = await side_by_side(node, targets, args)
        scaled = [t for t in targets if t.label in SCALED]
        scale = {} if args.skip_scaling else await scaling(node, scaled, args)
    print_table(results, "reference", args)
    if scale:
        print_scaling(scale, args)
    summary: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "seconds": round(time.monotonic() - began),
        "params": vars(args),
        "results": results,
        "ratios": {
            load: {
                label: ratios(row, per["reference"])
                for label, row in per.items()
                if label != "reference"
            }
            for load, per in results.items()
        },
    }
    if scale:
        summary["scaling"] = scale
        summary["scaling_ratios"] = {
            label: ratios(per[f"idle_{args.idle}"], per["idle_0"]) for label, per in scale.items()
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subs", type=int, default=20, help="subscriber connections")
    parser.add_argument("--records", type=int, default=10, help="records (and event names)")
    parser.add_argument("--updates", type=int, default=20_000, help="updates (and emits)")
    parser.add_argument("--rate", type=int, default=2000, help="paced updates/s, latency phase")
    parser.add_argument("--seconds", type=float, default=3, help="latency phase length")
    parser.add_argument("--idle", type=int, default=500, help="idle connections, scaling check")
    parser.add_argument("--scale-rounds", type=int, default=3)
    parser.add_argument("--scale-seconds", type=float, default=2, help="latency phase, scaling")
    parser.add_argument("--sqlite", action="store_true", help="also recordgate with SQLite")
    parser.add_argument("--skip-events", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--before", help="another tree to run recordgate from, as a target")
    parsed = parser.parse_args()
    if parsed.before:
        parsed.before = os.path.abspath(parsed.before)
    try:
        asyncio.run(main(parsed))
    except KeyboardInterrupt:  # the servers and clients are stopped by then
        sys.exit(130)
    except asyncio.CancelledError:  # SIGTERM
        sys.exit(143)
