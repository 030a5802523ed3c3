"""Versioning: a put applies only over nothing or an older version; retries are idempotent."""

from __future__ import annotations

import pytest

from connectors.base import Connector, Outcome, Put, Snapshot

pytestmark = pytest.mark.asyncio


async def test_versions_rise(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/r"
    for version in (1, 2, 3):
        [result] = await connector.write([Put(name, version, {"v": version})])
        assert result.outcome is Outcome.APPLIED and result.current is None
        assert await connector.head(name) == version
    assert await connector.get(name) == Snapshot(name, 3, {"v": 3})


async def test_version_zero_creates(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/zero"
    [result] = await connector.write([Put(name, 0, {})])
    assert result.ok and await connector.head(name) == 0


async def test_gaps_are_allowed(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/gap"
    await connector.write([Put(name, 1, {"v": 1})])
    [result] = await connector.write([Put(name, 7, {"v": 7})])
    assert result.ok
    [result] = await connector.write([Put(name, 2**40, {"v": "big"})])
    assert result.ok
    assert await connector.get(name) == Snapshot(name, 2**40, {"v": "big"})


async def test_stale_put_is_refused_with_stored_snapshot(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/stale"
    await connector.write([Put(name, 3, {"v": 3})])
    stale = Put(name, 2, {"v": 2})
    [result] = await connector.write([stale])
    assert result.outcome is Outcome.CONFLICT
    assert result.op is stale
    assert result.current == Snapshot(name, 3, {"v": 3})
    assert await connector.get(name) == Snapshot(name, 3, {"v": 3})


async def test_same_version_same_data_is_an_idempotent_retry(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/retry"
    put = Put(name, 4, {"a": [1, {"b": 2}], "c": "x"})
    await connector.write([put])
    # Equal data, independently built (and with keys in another order), is the same write.
    [result] = await connector.write([Put(name, 4, {"c": "x", "a": [1, {"b": 2}]})])
    assert result.outcome is Outcome.APPLIED
    assert await connector.get(name) == Snapshot(name, 4, put.data)


async def test_same_version_different_data_conflicts(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/diverged"
    await connector.write([Put(name, 5, {"who": "first"})])
    [result] = await connector.write([Put(name, 5, {"who": "second"})])
    assert result.outcome is Outcome.CONFLICT
    assert result.current == Snapshot(name, 5, {"who": "first"})
    assert await connector.get(name) == Snapshot(name, 5, {"who": "first"})


async def test_older_after_newer_never_lands(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}/order"
    await connector.write([Put(name, 10, {"v": 10})])
    for version in (9, 1, 0, 10):
        [result] = await connector.write([Put(name, version, {"v": "old"})])
        assert result.outcome is Outcome.CONFLICT
        assert result.current == Snapshot(name, 10, {"v": 10})
    assert await connector.head(name) == 10
