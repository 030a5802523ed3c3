"""Prefix scan: every match, in code-point name order, with ``%``/``_`` taken literally."""

from __future__ import annotations

import pytest

from connectors.base import Connector, Put, Snapshot

pytestmark = pytest.mark.asyncio


async def _names(connector: Connector, prefix: str) -> list[str]:
    return [s.name async for s in connector.scan(prefix)]


async def test_scan_in_name_order(connector: Connector, name_prefix: str) -> None:
    tails = ["b", "a", "Z", "a/b", "a/a", "é", "z", "ü", "🙂", "\uff21", "0", "a b", "a-b"]
    names = [f"{name_prefix}/{t}" for t in tails]
    await connector.write([Put(n, 1, {"n": n}) for n in names])
    assert await _names(connector, f"{name_prefix}/") == sorted(names)


async def test_scan_returns_snapshots(connector: Connector, name_prefix: str) -> None:
    await connector.write([Put(f"{name_prefix}/x", 4, [1, 2])])
    assert [s async for s in connector.scan(f"{name_prefix}/")] == [
        Snapshot(f"{name_prefix}/x", 4, [1, 2])
    ]


async def test_scan_prefix_is_a_prefix(connector: Connector, name_prefix: str) -> None:
    p = name_prefix
    names = [f"{p}/user", f"{p}/user/1", f"{p}/user/2", f"{p}/users/1", f"{p}/usex", f"{p}/us"]
    await connector.write([Put(n, 1, {}) for n in names])
    assert await _names(connector, f"{p}/user/") == [f"{p}/user/1", f"{p}/user/2"]
    assert await _names(connector, f"{p}/user") == [
        f"{p}/user",
        f"{p}/user/1",
        f"{p}/user/2",
        f"{p}/users/1",
    ]
    assert await _names(connector, f"{p}/nothing") == []


async def test_scan_wildcard_characters_are_literal(connector: Connector, name_prefix: str) -> None:
    p = name_prefix
    names = [f"{p}/a%b", f"{p}/aXb", f"{p}/a_c", f"{p}/abc", f"{p}/a\\d", f"{p}/a[e]", f"{p}/a*f"]
    await connector.write([Put(n, 1, {}) for n in names])
    assert await _names(connector, f"{p}/a%") == [f"{p}/a%b"]
    assert await _names(connector, f"{p}/a_") == [f"{p}/a_c"]
    assert await _names(connector, f"{p}/a\\") == [f"{p}/a\\d"]
    assert await _names(connector, f"{p}/a[") == [f"{p}/a[e]"]
    assert await _names(connector, f"{p}/a*") == [f"{p}/a*f"]
    assert await _names(connector, f"{p}/A") == []  # case-sensitive


async def test_scan_unicode_prefix(connector: Connector, name_prefix: str) -> None:
    p = name_prefix
    names = [f"{p}/ü/1", f"{p}/ü/2", f"{p}/u/1", f"{p}/üx", f"{p}/\U0010ffff/1", f"{p}/\U0010ffff"]
    await connector.write([Put(n, 1, {}) for n in names])
    assert await _names(connector, f"{p}/ü/") == [f"{p}/ü/1", f"{p}/ü/2"]
    assert await _names(connector, f"{p}/\U0010ffff") == [f"{p}/\U0010ffff", f"{p}/\U0010ffff/1"]


async def test_scan_many_pages(connector: Connector, name_prefix: str) -> None:
    names = [f"{name_prefix}/{i:05d}" for i in range(1234)]
    await connector.write([Put(n, 1, {"i": i}) for i, n in enumerate(names)])
    assert await _names(connector, f"{name_prefix}/") == names


async def test_empty_prefix_scans_everything(connector: Connector, name_prefix: str) -> None:
    await connector.write([Put(f"{name_prefix}/one", 1, {})])
    everything = await _names(connector, "")
    assert f"{name_prefix}/one" in everything
    assert everything == sorted(everything)
