"""Merge conflicts and concurrency: concurrent writers of one version yield exactly one winner."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from conformance.plugin import MakeConnector
from connectors.base import Connector, Delete, Outcome, Put, Snapshot

pytestmark = pytest.mark.asyncio

WRITERS = 20


async def test_concurrent_writers_one_winner(
    make_connector: MakeConnector, name_prefix: str
) -> None:
    name = f"{name_prefix}/contended"
    # Separate instances (separate connections), so the database itself must arbitrate.
    writers = [await make_connector() for _ in range(WRITERS)]
    results = await asyncio.gather(
        *(w.write([Put(name, 1, {"writer": i})]) for i, w in enumerate(writers))
    )
    outcomes = [r for [r] in results]
    winners = [r for r in outcomes if r.outcome is Outcome.APPLIED]
    assert len(winners) == 1, (
        f"rule: concurrent writers of one version (separate instances) yield exactly one "
        f"winner: {len(winners)} writers won"
    )
    winner = winners[0].op
    assert isinstance(winner, Put)
    expected = Snapshot(name, 1, winner.data)
    for result in outcomes:
        if result.outcome is Outcome.CONFLICT:
            assert result.current == expected
    assert await writers[0].get(name) == expected


async def test_concurrent_versions_newest_wins(
    make_connector: MakeConnector, name_prefix: str
) -> None:
    name = f"{name_prefix}/racing"
    writers = [await make_connector() for _ in range(WRITERS)]
    versions = list(range(1, WRITERS + 1))
    random.Random(7).shuffle(versions)
    results = await asyncio.gather(
        *(w.write([Put(name, v, {"v": v})]) for w, v in zip(writers, versions, strict=True))
    )
    by_version = {r.op.version: r for [r] in results}
    assert by_version[WRITERS].ok, "the newest version must always apply"
    for result in by_version.values():
        if not result.ok:
            assert result.current is not None and result.current.version >= result.op.version
    assert await writers[0].get(name) == Snapshot(name, WRITERS, {"v": WRITERS})


async def test_batch_with_mixed_outcomes(connector: Connector, name_prefix: str) -> None:
    p = name_prefix
    await connector.write(
        [
            Put(f"{p}/stale", 5, {"s": 5}),
            Put(f"{p}/retry", 2, {"r": 2}),
            Put(f"{p}/newer", 9, {"n": 9}),
            Put(f"{p}/old", 1, {"o": 1}),
        ]
    )
    ops: list[Put | Delete] = [
        Put(f"{p}/new", 1, {"fresh": True}),  # applied: nothing stored
        Put(f"{p}/stale", 4, {"s": 4}),  # conflict: 5 is stored
        Put(f"{p}/retry", 2, {"r": 2}),  # applied: idempotent retry
        Delete(f"{p}/newer", 3),  # conflict: 9 is stored
        Delete(f"{p}/missing", 1),  # applied: nothing to delete
        Put(f"{p}/old", 2, {"o": 2}),  # applied: update
    ]
    results = await connector.write(ops)
    assert [r.op for r in results] == ops, "rule: one result per operation, in the order given"
    assert [r.outcome for r in results] == [
        Outcome.APPLIED,
        Outcome.CONFLICT,
        Outcome.APPLIED,
        Outcome.CONFLICT,
        Outcome.APPLIED,
        Outcome.APPLIED,
    ], "rule: results are per operation: one batch can partly succeed"
    assert results[1].current == Snapshot(f"{p}/stale", 5, {"s": 5})
    assert results[3].current == Snapshot(f"{p}/newer", 9, {"n": 9})
    stored = await connector.get_many([f"{p}/{n}" for n in ("new", "stale", "newer", "old")])
    assert {n: (s.version, s.data) for n, s in stored.items()} == {
        f"{p}/new": (1, {"fresh": True}),
        f"{p}/stale": (5, {"s": 5}),
        f"{p}/newer": (9, {"n": 9}),
        f"{p}/old": (2, {"o": 2}),
    }


async def test_concurrent_batches_on_one_instance_one_winner(
    connector: Connector, name_prefix: str
) -> None:
    """The same race through one instance (its pool or its lock): still exactly one winner."""
    names = [f"{name_prefix}/one-{i}" for i in range(5)]
    batches = [[Put(n, 1, {"writer": w}) for n in names] for w in range(WRITERS)]
    results = await asyncio.gather(*(connector.write(batch) for batch in batches))
    rule = "rule: concurrent writers of one version yield exactly one winner"
    for i, name in enumerate(names):
        winners = [r[i] for r in results if r[i].outcome is Outcome.APPLIED]
        assert len(winners) == 1, f"{rule}: {len(winners)} winners for {name}"
        stored = await connector.get(name)
        assert stored == winners[0].op, f"{rule}: the winner is what is stored"
        for batch in results:
            if batch[i].outcome is Outcome.CONFLICT:
                assert batch[i].current == stored, f"{rule}: conflicts carry the winner"


async def test_results_follow_the_order_given(connector: Connector, name_prefix: str) -> None:
    """Not the database's order (by name, by key hash, applied first): the order of ``ops``."""
    p = name_prefix
    count = 60
    names = [f"{p}/{i:03d}" for i in range(count)]
    await connector.write([Put(n, 5, {"stored": i}) for i, n in enumerate(names) if i % 3 == 0])
    ops: list[Put | Delete] = []
    for i, name in reversed(list(enumerate(names))):
        if i % 3 == 0:
            ops.append(Put(name, 4, {"stale": i}))  # conflict
        elif i % 3 == 1:
            ops.append(Put(name, 1, {"new": i}))  # applied
        else:
            ops.append(Delete(name, 1))  # applied: nothing to delete
    results = await connector.write(ops)
    rule = "rule: write returns one result per operation, in the order given"
    assert len(results) == len(ops), f"{rule}: {len(results)} results for {len(ops)} ops"
    for op, result in zip(ops, results, strict=True):
        assert result.op == op, f"{rule}: result for {result.op} where {op} was given"
        index = int(op.name.rsplit("/", 1)[1])
        if index % 3 == 0:
            assert result.outcome is Outcome.CONFLICT, f"{rule}: {op}"
            assert result.current == Snapshot(op.name, 5, {"stored": index}), (
                f"rule: a conflict carries the stored snapshot of its own name: {op}"
            )
        else:
            assert result.outcome is Outcome.APPLIED, f"{rule}: {op}"
            assert result.current is None


async def test_conflict_leaves_the_callers_data_alone(
    connector: Connector, name_prefix: str
) -> None:
    name = f"{name_prefix}/mine"
    await connector.write([Put(name, 2, {"theirs": [1]})])
    mine: dict[str, Any] = {"mine": {"nested": [1, 2]}}
    [result] = await connector.write([Put(name, 1, mine)])
    assert result.outcome is Outcome.CONFLICT
    assert mine == {"mine": {"nested": [1, 2]}}, "rule: the caller's data is never mutated"
    assert result.current is not None
    current = result.current.data
    assert isinstance(current, dict)
    current["theirs"].append(2)  # the conflict's snapshot is the caller's to change
    assert await connector.get(name) == Snapshot(name, 2, {"theirs": [1]}), (
        "rule: what a result or a read returns shares nothing with what is stored"
    )
