"""Deletion: removes unless something newer is stored; missing is fine; names can come back."""

from __future__ import annotations

import pytest

from connectors.base import Connector, Delete, Outcome, Put, RawReader, Snapshot

pytestmark = pytest.mark.asyncio


async def test_delete_existing(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/gone"
    await connector.write([Put(name, 2, {"x": 1})])
    [result] = await connector.write([Delete(name, 2)])
    rule = "rule: Delete of the stored version removes the record"
    assert result.outcome is Outcome.APPLIED, rule
    assert await connector.get(name) is None, rule
    assert await connector.head(name) is None, rule
    assert await connector.get_many([name]) == {}, rule


async def test_delete_with_newer_version_than_stored(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/gone"
    await connector.write([Put(name, 2, {"x": 1})])
    [result] = await connector.write([Delete(name, 3)])
    assert result.ok and await connector.get(name) is None


async def test_delete_missing_succeeds(connector: Connector, name_prefix: str) -> None:
    [result] = await connector.write([Delete(f"{name_prefix}/never", 1)])
    assert result.outcome is Outcome.APPLIED, "rule: deleting a missing record succeeds"


async def test_stale_delete_is_refused(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/kept"
    await connector.write([Put(name, 5, {"keep": True})])
    [result] = await connector.write([Delete(name, 4)])
    rule = "rule: a Delete under a newer stored version is a conflict carrying the stored snapshot"
    assert result.outcome is Outcome.CONFLICT, rule
    assert result.current == Snapshot(name, 5, {"keep": True}), rule
    assert await connector.get(name) == Snapshot(name, 5, {"keep": True}), rule


async def test_recreate_after_delete(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/phoenix"
    await connector.write([Put(name, 3, {"life": 1})])
    await connector.write([Delete(name, 3)])
    [result] = await connector.write([Put(name, 1, {"life": 2})])  # versions start over
    rule = "rule: a deleted record can be created again, from any version"
    assert result.ok, rule
    assert await connector.get(name) == Snapshot(name, 1, {"life": 2}), rule


async def test_siblings_untouched(connector: Connector, name_prefix: str) -> None:
    names = [f"{name_prefix}/a", f"{name_prefix}/a/b", f"{name_prefix}/ab", f"{name_prefix}/b"]
    await connector.write([Put(n, 1, {"n": n}) for n in names])
    await connector.write([Delete(f"{name_prefix}/a", 1)])
    assert [s.name async for s in connector.scan(f"{name_prefix}/")] == names[1:]


@pytest.mark.requires("raw")
async def test_deleted_gone_from_scan_and_raw_layout(
    connector: Connector, raw_reader: RawReader, name_prefix: str
) -> None:
    name = f"{name_prefix}/raw"
    await connector.write([Put(name, 1, {"x": 1}), Put(f"{name_prefix}/other", 1, {})])
    assert await raw_reader.read_raw(name) is not None
    await connector.write([Delete(name, 1)])
    assert await raw_reader.read_raw(name) is None
    assert await raw_reader.count_raw(name_prefix) == 1
    assert [s.name async for s in connector.scan(name_prefix)] == [f"{name_prefix}/other"]
