"""Conditional writes on the MongoDB stand-in (NX-27017): what goes over the wire (write
concern, one unordered bulk), races between writers, deletes, per-operation outcomes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import monitoring

from connectors.base import Delete, Outcome, Put, Snapshot
from connectors.mongodb import MongoConnector
from tests.connectors.mongodb.conftest import MakeMongo


class Commands(monitoring.CommandListener):
    """The commands PyMongo sends, per database (PyMongo's command monitoring, no mock).

    Registered globally once, at import, so every client created later reports to it."""

    def __init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = {"name": event.command_name, **event.command}
        self.sent.setdefault(event.database_name, []).append(command)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


_COMMANDS = Commands()
monitoring.register(_COMMANDS)


class Sent:
    """Commands sent to one database from now on."""

    def __init__(self, mongo: MongoConnector) -> None:
        self._all = _COMMANDS.sent.setdefault(mongo.settings.database, [])
        self._start = len(self._all)

    @property
    def commands(self) -> list[dict[str, Any]]:
        return self._all[self._start :]

    def names(self) -> list[str]:
        return [command["name"] for command in self.commands]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [command for command in self.commands if command["name"] == name]


async def _listening(mongo: MongoConnector) -> Sent:
    return Sent(mongo)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"w": "majority", "j": True}),
        ({"write_concern": "1", "journal": "false"}, {"w": 1, "j": False}),
        ({"write_concern": 2}, {"w": 2, "j": True}),
    ],
    ids=["default majority+journal", "override", "members"],
)
async def test_writes_carry_the_write_concern(
    make_mongo: MakeMongo, options: dict[str, Any], expected: dict[str, Any]
) -> None:
    mongo = await make_mongo(**options)
    assert mongo.collection.write_concern.document == expected
    listener = await _listening(mongo)
    await mongo.write([Put("a/1", 1, {}), Put("a/2", 1, {}), Delete("a/3", 1)])
    [update] = listener.named("update")
    [delete] = listener.named("delete")
    for command in (update, delete):
        assert command["writeConcern"] == expected
        assert command["ordered"] is False
    # One replace-upsert per put, filtered on _id, no fence stored (an unfenced put keeps one,
    # see test_fencing.py) and a lower version, _id in the replacement.
    assert [u["q"] for u in update["updates"]] == [
        {"_id": "a/1", "fence": {"$exists": False}, "version": {"$lt": 1}},
        {"_id": "a/2", "fence": {"$exists": False}, "version": {"$lt": 1}},
    ]
    assert all(u["upsert"] and u["u"]["_id"] == u["q"]["_id"] for u in update["updates"])
    assert delete["deletes"][0]["q"] == {"_id": "a/3", "version": {"$lte": 1}}


async def test_a_batch_is_one_bulk_when_nothing_conflicts(mongo: MongoConnector) -> None:
    listener = await _listening(mongo)
    results = await mongo.write([Put(f"b/{i}", 1, {"i": i}) for i in range(50)])
    assert all(r.ok for r in results)
    assert listener.names() == ["update"]  # no read-back


async def test_per_operation_outcomes_in_one_batch(mongo: MongoConnector) -> None:
    await mongo.write([Put("m/newer", 5, {"v": 5}), Put("m/same", 2, {"v": 2}),
                       Put("m/del-newer", 9, {"v": 9})])  # fmt: skip
    listener = await _listening(mongo)
    ops = [
        Put("m/fresh", 1, {"v": 1}),
        Put("m/newer", 3, {"v": 3}),  # stored 5: conflict
        Put("m/same", 2, {"v": 2}),  # same version, equal data: a retry, applied
        Delete("m/missing", 4),  # nothing there: applied
        Delete("m/del-newer", 8),  # stored 9: conflict
    ]
    results = await mongo.write(ops)
    assert [r.op for r in results] == ops
    assert [r.outcome for r in results] == [
        Outcome.APPLIED,
        Outcome.CONFLICT,
        Outcome.APPLIED,
        Outcome.APPLIED,
        Outcome.CONFLICT,
    ]
    assert results[1].current == Snapshot("m/newer", 5, {"v": 5})
    assert results[4].current == Snapshot("m/del-newer", 9, {"v": 9})
    # One bulk (its update and delete commands) and one read-back for everything unclear.
    assert listener.names() == ["update", "delete", "find"]


async def test_same_version_with_other_data_is_a_conflict(mongo: MongoConnector) -> None:
    await mongo.write([Put("c/1", 2, {"n": 1})])
    for other in ({"n": 2}, {"n": 1.0}, {"n": True}, {"n": 1, "extra": None}, [1]):
        [result] = await mongo.write([Put("c/1", 2, other)])
        assert result.outcome is Outcome.CONFLICT
        assert result.current == Snapshot("c/1", 2, {"n": 1})


async def test_retry_of_fallback_data_is_recognised(mongo: MongoConnector) -> None:
    data = {"$weird": {"a.b": [2**70]}}
    await mongo.write([Put("f/1", 1, data)])
    [again] = await mongo.write([Put("f/1", 1, {"$weird": {"a.b": [2**70]}})])
    assert again.ok


async def test_racing_writers_of_every_version_leave_the_highest(make_mongo: MakeMongo) -> None:
    # Nothing stored: all insert at once; a writer that loses the race for the _id to a LOWER
    # version must try again, not report a conflict (which would lose the newest write).
    writers = [await make_mongo() for _ in range(12)]
    for round_ in range(3):
        name = f"race/{round_}"
        results = await asyncio.gather(
            *(w.write([Put(name, v + 1, {"v": v + 1})]) for v, w in enumerate(writers))
        )
        outcomes = {r[0].op.version: r[0] for r in results}
        assert outcomes[len(writers)].ok, "the highest version cannot conflict"
        for version, result in outcomes.items():
            if not result.ok:
                assert result.current is not None and result.current.version >= version
        assert await writers[0].get(name) == Snapshot(name, len(writers), {"v": len(writers)})


async def test_racing_writers_of_one_version_yield_one_winner(make_mongo: MakeMongo) -> None:
    writers = [await make_mongo() for _ in range(12)]
    results = await asyncio.gather(
        *(w.write([Put("one/1", 1, {"writer": i})]) for i, w in enumerate(writers))
    )
    winners = [r[0] for r in results if r[0].ok]
    assert len(winners) == 1
    stored = await writers[0].get("one/1")
    assert stored is not None and stored.data == winners[0].op.data  # type: ignore[union-attr]


async def test_delete_then_recreate_from_any_version(mongo: MongoConnector) -> None:
    await mongo.write([Put("d/1", 7, {"v": 7})])
    [deleted] = await mongo.write([Delete("d/1", 7)])
    assert deleted.ok and await mongo.get("d/1") is None
    [again] = await mongo.write([Put("d/1", 1, {"v": 1})])
    assert again.ok and await mongo.head("d/1") == 1


async def test_non_json_in_a_batch_writes_nothing(mongo: MongoConnector) -> None:
    from connectors.base import StorageRejected

    listener = await _listening(mongo)
    with pytest.raises(StorageRejected):
        await mongo.write([Put("r/ok", 1, {}), Put("r/bad", 1, {"x": {1, 2}})])
    assert listener.commands == []


@pytest.mark.parametrize(
    ("op", "stored", "expected"),
    [
        (Put("x", 3, {"a": 1}), None, "again"),  # deleted after winning the _id: insert again
        (Put("x", 3, {"a": 1}), (2, {"a": 0}), "again"),  # a lower version won the insert race
        (Put("x", 3, {"a": 1}), (3, {"a": 1}), Outcome.APPLIED),  # a retry of what is stored
        (Put("x", 3, {"a": 1}), (3, {"a": 2}), Outcome.CONFLICT),
        (Put("x", 3, {"a": 1}), (4, {"a": 1}), Outcome.CONFLICT),
        (Delete("x", 3), None, Outcome.APPLIED),
        (Delete("x", 3), (4, {}), Outcome.CONFLICT),
        (Delete("x", 3), (3, {}), "again"),  # written after the delete ran: delete it again
    ],
)
def test_settling_what_the_bulk_left_unclear(
    op: Put | Delete, stored: tuple[int, Any] | None, expected: Outcome | str
) -> None:
    # The decision after a duplicate key or an incomplete delete, on what the read-back found.
    # (The stand-in runs one command at a time, so the races that need "again" cannot be
    # produced against it; genuine MongoDB runs concurrent upserts in parallel.)
    from datetime import UTC, datetime

    from bson import Int64

    from connectors.mongodb.documents import encode_put
    from connectors.mongodb.writes import Batch

    now = datetime.now(UTC)
    encoded = (
        {} if isinstance(op, Delete) else {0: encode_put(op.name, op.version, op.data, now, Int64)}
    )
    document = None
    if stored is not None:
        document = encode_put("x", stored[0], stored[1], now, Int64).document
    result = Batch([op], encoded)._settle(0, document)
    if expected == "again":
        assert result is None
    else:
        assert result is not None and result.outcome is expected
        if expected is Outcome.CONFLICT:
            assert stored is not None and result.current == Snapshot("x", *stored)
