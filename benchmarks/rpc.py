"""RPC round trips, side by side: recordgate vs the reference deepstream server, in one run.

One provider and one requester in one client process, the requester keeping ``--in-flight``
requests outstanding until ``--requests`` have been answered: raw sockets with pre-built
messages (``reference/rawrpc.js``, the default: lighter than either server, so the server is
what bounds the load) or the official deepstream JS client (``--client official``,
``reference/rpc.js``: heavier than either server). Per measurement, against a fresh server
process: round trips/s, the server's CPU time per round trip (user + system from ``/proc``,
sampled at the script's ``PHASE`` lines: steadier than wall clock on a shared machine), the
client's own CPU time per round trip, latency p50/p99 as the requester sees it. The server
order rotates each round; medians [lowest-highest] are reported. recordgate runs on the
standard loop and, when uvloop is installed, on uvloop (``server.event_loop``). ``--before
DIR`` adds recordgate run from another tree (``PYTHONPATH=DIR``, e.g. a ``git archive`` of
main), on each loop, for before/after in the same run.

    python benchmarks/rpc.py [--rounds 5] [--requests 20000] [--in-flight 50]
                             [--client raw|official] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from common import Running, median, recordgate, spread, workdir
from fanout import REFERENCE, Target, ensure_reference, reference_server, rotated, stop

METRICS = ("round_trips_per_s", "cpu_us", "client_cpu_us", "p50_ms", "p99_ms")
CLIENTS = {"raw": "rawrpc.js", "official": "rpc.js"}


async def run_rpc(node: str, server: Running, args: argparse.Namespace) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        node,
        CLIENTS[args.client],
        server.url,
        cwd=REFERENCE,
        env={**os.environ, "REQUESTS": str(args.requests), "IN_FLIGHT": str(args.in_flight)},
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    cpu: dict[str, float] = {}
    report: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(300):
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
        raise RuntimeError(f"rpc.js against {server.url} failed (exit {process.returncode})")
    if report["failed"]:
        raise RuntimeError(f"{report['failed']} requests failed against {server.url}")
    return {
        "round_trips_per_s": report["round_trips_per_s"],
        "cpu_us": (cpu["rpc-end"] - cpu["rpc"]) / report["answered"] * 1e6,
        "client_cpu_us": report["client_cpu_us"],
        "p50_ms": report["p50_ms"],
        "p99_ms": report["p99_ms"],
    }


async def main(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    node = ensure_reference()
    # The provider sends two messages per round trip: past 5,000 round trips/s that passes the
    # default per-client rate limit (10,000 messages/s), which the reference does not have.
    unlimited = {"max_messages_per_second": 0}
    memory: dict[str, Any] = {"storage": {"type": "memory"}, "server": unlimited}
    on_asyncio = {**memory, "server": {**unlimited, "event_loop": "asyncio"}}
    on_uvloop = {**memory, "server": {**unlimited, "event_loop": "uvloop"}}
    with workdir() as tmp:
        where = Path(tmp)
        targets = [
            Target("reference", lambda: reference_server(node)),
            Target("recordgate-asyncio", lambda: recordgate(on_asyncio, where)),
        ]
        if importlib.util.find_spec("uvloop") is not None:
            targets.append(Target("recordgate-uvloop", lambda: recordgate(on_uvloop, where)))
        if args.before:
            env = {"PYTHONPATH": args.before}
            targets.append(Target("recordgate-before", lambda: recordgate(on_asyncio, where, env)))
            if importlib.util.find_spec("uvloop") is not None:
                targets.append(Target("before-uvloop", lambda: recordgate(on_uvloop, where, env)))
        samples: dict[str, list[dict[str, float]]] = {t.label: [] for t in targets}
        for round_ in range(args.rounds):
            for target in rotated(targets, round_):
                async with target.start() as server:
                    sample = await run_rpc(node, server, args)
                samples[target.label].append(sample)
                print(
                    f"  round {round_ + 1} {target.label:<18} "
                    f"{sample['round_trips_per_s']:>8.0f} rt/s {sample['cpu_us']:7.2f} us CPU/rt"
                    f" (client {sample['client_cpu_us']:.2f})"
                    f"  p50 {sample['p50_ms']:.2f} p99 {sample['p99_ms']:.2f} ms",
                    flush=True,
                )
    base = {m: median([s[m] for s in samples["reference"]]) for m in METRICS}
    print(
        f"\nrpc: {args.client} client, 1 provider, 1 requester, {args.in_flight} in flight, "
        f"{args.requests} requests, "
        f"rounds={args.rounds} (median [lowest-highest]; ratio = target / reference of the "
        "medians: higher is better for rt/s, lower for the rest)"
    )
    head = ("round trips/s", "CPU us/rt", "client CPU us/rt", "p50 ms", "p99 ms")
    print(f"{'server':<20}" + "".join(f"{h:>22}{'ratio':>7}" for h in head))
    summary: dict[str, Any] = {"params": vars(args), "results": {}, "ratios": {}}
    for label, found in samples.items():
        cells = ""
        for m in METRICS:
            values = [s[m] for s in found]
            digits = 0 if m == "round_trips_per_s" else 2
            cells += f"{spread(values, digits):>22}{median(values) / base[m]:>6.2f}x"
        print(f"{label:<20}{cells}")
        summary["results"][label] = {m: median([s[m] for s in found]) for m in METRICS}
        summary["ratios"][label] = {
            m: round(summary["results"][label][m] / base[m], 3) for m in METRICS
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="raw",
        help="raw sockets and pre-built messages (default), or the official JS client",
    )
    parser.add_argument("--before", help="another tree to run recordgate from, as a target")
    parsed = parser.parse_args()
    if parsed.before:
        parsed.before = os.path.abspath(parsed.before)
    try:
        asyncio.run(main(parsed))
    except KeyboardInterrupt:
        sys.exit(130)
    except asyncio.CancelledError:
        sys.exit(143)
