"""Failures on real network paths to the Elasticsearch stand-in: a connection cut mid-batch, a
server that accepts and never answers, a server that is not Elasticsearch, and the write-behind
flusher riding out an outage without losing its batch."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from connectors.base import Put, Snapshot, StorageTimeout, StorageUnavailable
from connectors.elasticsearch import ElasticsearchConnector
from gateway.config import CacheConfig, WriteBehindConfig
from gateway.store import CachedStore, Record
from tests.connectors.elasticsearch.conftest import MakeConnector
from tests.proxy import TcpProxy

pytestmark = pytest.mark.needs_server("elasticsearch")

TIMEOUT = 1.0
SLACK = 3.0  # scheduling allowance on a busy machine


@pytest.fixture
async def proxy(es_url: str) -> AsyncIterator[TcpProxy]:
    """A cuttable TCP path to the stand-in."""
    parts = urlsplit(es_url)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 9200) as proxy:
        yield proxy


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A port that accepts connections, reads what is sent and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for writer in held:
        writer.transport.abort()


async def test_silent_server_times_out_open(silent_server: int, index_name: str) -> None:
    connector = ElasticsearchConnector(
        f"http://127.0.0.1:{silent_server}", index=index_name, timeout=TIMEOUT
    )
    started = time.monotonic()
    with pytest.raises(StorageTimeout):
        await connector.open()
    assert time.monotonic() - started < TIMEOUT + SLACK


async def test_server_going_silent_times_out_each_call(
    make_connector: MakeConnector, proxy: TcpProxy, silent_server: int
) -> None:
    connector = await make_connector(proxy.url_for(_url(proxy)), timeout=TIMEOUT)
    await connector.write([Put("s/1", 1, {})])
    await proxy.cut()
    proxy.target = ("127.0.0.1", silent_server)  # reconnects now reach a server that never answers
    await proxy.restore()
    for call in (
        connector.get("s/1"),
        connector.head("s/1"),
        connector.write([Put("s/1", 2, {})]),
        _drain(connector),
    ):
        started = time.monotonic()
        with pytest.raises(StorageTimeout):
            await call
        assert time.monotonic() - started < TIMEOUT + SLACK


async def test_connection_cut_mid_batch_then_the_batch_lands_on_retry(
    make_connector: MakeConnector, proxy: TcpProxy, es_url: str
) -> None:
    connector = await make_connector(proxy.url_for(_url(proxy)), timeout=10)
    batch = [Put(f"cut/{i:05d}", 1, {"i": i, "pad": "x" * 200}) for i in range(3000)]
    write = asyncio.create_task(connector.write(batch))
    await asyncio.sleep(0.2)  # the bulk request is on its way, or being indexed
    await proxy.cut()
    started = time.monotonic()
    with pytest.raises((StorageUnavailable, StorageTimeout)):
        await write
    assert time.monotonic() - started < SLACK  # a reset fails at once, not at the timeout
    await proxy.restore()
    # Whatever the server applied before the cut comes back as an idempotent retry.
    results = await connector.write(batch)
    assert all(result.ok for result in results)
    direct = await make_connector(es_url)
    stored = await direct.get_many(op.name for op in batch)
    assert stored == {op.name: Snapshot(op.name, 1, op.data) for op in batch}


async def test_flusher_rides_out_an_outage_without_losing_its_batch(
    make_connector: MakeConnector, proxy: TcpProxy, es_url: str
) -> None:
    connector = ElasticsearchConnector(
        proxy.url_for(_url(proxy)), index=(await make_connector(es_url)).index, timeout=TIMEOUT
    )
    store = CachedStore(
        connector,
        cache=CacheConfig(max_records=10_000),
        write_behind=WriteBehindConfig(
            interval=0.05, retry_initial=0.02, retry_max=0.1, batch_size=200
        ),
    )
    await store.open()
    try:
        for i in range(1000):
            store.put(Record(f"flush/{i:04d}", 1, {"i": i}))
        await asyncio.sleep(0.1)  # a flush round is under way
        await proxy.cut()
        for i in range(1000):
            store.put(Record(f"flush/{i:04d}", 2, {"i": i, "during": True}))
        acked = asyncio.create_task(store.durable("flush/0999", 2))
        await asyncio.sleep(3 * TIMEOUT)
        assert not acked.done()
        assert store.stats.retried > 0
        await proxy.restore()
        await asyncio.wait_for(acked, 30)
        await store.flush()
        assert store.stats.failed == 0 and store.stats.pending == 0
    finally:
        await store.close()
    direct = await make_connector(es_url)
    stored = {s.name: (s.version, s.data) async for s in direct.scan("flush/")}
    assert stored == {f"flush/{i:04d}": (2, {"i": i, "during": True}) for i in range(1000)}


async def test_a_server_that_is_not_elasticsearch_is_unavailable(
    es_url: str, index_name: str
) -> None:
    # The stand-in without the header proxy: the client refuses it, as it refuses a cluster
    # that does not say it is Elasticsearch (e.g. OpenSearch).
    from tests.standins import elasticsearch as standin

    if standin._shared is None:
        pytest.skip("needs the stand-in (RECORDGATE_ELASTICSEARCH_URL names another cluster)")
    connector = ElasticsearchConnector(
        standin._shared.server_url, index=index_name, timeout=TIMEOUT
    )
    with pytest.raises(StorageUnavailable):
        await connector.open()


def _url(proxy: TcpProxy) -> str:
    host, port = proxy.target
    return f"http://{host}:{port}"


async def _drain(connector: ElasticsearchConnector) -> None:
    async for _ in connector.scan(""):
        pass
