"""Storage outages on a real network path: PostgreSQL behind a TCP proxy the test cuts.

While storage is down the store keeps serving and accepting writes from its cache, the flusher
retries with exponential backoff up to its ceiling, and once storage is back every accepted
write arrives. The database is read back directly, not through the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator

import pytest

from connectors.sql import SQLConnector
from gateway.exceptions import StorageUnavailable
from gateway.store import CachedStore, Record
from tests.proxy import TcpProxy
from tests.servers import require_postgres

from .conftest import rec, until


@pytest.fixture
async def postgres() -> AsyncIterator[tuple[str, str]]:
    """(URL, a table of this test's own), dropped afterwards."""
    url = require_postgres()
    table = f"outage_{uuid.uuid4().hex[:12]}"
    yield url, table
    async with SQLConnector(url, table=table) as conn:
        await conn.drop()


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    async with TcpProxy("127.0.0.1", 5432) as proxy:
        yield proxy


async def test_an_outage_is_ridden_out_from_the_cache_and_nothing_is_lost(
    postgres, proxy, make_store, caplog
) -> None:
    url, table = postgres
    store: CachedStore = await make_store(
        SQLConnector(proxy.url_for(url), table=table, timeout=0.5),
        interval=0.05,
        retry_initial=0.01,
        retry_max=0.04,
    )
    store.put(rec("doc", 1, {"n": 1}))
    await store.durable("doc", 1)

    await proxy.cut()
    with caplog.at_level(logging.WARNING, logger="gateway.store.cached"):
        for version in range(2, 21):
            store.put(rec("doc", version, {"n": version}))
            store.put(rec(f"item/{version}", 1, {"v": version}))
        acked = asyncio.create_task(store.durable("doc", 20))
        await until(lambda: store.stats.retried >= 5)
        # Still serving: reads and writes from the cache, and the ack waits for storage.
        assert store.cached("doc") == Record("doc", 20, {"n": 20})
        assert await store.load("item/7") == Record("item/7", 1, {"v": 7})
        assert not acked.done()
        with pytest.raises(StorageUnavailable):
            await store.load("never-cached")  # a miss needs storage: reported, not hung
        await proxy.restore()
        await asyncio.wait_for(acked, 10)
        await store.flush()

    delays = [float(d) for d in re.findall(r"retrying in ([\d.]+)s", caplog.text)]
    assert delays[:4] == [0.01, 0.02, 0.04, 0.04]  # doubling, then held at the ceiling
    assert store.stats.pending == 0 and store.stats.failed == 0
    async with SQLConnector(url, table=table) as direct:
        assert (await direct.get("doc")).version == 20  # type: ignore[union-attr]
        items = {s.name: s.data async for s in direct.scan("item/")}
    assert items == {f"item/{v}": {"v": v} for v in range(2, 21)}


async def test_a_dead_port_fails_fast_at_open(postgres, proxy) -> None:
    url, table = postgres
    await proxy.cut()
    store = CachedStore(SQLConnector(proxy.url_for(url), table=table, timeout=0.5))
    async with asyncio.timeout(5):
        with pytest.raises(StorageUnavailable):
            await store.open()


async def test_shutdown_during_an_outage_reports_what_is_lost(
    postgres, proxy, make_store, caplog
) -> None:
    url, table = postgres
    store: CachedStore = await make_store(
        SQLConnector(proxy.url_for(url), table=table, timeout=0.3), shutdown_timeout=0.5
    )
    await proxy.cut()
    store.put(rec("lost/1", 1, {}))
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(store.close(), 5)
    assert "'lost/1'" in caplog.text and "LOST" in caplog.text
