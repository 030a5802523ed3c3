"""Batches: large batches work, results are per operation and in order."""

from __future__ import annotations

import pytest

from connectors.base import Connector, Delete, Outcome, Put, RawReader

pytestmark = pytest.mark.asyncio

SIZE = 1000


async def test_empty_batch(connector: Connector) -> None:
    assert await connector.write([]) == []


async def test_batch_of_1000_puts(connector: Connector, name_prefix: str) -> None:
    ops = [Put(f"{name_prefix}/{i:04d}", 1, {"i": i, "tags": ["a", "b"]}) for i in range(SIZE)]
    results = await connector.write(ops)
    assert [r.op for r in results] == ops
    assert all(r.outcome is Outcome.APPLIED for r in results)
    stored = await connector.get_many(op.name for op in ops)
    assert len(stored) == SIZE
    assert all(stored[op.name].data == op.data for op in ops)


async def test_batch_of_1000_half_conflicting(connector: Connector, name_prefix: str) -> None:
    names = [f"{name_prefix}/{i:04d}" for i in range(SIZE)]
    await connector.write([Put(n, 5, {"v": 5}) for n in names[::2]])
    ops = [Put(n, 3, {"v": 3}) for n in names]
    results = await connector.write(ops)
    for i, result in enumerate(results):
        if i % 2 == 0:
            assert result.outcome is Outcome.CONFLICT and result.current is not None
            assert result.current.version == 5
        else:
            assert result.outcome is Outcome.APPLIED


async def test_batch_of_1000_deletes(connector: Connector, name_prefix: str) -> None:
    names = [f"{name_prefix}/{i:04d}" for i in range(SIZE)]
    await connector.write([Put(n, 1, {}) for n in names])
    results = await connector.write([Delete(n, 1) for n in names])
    assert all(r.ok for r in results)
    assert await connector.get_many(names) == {}


@pytest.mark.requires("raw")
async def test_batch_lands_in_raw_layout(
    connector: Connector, raw_reader: RawReader, name_prefix: str
) -> None:
    await connector.write([Put(f"{name_prefix}/{i:04d}", 1, {"i": i}) for i in range(SIZE)])
    assert await raw_reader.count_raw(name_prefix) == SIZE
