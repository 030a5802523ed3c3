"""Acknowledged writes of the official JS client survive SIGKILL, per storage backend.

The client writes with ``setWithAck``; once it has its acknowledgements, the ``recordgate``
process is killed with SIGKILL (and, on Redis, the ``redis-server`` too: an acknowledgement
promises the write is in Redis's append-only file, not only in its memory); both are started
again and every acknowledged write is read back through the JS client and the connector's raw
reader (the native driver).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors import create_connector
from connectors.base import SupportsRawReader
from tests.interop.conftest import RecordgateProcess, scenario_runner
from tests.redis_server import RedisServer

pytestmark = pytest.mark.interop

COUNT = 50


class Backend:
    """A storage of the test's own: its ``storage:`` section, and a restart of its server."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.redis: RedisServer | None = None
        if kind == "redis":
            self.redis = RedisServer(workdir / "redis").start()  # AOF on
            self.section: dict[str, Any] = {"type": "redis", "url": self.redis.url}
        else:
            self.section = {"type": "sql", "url": f"sqlite+aiosqlite:///{workdir / 'rec.db'}"}

    def kill_and_restart_server(self) -> None:
        if self.redis is not None:
            self.redis.kill()
            self.redis.start()

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.kill()

    async def read_raw(self, names: list[str]) -> dict[str, Any]:
        options = {k: v for k, v in self.section.items() if k not in ("type", "url")}
        connector = create_connector(self.section["type"], self.section["url"], **options)
        assert isinstance(connector, SupportsRawReader)
        reader = connector.raw_reader()
        try:
            found: dict[str, Any] = {}
            for name in names:
                row = await reader.read_raw(name)
                if row is not None:
                    found[name] = {"version": row["version"], "data": row["data"]}
            return found
        finally:
            await reader.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if os.environ.get("RECORDGATE_INTEROP_URL"):
        pytest.skip("kills its own recordgate; not possible against an external server")
    found = Backend(request.param, tmp_path)
    yield found
    found.stop()


def test_acknowledged_writes_survive_sigkill(node: str, backend: Backend, tmp_path: Path) -> None:
    server = RecordgateProcess(tmp_path)
    # A flush interval that never elapses: only the acknowledgements make writes reach storage.
    config = {"storage": backend.section, "write_behind": {"interval": 3600}}
    with server.config.open("a") as file:
        file.write(yaml.safe_dump(config))
    server.start()
    run = scenario_runner(node, server.url, server.log)
    prefix = f"durable/{uuid.uuid4().hex[:8]}"
    try:
        wrote = run("durable", "write", prefix, COUNT)
        assert wrote["errors"] == [] and wrote["failed"] == {}
        acked = wrote["acked"]
        assert len(acked) == COUNT + 1
        assert acked[f"{prefix}/hot"] == {"version": 10, "data": {"n": 10}}

        assert server.process is not None
        server.process.kill()  # SIGKILL: no shutdown flush
        server.process.wait()
        backend.kill_and_restart_server()

        assert asyncio.run(backend.read_raw(list(acked))) == acked
        server.start()  # same port, same storage
        read = run("durable", "read", prefix, COUNT)["read"]
        assert read == acked
    finally:
        server.stop()
