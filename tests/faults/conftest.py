"""Fault tests with real processes: ``recordgate start -c cfg.yaml`` as a subprocess, raw
WebSocket peers, and the database read back through the connector's raw reader (the native
driver, not the server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors import create_connector
from connectors.base import RawReader, SupportsRawReader
from connectors.sql import SQLConnector
from gateway.protocol import Message, RecordAction, Topic
from tests.event_loop import start_args
from tests.redis_server import RedisServer
from tests.servers import require_postgres
from tests.wire import WireClient, write

R = RecordAction
RECORDGATE = str(Path(sys.executable).parent / "recordgate")


@dataclass
class Storage:
    """A database for one test: the ``storage:`` config section and a raw reader of it."""

    kind: str
    url: str
    table: str
    """The table, or what keeps this test's records apart on a backend without tables."""
    connector: str = "sql"
    namespace: str = "table"
    """The connector option that ``table`` is the value of."""

    def section(self, url: str | None = None) -> dict[str, Any]:
        return {
            "type": self.connector,
            "url": url or self.url,
            self.namespace: self.table,
            "timeout": 1,
        }

    def raw_reader(self) -> RawReader:
        connector = create_connector(self.connector, self.url, **{self.namespace: self.table})
        assert isinstance(connector, SupportsRawReader)
        return connector.raw_reader()

    async def read(self, names: list[str]) -> dict[str, tuple[int, Any] | None]:
        """What the database holds for ``names``: (version, data) or None."""
        reader = self.raw_reader()
        try:
            found = {}
            for name in names:
                row = await reader.read_raw(name)
                found[name] = None if row is None else (row["version"], row["data"])
            return found
        finally:
            await reader.close()

    async def wait_for(self, name: str, expected: tuple[int, Any], timeout: float = 10) -> None:
        """Until the database holds ``expected`` (version, data) for ``name``."""
        async with asyncio.timeout(timeout):
            while (await self.read([name]))[name] != expected:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.05)


@pytest.fixture(params=["sqlite", "postgresql", "redis", "mongodb stand-in"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    table = f"faults_{uuid.uuid4().hex[:12]}"
    if request.param == "mongodb stand-in":
        # NX-27017, not a genuine MongoDB: the session's stand-in, a collection of the test's own.
        url = request.getfixturevalue("mongodb_standin").url("faults")
        yield Storage("mongodb", url, table, connector="mongodb", namespace="collection")
        async with create_connector("mongodb", url, collection=table) as conn:
            await conn.drop()  # type: ignore[attr-defined]
        return
    if request.param == "sqlite":
        yield Storage("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'records.db'}", table)
        return
    if request.param == "redis":
        # A redis-server of the test's own, AOF on (the connector's default durability).
        redis = RedisServer(tmp_path / "redis").start()
        yield Storage("redis", redis.url, table, connector="redis", namespace="prefix")
        redis.kill()
        return
    storage = Storage("postgresql", require_postgres(), table)
    yield storage
    async with SQLConnector(storage.url, table=table) as conn:
        await conn.drop()


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[Storage]:
    """PostgreSQL only (tests that cut the network path to it)."""
    table = f"faults_{uuid.uuid4().hex[:12]}"
    storage = Storage("postgresql", require_postgres(), table)
    yield storage
    async with SQLConnector(storage.url, table=table) as conn:
        await conn.drop()


@dataclass
class ServerProcess:
    """One ``recordgate start`` process; ``url`` once it is listening."""

    config: Path | None
    """``None``: no ``-c``, the embedded defaults."""
    cwd: Path
    rlimits: dict[int, int] = field(default_factory=dict)
    """``resource.RLIMIT_*`` -> soft and hard limit set in the child before it runs (an
    address-space cap, a file-descriptor limit)."""
    log_level: str = "WARNING"
    event_loop: str | None = None
    """``--event-loop``: None for the loop the suite pins (``tests/event_loop.py``), if any, else
    the config's."""
    process: asyncio.subprocess.Process | None = None
    url: str = ""
    stderr: Path = field(init=False)

    def __post_init__(self) -> None:
        stem = self.config.stem if self.config is not None else "defaults"
        self.stderr = self.cwd / f"{stem}.stderr.log"

    async def start(self) -> ServerProcess:
        with self.stderr.open("ab") as err:
            config = [] if self.config is None else ["-c", str(self.config)]
            loop = start_args() if self.event_loop is None else ["--event-loop", self.event_loop]
            self.process = await asyncio.create_subprocess_exec(
                RECORDGATE,
                "start",
                *config,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--log-level",
                self.log_level,
                *loop,
                cwd=self.cwd,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=self._env(),
                preexec_fn=self._set_rlimits if self.rlimits else None,
            )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), 20)
        except TimeoutError:
            line = b""
        if b"listening on" not in line:
            await self.kill()
            raise AssertionError(f"server did not start: {line!r}\n{self.log()}")
        self.url = line.decode().rsplit(" ", 1)[1].strip()
        return self

    def _env(self) -> dict[str, str] | None:
        if resource.RLIMIT_AS not in self.rlimits:
            return None
        # Under an address-space cap, glibc's per-thread malloc arenas (64 MB of address space
        # each, up to 8 per core) would count, not what is allocated: a burst of storage reads
        # on SQLite (a thread per connection) then failed with MemoryError at ~70 MB of RSS.
        return {**os.environ, "MALLOC_ARENA_MAX": "2"}

    def _set_rlimits(self) -> None:  # in the child, between fork and exec
        for which, limit in self.rlimits.items():
            resource.setrlimit(which, (limit, limit))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def status(self) -> dict[str, int]:
        """``/proc/PID/status`` memory figures in bytes: VmRSS, VmHWM, VmSize, VmPeak."""
        figures = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.startswith("Vm") and value.strip().endswith("kB"):
                figures[key] = int(value.split()[0]) * 1024
        return figures

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def terminate(self, timeout: float = 20) -> int:
        """SIGTERM, then the exit code of the graceful shutdown."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout)

    def log(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""


ServerFactory = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """``await start_server(config_dict)``: a running ``recordgate start`` process in
    ``tmp_path``; ``start_server(None)`` runs it with no config file at all."""
    processes: list[ServerProcess] = []

    async def start(
        config: dict[str, Any] | None,
        *,
        rlimits: dict[int, int] | None = None,
        log_level: str = "WARNING",
        event_loop: str | None = None,
    ) -> ServerProcess:
        path = None
        if config is not None:
            path = tmp_path / f"cfg{len(processes)}.yaml"
            path.write_text(yaml.safe_dump(config))
        server = ServerProcess(path, tmp_path, rlimits or {}, log_level, event_loop)
        processes.append(server)
        return await server.start()

    yield start
    for server in processes:
        await server.kill()


@pytest.fixture
async def peers() -> AsyncIterator[Callable[[str], Awaitable[WireClient]]]:
    clients: list[WireClient] = []

    async def connect(url: str) -> WireClient:
        client = await WireClient.connect(url, login={})
        clients.append(client)
        return client

    yield connect
    for client in clients:
        # Dropped, not closed with a handshake: a client that stopped reading by design (a slow
        # consumer), or whose server is still busy with a storm, waited out websockets' close
        # timeouts for a close frame queued behind the backlog (10-20 s of teardown each).
        client.ws.transport.abort()
        with contextlib.suppress(Exception):  # the server may be dead by design
            await client.ws.wait_closed()


async def acks(peer: WireClient, count: int, timeout: float = 10) -> set[str]:
    """Collect ``count`` write acknowledgements; any error fails."""
    got: set[str] = set()
    async with asyncio.timeout(timeout):
        while len(got) < count:
            msg = await peer.recv(timeout)
            assert msg.action == R.WRITE_ACKNOWLEDGEMENT, msg
            assert msg.correlation_id is not None
            got.add(msg.correlation_id)
    return got


async def read(peer: WireClient, name: str) -> tuple[int, Any]:
    await peer.send(Message(Topic.RECORD, R.READ, name=name))
    msg = await peer.recv_until(Topic.RECORD, R.READ_RESPONSE)
    assert msg.name == name and msg.version is not None and msg.data is not None, msg
    return msg.version, json.loads(msg.data)


__all__ = ["R", "ServerProcess", "Storage", "acks", "read", "write"]
