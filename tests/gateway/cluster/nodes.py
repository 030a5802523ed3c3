"""Cluster nodes for tests: real ``recordgate start`` processes sharing a private
``redis-server`` (``tests/redis_server.py``) and PostgreSQL (a table of the test's own).

    nodes = ClusterNodes(tmp_path, redis).start(3)
    nodes[0].ws_url, nodes[1].kill(), nodes[0].metrics()["recordgate_cluster_alive_nodes"]
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.event_loop import start_args
from tests.redis_server import RedisServer
from tests.servers import require_postgres

__all__ = ["ClusterNode", "ClusterNodes", "free_port", "wait_until"]

# The repository on the nodes' import path, so storage.type may name a test double
# ("tests.faults.poison:...") as an in-process server's may.
_REPO = str(Path(__file__).resolve().parents[3])
_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [_REPO, os.environ.get("PYTHONPATH")])),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(what: str, check: object, timeout: float = 15.0) -> float:
    """Poll ``check()`` until truthy; the seconds it took. Fails naming ``what``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


class ClusterNode:
    def __init__(self, workdir: Path, config: str, name: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.log = workdir / "recordgate.log"
        self.config = workdir / "recordgate.yaml"
        self.config.write_text(config)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``host:port/path`` as the JS scenarios take it."""
        return f"127.0.0.1:{self.port}/deepstream"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/deepstream"

    def spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "gateway.cli", "start", "-c", str(self.config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "INFO"]
        command += start_args()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=_ENV, stdout=log, stderr=subprocess.STDOUT
            )
        return self.process

    def start(self) -> ClusterNode:
        process = self.spawn()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"node {self.name} exited {process.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/health-check", timeout=1
                ) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"node {self.name} did not become healthy:\n{self.log_text()}")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def kill(self) -> None:
        """SIGKILL: the node gets no chance to leave the cluster."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


class ClusterNodes(list[ClusterNode]):
    """Nodes of one cluster: one Redis prefix, one PostgreSQL table, fast heartbeats."""

    def __init__(
        self,
        root: Path,
        redis: RedisServer,
        *,
        node_timeout: float = 1.5,
        extra: str = "",
        options: dict[str, object] | None = None,
    ) -> None:
        super().__init__()
        self.root = root
        self.redis = redis
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.postgres = require_postgres()
        self.node_timeout = node_timeout
        self.extra = extra
        """More configuration (YAML, top-level sections) for every node."""
        self.options = options or {}
        """More ``cluster:`` options for every node."""
        self.storage_type = "sql"
        """``storage.type`` of every node: a connector aimed at the PostgreSQL table."""

    def config(self, name: str) -> str:
        return (
            "cluster:\n"
            f"  url: {self.redis.url}\n"
            f"  prefix: {self.prefix}\n"
            f"  node_name: {name}\n"
            f"  heartbeat_interval: {self.node_timeout / 3}\n"
            f"  node_timeout: {self.node_timeout}\n"
            + "".join(f"  {key}: {value}\n" for key, value in self.options.items())
            + "storage:\n"
            f"  type: {self.storage_type}\n"
            f"  url: {self.postgres}\n"
            f"  table: {self.prefix}_records\n"
        ) + self.extra

    def add(self, via: int | None = None) -> ClusterNode:
        """A new node, not started. ``via``: the port of a proxy in front of Redis, which the
        node reaches Redis through (start it with ``asyncio.to_thread`` if the proxy forwards
        in the test's event loop)."""
        name = f"node{len(self)}"
        config = self.config(name)
        if via is not None:
            config = config.replace(self.redis.url, f"redis://127.0.0.1:{via}/0")
        node = ClusterNode(self.root / name, config, name)
        self.append(node)
        return node

    async def start_added(self) -> None:
        """Start every node added, each in a thread, so a proxy forwarding in the test's event
        loop (``add(via=...)``) keeps serving while the node waits for Redis."""
        for node in self:
            await asyncio.to_thread(node.start)

    def start(self, count: int) -> ClusterNodes:
        for _ in range(count):
            self.add().start()
        return self

    def stop(self) -> None:
        """Stop every node and drop this cluster's table (ours alone: a unique name)."""
        for node in self:
            node.stop()
        if self:
            thread = threading.Thread(target=asyncio.run, args=(self._drop_table(),))
            thread.start()  # a thread of its own: the test's event loop may be running
            thread.join(30)

    async def _drop_table(self) -> None:
        import asyncpg

        url = self.postgres.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(
                f'DROP TABLE IF EXISTS "{self.prefix}_records", "{self.prefix}_records_fences"'
            )
        finally:
            await connection.close()
