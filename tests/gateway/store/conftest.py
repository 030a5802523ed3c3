"""Fixtures for the store tests: real connectors (memory, SQLite file, PostgreSQL), each test on
its own store, and a counting subclass of the memory reference connector."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Connector, Delete, Put, Snapshot, WriteResult
from connectors.memory import MemoryConnector
from gateway.config import CacheConfig, WriteBehindConfig
from gateway.store import CachedStore, Record
from tests.servers import require_postgres

SLOW = 60.0
"""A flush interval no test waits for: flushes happen because a test forces them."""


class CountingConnector(MemoryConnector):
    """The memory reference connector, recording every batch that reaches it.

    ``write_gate``/``read_gate``, when set, hold calls until the test opens them, so a test can
    act while a write or read is in flight. Two writes of one record in flight at once fail the
    test (the flusher promises never to do that).
    """

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.batches: list[list[Put | Delete]] = []
        self.gets = 0
        self.write_gate: asyncio.Event | None = None
        self.read_gate: asyncio.Event | None = None
        self.in_flight: set[str] = set()
        """Names whose write is in the connector right now."""

    @property
    def ops(self) -> list[Put | Delete]:
        return [op for batch in self.batches for op in batch]

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        names = {op.name for op in ops}
        assert not names & self.in_flight, f"two writes of {names & self.in_flight} in flight"
        self.in_flight |= names
        try:
            if self.write_gate is not None:
                await self.write_gate.wait()
            results = await super().write(ops)
        finally:
            self.in_flight -= names
        self.batches.append(list(ops))
        return results

    async def get(self, name: str) -> Snapshot | None:
        self.gets += 1
        if self.read_gate is not None:
            await self.read_gate.wait()
        return await super().get(name)


@pytest.fixture
def memory_url() -> Iterable[str]:
    url = f"memory://store-test-{uuid.uuid4().hex}"
    yield url
    MemoryConnector.drop_store(url)


@pytest.fixture
def counting(memory_url: str) -> CountingConnector:
    return CountingConnector(memory_url)


@pytest.fixture
async def make_store() -> AsyncIterator[Callable[..., Any]]:
    """``await make_store(connector, interval=..., ...)``: an open store, closed afterwards.

    Write-behind settings default to test-sized values; the interval to ``SLOW``.
    """
    stores: list[CachedStore] = []

    async def make(
        connector: Connector, *, max_records: int = 1000, **write_behind: Any
    ) -> CachedStore:
        settings: dict[str, Any] = {
            "interval": SLOW,
            "retry_initial": 0.01,
            "retry_max": 0.05,
            "shutdown_timeout": 2.0,
        }
        settings.update(write_behind)
        store = CachedStore(
            connector,
            cache=CacheConfig(max_records=max_records),
            write_behind=WriteBehindConfig(**settings),
        )
        await store.open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@dataclass
class Backend:
    """A real storage: ``connector()`` gives a new, unopened connector on the same store."""

    name: str
    factory: Callable[[], Connector]

    def connector(self) -> Connector:
        return self.factory()


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis", "mongodb stand-in"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    from connectors.sql import SQLConnector

    kind: str = request.param
    table = f"store_{uuid.uuid4().hex[:12]}"
    if kind == "mongodb stand-in":  # NX-27017, not a genuine MongoDB (tests/standins/mongodb.py)
        from connectors.mongodb import MongoConnector

        mongo_url = request.getfixturevalue("mongodb_standin").url(table)
        yield Backend(kind, lambda: MongoConnector(mongo_url, timeout=2))
        async with MongoConnector(mongo_url, timeout=2) as conn:
            await conn.drop()
        return
    if kind == "redis":  # a redis-server of the test's own, AOF on
        from connectors.redis import RedisConnector
        from tests.redis_server import RedisServer

        redis = RedisServer(tmp_path / "redis").start()
        yield Backend(kind, lambda: RedisConnector(redis.url, prefix=table, timeout=2))
        redis.kill()
        return
    if kind == "memory":
        url = f"memory://store-test-{table}"
        yield Backend(kind, lambda: MemoryConnector(url))
        MemoryConnector.drop_store(url)
        return
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    else:
        url = require_postgres()
    yield Backend(kind, lambda: SQLConnector(url, table=table, timeout=2))
    if kind == "postgresql":
        async with SQLConnector(url, table=table, timeout=2) as conn:
            await conn.drop()


def rec(name: str, version: int, data: Any) -> Record:
    return Record(name, version, data)


async def seed(target: Connector | str, *snapshots: tuple[str, int, Any]) -> None:
    """Write snapshots straight into storage, as a data team or another server would: through
    ``target`` (an open connector) or a connector of its own on a ``memory://`` URL."""
    if isinstance(target, str):
        async with MemoryConnector(target) as connector:
            await seed(connector, *snapshots)
        return
    results = await target.write([Put(n, v, d) for n, v, d in snapshots])
    assert all(r.ok for r in results), results


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds`` (a deadline, not a benchmark)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - state of another task, no event to wait on
            await asyncio.sleep(0.01)
