"""Batches: large batches work, results are per operation and in order."""

from __future__ import annotations

import pytest

from connectors.base import Connector, Delete, Outcome, Put, RawReader, Snapshot

pytestmark = pytest.mark.asyncio

SIZE = 1000


async def test_empty_batch(connector: Connector) -> None:
    assert await connector.write([]) == [], "rule: an empty batch has no results"


async def test_batch_of_1000_puts(connector: Connector, name_prefix: str) -> None:
    ops = [Put(f"{name_prefix}/{i:04d}", 1, {"i": i, "tags": ["a", "b"]}) for i in range(SIZE)]
    results = await connector.write(ops)
    rule = "rule: a batch of 1000 puts over nothing applies every put"
    assert [r.op for r in results] == ops, "rule: one result per operation, in the order given"
    assert all(r.outcome is Outcome.APPLIED for r in results), rule
    stored = await connector.get_many(op.name for op in ops)
    assert len(stored) == SIZE, rule
    assert all(stored[op.name].data == op.data for op in ops), rule


async def test_batch_of_1000_half_conflicting(connector: Connector, name_prefix: str) -> None:
    names = [f"{name_prefix}/{i:04d}" for i in range(SIZE)]
    await connector.write([Put(n, 5, {"v": 5}) for n in names[::2]])
    ops = [Put(n, 3, {"v": 3}) for n in names]
    results = await connector.write(ops)
    rule = "rule: results are per operation: one batch can partly succeed"
    for i, result in enumerate(results):
        if i % 2 == 0:
            assert result.outcome is Outcome.CONFLICT and result.current is not None, rule
            assert result.current == Snapshot(names[i], 5, {"v": 5}), rule
        else:
            assert result.outcome is Outcome.APPLIED, rule


async def test_batch_of_1000_deletes(connector: Connector, name_prefix: str) -> None:
    names = [f"{name_prefix}/{i:04d}" for i in range(SIZE)]
    await connector.write([Put(n, 1, {}) for n in names])
    results = await connector.write([Delete(n, 1) for n in names])
    rule = "rule: a batch of deletes removes every record"
    assert all(r.ok for r in results), rule
    assert await connector.get_many(names) == {}, rule


@pytest.mark.requires("raw")
async def test_batch_lands_in_raw_layout(
    connector: Connector, raw_reader: RawReader, name_prefix: str
) -> None:
    await connector.write([Put(f"{name_prefix}/{i:04d}", 1, {"i": i}) for i in range(SIZE)])
    assert await raw_reader.count_raw(name_prefix) == SIZE, (
        "rule: every applied put is one stored item in the layout"
    )
