"""Lifecycle: open creates what it needs, close releases, a reopened connector sees the data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import pytest

from conformance.bounded import BoundedConnector
from conformance.plugin import MakeConnector
from connectors.base import (
    Connector,
    Put,
    RawReader,
    Snapshot,
    StorageTimeout,
    StorageUnavailable,
)

pytestmark = pytest.mark.asyncio


async def test_open_creates_schema(connector: Connector, name_prefix: str) -> None:
    # On a fresh store (the suite picks a fresh namespace when the connector has one) every
    # call works straight after open(), with no setup step of its own.
    rule = "rule: open() creates the schema if it is missing"
    assert await connector.get(f"{name_prefix}/missing") is None, rule
    assert await connector.head(f"{name_prefix}/missing") is None, rule
    assert [s async for s in connector.scan(f"{name_prefix}/")] == [], rule
    [result] = await connector.write([Put(f"{name_prefix}/a", 1, {"x": 1})])
    assert result.ok, rule


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
    assert snapshot is not None and snapshot.data == {"x": 1}, (
        "rule: open() on an existing store keeps what is stored"
    )


async def test_reopen_sees_data(make_connector: MakeConnector, name_prefix: str) -> None:
    name = f"{name_prefix}/kept"
    writer = await make_connector()
    await writer.write([Put(name, 3, {"kept": True})])
    await writer.close()
    reader = await make_connector()
    snapshot = await reader.get(name)
    assert snapshot == Snapshot(name, 3, {"kept": True}), "rule: what is written stays stored"


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
    assert await b.head(f"{name_prefix}/shared") == 1, (
        "rule: instances with the same URL and options share one store"
    )


async def _fails_unavailable(call: Awaitable[object], what: str, rule: str) -> None:
    try:
        await call
    except StorageUnavailable:
        return
    except Exception as exc:
        pytest.fail(f"rule: {rule}: {what} raised {type(exc).__name__}: {exc}")
    pytest.fail(f"rule: {rule}: {what} succeeded")


def _calls(
    connector: Connector | BoundedConnector, name: str
) -> list[tuple[str, Awaitable[object]]]:
    return [
        ("get", connector.get(name)),
        ("get_many", connector.get_many([name])),
        ("head", connector.head(name)),
        ("write", connector.write([Put(name, 1, {})])),
        ("scan", _first(connector.scan(name))),
    ]


async def _first(scan: AsyncIterator[Snapshot]) -> list[Snapshot]:
    return [s async for s in scan]


async def test_calls_before_open_are_unavailable(
    make_connector: MakeConnector, name_prefix: str
) -> None:
    connector = await make_connector(open=False)
    for what, call in _calls(connector, f"{name_prefix}/early"):
        await _fails_unavailable(call, f"{what} before open()", "calls before open() raise "
                                 "StorageUnavailable")  # fmt: skip
    await connector.open()
    assert await connector.get(f"{name_prefix}/early") is None, (
        "rule: a call before open() writes nothing"
    )


async def test_calls_after_close_are_unavailable(
    make_connector: MakeConnector, name_prefix: str
) -> None:
    connector = await make_connector()
    await connector.close()
    for what, call in _calls(connector, f"{name_prefix}/late"):
        await _fails_unavailable(call, f"{what} after close()", "calls after close() raise "
                                 "StorageUnavailable")  # fmt: skip


async def test_reopen_after_close(make_connector: MakeConnector, name_prefix: str) -> None:
    name = f"{name_prefix}/again"
    connector = await make_connector()
    await connector.write([Put(name, 1, {"round": 1})])
    await connector.close()
    await connector.open()
    rule = "rule: a closed connector can be opened again"
    assert await connector.get(name) == Snapshot(name, 1, {"round": 1}), rule
    [result] = await connector.write([Put(name, 2, {"round": 2})])
    assert result.ok, rule


async def test_open_twice_and_close_without_open(
    make_connector: MakeConnector, name_prefix: str
) -> None:
    never_opened = await make_connector(open=False)
    await never_opened.close()
    connector = await make_connector()
    await connector.open()  # again: harmless
    [result] = await connector.write([Put(f"{name_prefix}/x", 1, {})])
    assert result.ok, "rule: open() twice is harmless"


async def test_one_instance_serves_concurrent_calls(connector: Connector, name_prefix: str) -> None:
    """The gateway loads records while its flusher writes, on one instance: a connection that
    cannot run two commands at once needs a pool or a lock. A slow store may time out under
    the load (StorageTimeout); nothing else may fail."""
    p = name_prefix
    names = [f"{p}/{i:03d}" for i in range(16)]
    await connector.write([Put(n, 1, {"i": i}) for i, n in enumerate(names[:8])])

    async def scan_all() -> list[str]:
        return [s.name async for s in connector.scan(f"{p}/")]

    writes = [[Put(name, 2, {"i": i, "round": 2})] for i, name in enumerate(names)]
    calls: list[Awaitable[object]] = []
    for i, batch in enumerate(writes):
        calls.append(connector.write(batch))
        calls.append(connector.get(names[(i * 7) % 8]))
        calls.append(connector.head(names[(i * 3) % 8]))
        calls.append(connector.get_many(names[i : i + 5]))
        if i % 4 == 0:
            calls.append(scan_all())
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    rule = "rule: one instance accepts concurrent calls"
    wrong = [e for e in errors if not isinstance(e, StorageTimeout)]
    assert not wrong, f"{rule}: {len(wrong)} of {len(calls)} calls failed, e.g. {wrong[0]!r}"
    if errors:  # timed out under load: write again, one by one, what may not have landed
        for batch in writes:
            await connector.write(batch)
    found = await connector.get_many(names)
    assert {n: s.version for n, s in found.items()} == dict.fromkeys(names, 2), rule
