"""Merge conflicts and concurrency: concurrent writers of one version yield exactly one winner."""

from __future__ import annotations

import asyncio
import random

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
    assert len(winners) == 1, f"{len(winners)} writers won"
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
    assert [r.op for r in results] == ops
    assert [r.outcome for r in results] == [
        Outcome.APPLIED,
        Outcome.CONFLICT,
        Outcome.APPLIED,
        Outcome.CONFLICT,
        Outcome.APPLIED,
        Outcome.APPLIED,
    ]
    assert results[1].current == Snapshot(f"{p}/stale", 5, {"s": 5})
    assert results[3].current == Snapshot(f"{p}/newer", 9, {"n": 9})
    stored = await connector.get_many([f"{p}/{n}" for n in ("new", "stale", "newer", "old")])
    assert {n: (s.version, s.data) for n, s in stored.items()} == {
        f"{p}/new": (1, {"fresh": True}),
        f"{p}/stale": (5, {"s": 5}),
        f"{p}/newer": (9, {"n": 9}),
        f"{p}/old": (2, {"o": 2}),
    }
