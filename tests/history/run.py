"""A history run: real ``recordgate start`` nodes, many clients writing and subscribing at once,
then the check (``checker.check``) of everything they saw plus what PostgreSQL holds at the end.

The phases: clients connect (Python ones from ``workload``, official JS ones from
``tests/interop/scenarios/history.js``, spread round-robin over the nodes) and hold the records;
writers write for ``Size.seconds`` (optionally one node is SIGKILLed half-way: its Python
clients reconnect to a survivor, the JS ones, behind a TCP balancer (``balancer.py``) for that
run, reconnect through it); writers stop; a fresh reader per live node
reads every record until every running client holds the newest version seen anywhere; storage is
read directly once it reached those versions (or after a timeout: then the check says what it
holds). By hand, bigger (the README's "Running a cluster" shows it):

    python -m tests.history.run --nodes 3 --seconds 60 --records 8 --subscribers 24 \\
        --writers 12 --forcers 6 --js-subscribers 4 --js-writers 4 [--kill]

``--nodes 0`` runs one node without a cluster section (a single server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.gateway.cluster.nodes import ClusterNode, ClusterNodes
from tests.redis_server import RedisServer
from tests.servers import POSTGRES_URL, require_postgres

from .balancer import Balancer
from .checker import STORAGE, History, Observation, Violation, Write, canonical, check
from .workload import HistoryClient

__all__ = ["Outcome", "Size", "history_run"]

SCENARIO = Path(__file__).resolve().parent.parent / "interop" / "scenarios" / "history.js"


@dataclass(frozen=True)
class Size:
    records: int = 4
    subscribers: int = 6
    writers: int = 4
    forcers: int = 2
    js_subscribers: int = 1
    js_writers: int = 2
    seconds: float = 5.0
    pause: float = 0.02
    """Each writer waits up to this long (random) between its writes."""


@dataclass
class Outcome:
    history: History
    violations: list[Violation]
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    js: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    routed: list[str] = field(default_factory=list)
    """With a balancer (JS clients in a kill run): the node of each connection, in order."""

    def report(self) -> str:
        lines = [f"counts: {json.dumps(self.counts)} in {self.seconds:.1f} s"]
        if self.js:
            lines.append(f"js: {json.dumps(self.js)}")
        if self.routed:
            lines.append(f"balancer routed JS connections to: {', '.join(self.routed)}")
        lines += [f"client error: {e}" for e in self.errors[:20]]
        lines += [str(v) for v in self.violations]
        return "\n".join(lines)


class Nodes(list[ClusterNode]):
    """The nodes under test and whatever they share; ``stop()`` ends them all."""

    def __init__(self, root: Path, count: int) -> None:
        super().__init__()
        self.redis: RedisServer | None = None
        self.cluster: ClusterNodes | None = None
        if count == 0:  # one node, no cluster section: a single server
            self.table = f"h{uuid.uuid4().hex[:10]}_records"
            url = require_postgres()  # skips without PostgreSQL, fails under CI
            config = f"storage:\n  type: sql\n  url: {url}\n  table: {self.table}\n"
            self.append(ClusterNode(root / "single", config, "single").start())
            return
        self.redis = RedisServer(root / "redis", appendonly=False).start()
        self.cluster = ClusterNodes(root, self.redis).start(count)
        self.table = f"{self.cluster.prefix}_records"
        self.extend(self.cluster)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()  # drops the table
        else:
            for node in self:
                node.stop()
            thread = threading.Thread(target=asyncio.run, args=(_drop(self.table),))
            thread.start()  # a thread of its own: the caller's event loop may be running
            thread.join(30)
        if self.redis is not None:
            self.redis.kill()


async def _drop(table: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""))
    try:
        await connection.execute(f'DROP TABLE IF EXISTS "{table}", "{table}_fences"')
    finally:
        await connection.close()


async def stored(table: str, records: list[str]) -> dict[str, tuple[int, Any]]:
    """What PostgreSQL holds for ``records``, read directly: name -> (version, data)."""
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""))
    try:
        with contextlib.suppress(asyncpg.UndefinedTableError):
            rows = await connection.fetch(
                f'SELECT name, version, data FROM "{table}" WHERE name = ANY($1)', records
            )
            return {r["name"]: (int(r["version"]), json.loads(r["data"])) for r in rows}
        return {}
    finally:
        await connection.close()


@contextlib.contextmanager
def started(root: Path, count: int) -> Iterator[Nodes]:
    nodes = Nodes(root, count)
    try:
        yield nodes
    finally:
        nodes.stop()


class JsClients:
    """The official JS clients of the run: one node process driven over stdin/stdout."""

    def __init__(
        self,
        node_bin: str,
        urls: list[str],
        names: list[str],
        records: list[str],
        size: Size,
        log: Path,
    ) -> None:
        self.log = log
        self.args = [
            node_bin,
            str(SCENARIO),
            urls[0],
            ",".join(urls),
            ",".join(records),
            str(size.js_subscribers),
            str(size.js_writers),
            str(log),
            f"js{uuid.uuid4().hex[:4]}",
            str(int(size.pause * 1000)),
            ",".join(names),
        ]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "SCENARIO_DEADLINE_MS": "3600000"}
        self.process = await asyncio.create_subprocess_exec(
            *self.args,
            cwd=SCENARIO.parent.parent,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        await self.expect("ready", 60)

    async def expect(self, word: str, timeout: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), timeout)).decode().strip()
        if not line.startswith(word) and not (word == "{" and line.startswith("{")):
            rest = (await self.process.stdout.read()).decode()
            raise AssertionError(f"JS clients said {line!r}, not {word!r}:\n{rest}")
        return line

    async def say(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def finish(self, newest: dict[str, int]) -> dict[str, Any]:
        await self.say("finish " + json.dumps(newest))
        summary: dict[str, Any] = json.loads(await self.expect("{", 60))
        assert self.process is not None
        await self.process.wait()
        return summary

    def history(self, running: bool = True) -> History:
        history = History()
        for line in self.log.read_text().splitlines():
            item = json.loads(line)
            kind = item.pop("kind")
            if kind == "obs":
                history.observations.append(Observation.from_json(item))
            else:
                history.writes.append(Write.from_json(item))
        if running:
            history.running |= {o.client for o in history.observations}
        return history

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


def newest_versions(clients: list[HistoryClient]) -> dict[str, int]:
    newest: dict[str, int] = {}
    for client in clients:
        for obs in client.history.observations:
            newest[obs.record] = max(obs.version, newest.get(obs.record, -1))
    return newest


def seen_values(clients: list[HistoryClient]) -> set[tuple[str, int, str]]:
    """Every (record, version, canonical value) the clients were told of."""
    return {
        (obs.record, obs.version, canonical(obs.value))
        for client in clients
        for obs in client.history.observations
        if obs.has_value()
    }


async def history_run(
    nodes: Nodes, size: Size, *, node_bin: str | None = None, kill: bool = False
) -> Outcome:
    """Run the workload of ``size`` against ``nodes`` and check its history."""
    began = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    records = [f"hist/{run_id}/{i}" for i in range(size.records)]
    alive = list(range(len(nodes)))
    victim = len(nodes) - 1 if kill and len(nodes) > 1 else None

    def failover() -> tuple[str, str] | None:
        if victim is None or nodes[victim].process is None or nodes[victim].process.poll() is None:
            return None  # nothing died: retry the same node
        index = random.choice([i for i in alive if i != victim])
        return nodes[index].name, nodes[index].ws_url

    clients: list[HistoryClient] = []
    index = 0
    for role, count in (
        ("subscriber", size.subscribers),
        ("writer", size.writers),
        ("forcer", size.forcers),
    ):
        for i in range(count):
            node = nodes[index % len(nodes)]
            index += 1
            clients.append(
                HistoryClient(
                    f"py-{role}{i}",
                    role,
                    node.name,
                    node.ws_url,
                    records,
                    failover=failover,
                    pause=size.pause,
                )
            )
    js: JsClients | None = None
    balancer: Balancer | None = None
    workdir = Path(tempfile.mkdtemp(prefix="history-"))
    try:
        for client in clients:  # one by one: the records exist before many race to create them
            await client.start()
        if node_bin is not None and (size.js_subscribers or size.js_writers):
            urls, names = [n.url for n in nodes], [n.name for n in nodes]
            if victim is not None:  # through a balancer: the victim's JS clients come back
                balancer = await Balancer([n.port for n in nodes]).start()
                urls, names = [f"127.0.0.1:{balancer.port}/deepstream"], ["balancer"]
            js = JsClients(node_bin, urls, names, records, size, workdir / "js.jsonl")
            await js.start()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(c.run(stop)) for c in clients]
        if js is not None:
            await js.say("go")
        if victim is not None:
            await asyncio.sleep(size.seconds / 2)
            nodes[victim].kill()  # SIGKILL mid-run
            await asyncio.sleep(size.seconds / 2)
        else:
            await asyncio.sleep(size.seconds)
        stop.set()
        if js is not None:
            await js.say("stop")
        await asyncio.gather(*tasks)
        if js is not None:
            await js.expect("stopped", 60)
        live = [n for i, n in enumerate(nodes) if i != victim]
        readers = [
            HistoryClient(f"py-reader-{n.name}", "reader", n.name, n.ws_url, records) for n in live
        ]
        for reader in readers:
            await reader.start()
        everyone = clients + readers
        newest: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for reader in readers:
                await reader.read_all()
            newest, seen = newest_versions(everyone), seen_values(everyone)
            holding = [c for c in everyone if c.role != "forcer"]
            if all(c.last_versions(seen) == newest for c in holding):
                break
            await asyncio.sleep(0.2)
        summary: dict[str, Any] = {}
        if js is not None:
            summary = await js.finish(newest)
        deadline = time.monotonic() + 30
        held: dict[str, tuple[int, Any]] = {}
        while time.monotonic() < deadline:
            held = await stored(nodes.table, records)
            if all(held.get(r, (None,))[0] == v for r, v in newest.items()):
                break
            await asyncio.sleep(0.2)
        history = History()
        for client in everyone:
            history.extend(client.history)
        if js is not None:
            history.extend(js.history())
        for name, (version, data) in sorted(held.items()):
            history.observations.append(
                Observation(STORAGE, "postgresql", name, version, data, "storage")
            )
        errors = [f"{c.name}: {e}" for c in everyone for e in c.errors]
        by_port = {n.port: n.name for n in nodes}
        routed = [by_port[p] for p in balancer.routed] if balancer is not None else []
        return Outcome(
            history,
            check(history),
            history.counts(),
            errors,
            summary,
            time.monotonic() - began,
            routed,
        )
    finally:
        if js is not None:
            js.kill()
        if balancer is not None:
            await balancer.close()
        for client in clients:
            await client.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="0: one node without a cluster")
    for name, default in asdict(Size()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--kill", action="store_true", help="SIGKILL the last node half-way")
    parser.add_argument("--no-js", action="store_true", help="Python clients only")
    parser.add_argument("--dump", type=Path, help="write the history here (JSON lines)")
    args = parser.parse_args()
    size = Size(**{name: getattr(args, name) for name in asdict(Size())})
    node_bin = None if args.no_js else shutil.which("node")
    with (
        tempfile.TemporaryDirectory(prefix="history-nodes-") as tmp,
        started(Path(tmp), args.nodes) as nodes,
    ):
        outcome = asyncio.run(history_run(nodes, size, node_bin=node_bin, kill=args.kill))
    if args.dump is not None:
        outcome.history.dump(args.dump)
    print(outcome.report())
    print("PASS" if not outcome.violations else f"FAIL: {len(outcome.violations)} violations")
    sys.exit(1 if outcome.violations else 0)


if __name__ == "__main__":
    main()
