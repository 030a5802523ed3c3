"""copy_records: each outcome, reruns, diverged data, and a refused record among good ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.base import Put, Snapshot
from connectors.memory import MemoryConnector
from connectors.sql import SQLConnector
from gateway.ops import copy_records
from tests.servers import require_postgres


async def _source(*snapshots: Snapshot) -> AsyncIterator[Snapshot]:
    for snapshot in snapshots:
        yield snapshot


@pytest.fixture
async def target() -> AsyncIterator[MemoryConnector]:
    async with MemoryConnector(f"memory://{uuid.uuid4().hex}") as connector:
        yield connector


async def test_every_outcome_is_counted_and_nothing_newer_is_overwritten(
    target: MemoryConnector,
) -> None:
    await target.write(
        [
            Put("same", 3, {"v": 3}),
            Put("newer", 9, {"v": 9}),
            Put("older", 1, {"v": 1}),
            Put("diverged", 2, {"v": "theirs"}),
        ]
    )
    summary = await copy_records(
        _source(
            Snapshot("new", 1, {"v": 1}),
            Snapshot("same", 3, {"v": 3}),
            Snapshot("newer", 4, {"v": 4}),
            Snapshot("older", 5, {"v": 5}),
            Snapshot("diverged", 2, {"v": "ours"}),
        ),
        target,
        batch_size=2,
    )
    assert (summary.copied, summary.up_to_date, summary.newer_in_target, summary.failed) == (
        2, 1, 1, 1,
    )  # fmt: skip
    assert summary.failures[0][0] == "diverged" and "diverged" in summary.failures[0][1]
    stored = await target.get_many(["new", "newer", "older", "diverged"])
    assert stored["newer"].data == {"v": 9} and stored["older"].data == {"v": 5}
    assert stored["diverged"].data == {"v": "theirs"}


async def test_a_second_run_changes_nothing(target: MemoryConnector) -> None:
    records = [Snapshot(f"r/{i}", i % 7, {"i": i, "s": "ü" * (i % 3)}) for i in range(1000)]
    first = await copy_records(_source(*records), target, batch_size=64)
    assert first.copied == 1000 and first.failed == 0
    again = await copy_records(_source(*records), target, batch_size=64)
    assert (again.copied, again.up_to_date, again.failed) == (0, 1000, 0)


async def test_a_name_twice_in_one_source_takes_the_later(target: MemoryConnector) -> None:
    summary = await copy_records(
        _source(Snapshot("a", 1, {"x": 1}), Snapshot("a", 2, {"x": 2})), target
    )
    assert summary.copied == 2 and (await target.get("a")) == Snapshot("a", 2, {"x": 2})


async def test_a_record_the_target_refuses_fails_alone(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    async with SQLConnector(url) as sqlite:
        summary = await copy_records(
            _source(
                Snapshot("ok/1", 1, {"a": 1}),
                Snapshot("bad", 1, {"a": "\ud800"}),  # SQLite cannot store a lone surrogate
                Snapshot("ok/2", 1, {"a": 2}),
            ),
            sqlite,
        )
        assert (summary.copied, summary.failed) == (2, 1)
        assert summary.failures[0][0] == "bad"
        assert set(await sqlite.get_many(["ok/1", "ok/2", "bad"])) == {"ok/1", "ok/2"}


async def test_a_name_the_target_cannot_hold_fails_alone_on_postgresql() -> None:
    """SQLite, MariaDB, Redis, ... hold U+0000 in names; PostgreSQL declares it cannot. Such a
    record in a migrate or import into PostgreSQL fails alone, named, and the rest of its batch
    (before and after it) is copied; before, the batch's get_many failed in PostgreSQL and the
    whole run stopped with a traceback (StorageRejected: invalid byte sequence ... 0x00)."""
    url = require_postgres()
    table = f"copy_nul_{uuid.uuid4().hex[:12]}"
    async with SQLConnector(url, table=table) as postgresql:
        try:
            summary = await copy_records(
                _source(
                    Snapshot("ok/1", 1, {"a": 1}),
                    Snapshot("bad/a\x00b", 1, {"a": 2}),
                    Snapshot("bad/a\x00", 2, {"a": 3}),
                    Snapshot("ok/2", 1, {"a": 4}),
                ),
                postgresql,
            )
            assert (summary.copied, summary.failed) == (2, 2), summary.lines()
            assert [name for name, _ in summary.failures] == ["bad/a\x00b", "bad/a\x00"]
            assert all("U+0000" in reason for _, reason in summary.failures), summary.failures
            stored = [snapshot async for snapshot in postgresql.scan("")]
            assert stored == [Snapshot("ok/1", 1, {"a": 1}), Snapshot("ok/2", 1, {"a": 4})]
            # A rerun is as safe: the good ones are up to date, the bad ones fail again.
            again = await copy_records(
                _source(Snapshot("ok/1", 1, {"a": 1}), Snapshot("bad/a\x00b", 1, {"a": 2})),
                postgresql,
            )
            assert (again.up_to_date, again.failed) == (1, 1)
        finally:
            await postgresql.drop()
