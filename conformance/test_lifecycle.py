"""Lifecycle: open creates what it needs, close releases, a reopened connector sees the data."""

from __future__ import annotations

import pytest

from conformance.plugin import MakeConnector
from connectors.base import Connector, Put, RawReader

pytestmark = pytest.mark.asyncio


async def test_open_creates_schema(connector: Connector, name_prefix: str) -> None:
    # On a fresh store (the suite picks a fresh namespace when the connector has one) every
    # call works straight after open(), with no setup step of its own.
    assert await connector.get(f"{name_prefix}/missing") is None
    assert await connector.head(f"{name_prefix}/missing") is None
    assert [s async for s in connector.scan(f"{name_prefix}/")] == []
    [result] = await connector.write([Put(f"{name_prefix}/a", 1, {"x": 1})])
    assert result.ok


@pytest.mark.requires("raw")
async def test_open_creates_readable_layout(
    make_connector: MakeConnector, raw_reader: RawReader, name_prefix: str
) -> None:
    assert await raw_reader.count_raw(name_prefix) == 0


async def test_open_twice_on_existing_store(
    make_connector: MakeConnector, name_prefix: str
) -> None:
    first = await make_connector()
    await first.write([Put(f"{name_prefix}/a", 1, {"x": 1})])
    second = await make_connector()  # schema exists already: open must not fail or wipe it
    snapshot = await second.get(f"{name_prefix}/a")
    assert snapshot is not None and snapshot.data == {"x": 1}


async def test_reopen_sees_data(make_connector: MakeConnector, name_prefix: str) -> None:
    name = f"{name_prefix}/kept"
    writer = await make_connector()
    await writer.write([Put(name, 3, {"kept": True})])
    await writer.close()
    reader = await make_connector()
    snapshot = await reader.get(name)
    assert snapshot is not None
    assert (snapshot.version, snapshot.data) == (3, {"kept": True})


async def test_async_context_manager(make_connector: MakeConnector, name_prefix: str) -> None:
    unopened = await make_connector(open=False)
    async with unopened as connector:
        [result] = await connector.write([Put(f"{name_prefix}/cm", 1, [])])
        assert result.ok
        assert await connector.head(f"{name_prefix}/cm") == 1


async def test_close_twice_is_harmless(make_connector: MakeConnector) -> None:
    connector = await make_connector()
    await connector.close()
    await connector.close()


async def test_instances_share_the_store(make_connector: MakeConnector, name_prefix: str) -> None:
    a, b = await make_connector(), await make_connector()
    await a.write([Put(f"{name_prefix}/shared", 1, {"from": "a"})])
    assert await b.head(f"{name_prefix}/shared") == 1
