"""What one idle logged-in connection holds in recordgate, allocation site by site (tracemalloc).

Runs a server in this process (memory storage) and ``--connections`` raw clients
(``tests/wire.py``) in a child process, so only the server's allocations are traced. Takes a
tracemalloc snapshot before the clients connect and one after they have logged in and sat
idle for ``--settle`` seconds (both after a full garbage collection), and prints the growth per
connection by the line that allocated it, largest first, then the total. Python allocations
only: the kernel's socket buffers and the allocator's overhead are in ``idle.py``'s RSS
figure, not here.

    python benchmarks/idle_objects.py [--connections 1000] [--top 20]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import linecache
import resource
import sys
import tracemalloc
from pathlib import Path

import common  # noqa: F401  (puts the checkout on sys.path)

from gateway.config import config_from_dict
from gateway.server import Server
from tests.wire import WireClient

ROOT = str(Path(__file__).resolve().parent.parent)


async def clients(url: str, count: int) -> None:
    """The child: ``count`` logged-in idle connections until stdin closes."""
    opened = []
    for first in range(0, count, 50):
        n = min(50, count - first)
        opened += await asyncio.gather(*(WireClient.connect(url, login={}) for _ in range(n)))
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)


def where(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for prefix in (ROOT + "/", *sorted(sys.path, key=len, reverse=True)):
        if prefix and name.startswith(prefix.rstrip("/") + "/"):
            name = name[len(prefix.rstrip("/")) + 1 :]
            break
    code = linecache.getline(frame.filename, frame.lineno).strip()
    return f"{name}:{frame.lineno}  {code[:60]}"


async def main(args: argparse.Namespace) -> None:
    config = config_from_dict(
        {
            "server": {"host": "127.0.0.1", "port": 0, "max_connections_per_ip": 100_000},
            "storage": {"type": "memory"},
        }
    )
    async with Server(config) as server:
        url = f"ws://127.0.0.1:{server.port}{config.server.path}"
        tracemalloc.start(1)
        gc.collect()
        before = tracemalloc.take_snapshot()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--child",
            url,
            "--connections",
            str(args.connections),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None and child.stdin is not None
        try:
            line = await asyncio.wait_for(child.stdout.readline(), 300)
            assert line.strip() == b"READY", line
            await asyncio.sleep(args.settle)
            gc.collect()
            after = tracemalloc.take_snapshot()
            held = len(server.connections)
        finally:
            child.stdin.close()
            await child.wait()
    tracemalloc.stop()
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = after.filter_traces(keep).compare_to(before.filter_traces(keep), "lineno")
    total = sum(d.size_diff for d in diff)
    print(f"{held} idle logged-in connections; Python bytes per connection by allocating line:")
    for d in sorted(diff, key=lambda d: d.size_diff, reverse=True)[: args.top]:
        if d.size_diff <= 0:
            break
        per, blocks = d.size_diff / held, d.count_diff / held
        print(f"{per:8.0f} B  {blocks:5.2f} blocks  {where(d.traceback[0])}")
    print(f"{total / held:8.0f} B  in all")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if parsed.child:
        asyncio.run(clients(parsed.child, parsed.connections))
    else:
        asyncio.run(main(parsed))
