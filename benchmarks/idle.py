"""RSS per idle logged-in connection, side by side: recordgate vs the reference server.

Per fresh server process: its ``VmRSS`` before and after ``--connections`` raw WebSocket
clients (``tests/wire.py``) have connected and logged in, then sat idle for ``--settle``
seconds; the delta over the count is the memory one idle connection costs. Servers run in
turn, the order rotated each round; medians [lowest-highest]. ``--before DIR`` adds recordgate
run from another tree (``PYTHONPATH=DIR``) for before/after in the same run.

    python benchmarks/idle.py [--rounds 3] [--connections 2000] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any

from common import median, on_loops, recordgate, spread, workdir
from fanout import Target, ensure_reference, reference_server, rotated, status_kb

from tests.wire import WireClient


async def idle_kb(target: Target, count: int, settle: float) -> float:
    clients: list[WireClient] = []
    async with target.start() as server:
        try:
            await asyncio.sleep(settle)
            before = status_kb(server.pid, "VmRSS")
            for first in range(0, count, 50):  # in batches: a burst of handshakes is no test
                n = min(50, count - first)
                clients += await asyncio.gather(
                    *(WireClient.connect(server.url, login={}) for _ in range(n))
                )
            await asyncio.sleep(settle)
            after = status_kb(server.pid, "VmRSS")
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return (after - before) / count


async def main(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    node = ensure_reference()
    # every client comes from 127.0.0.1: lift the per-address cap (1,000 by default)
    memory: dict[str, Any] = {
        "storage": {"type": "memory"},
        "server": {"max_connections_per_ip": args.connections + 100},
    }
    with workdir() as tmp:
        where = Path(tmp)
        targets = [
            Target("reference", lambda: reference_server(node)),
        ]
        for loop, on_loop in on_loops(memory):
            targets.append(Target(f"recordgate-{loop}", partial(recordgate, on_loop, where)))
        if args.before:
            env = {"PYTHONPATH": args.before}
            targets.append(Target("recordgate-before", lambda: recordgate(memory, where, env)))
        found: dict[str, list[float]] = {t.label: [] for t in targets}
        for round_ in range(args.rounds):
            for target in rotated(targets, round_):
                kb = await idle_kb(target, args.connections, args.settle)
                found[target.label].append(kb)
                print(f"  round {round_ + 1} {target.label:<18} {kb:6.2f} KB/idle connection")
    base = median(found["reference"])
    print(f"\n{args.connections} idle logged-in connections, rounds={args.rounds}")
    print(f"{'server':<20}{'KB per connection':>24}{'ratio':>8}")
    for label, values in found.items():
        print(f"{label:<20}{spread(values, 2):>24}{median(values) / base:>7.2f}x")
    print(json.dumps({"params": vars(args), "kb": {k: median(v) for k, v in found.items()}}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before each reading")
    parser.add_argument("--before", help="another tree to run recordgate from, as a target")
    parsed = parser.parse_args()
    if parsed.before:
        parsed.before = os.path.abspath(parsed.before)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one socket per client
    try:
        asyncio.run(main(parsed))
    except KeyboardInterrupt:
        sys.exit(130)
    except asyncio.CancelledError:
        sys.exit(143)
