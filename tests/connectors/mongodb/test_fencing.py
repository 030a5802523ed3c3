"""Fenced writes on the MongoDB stand-in (NX-27017), where the conformance suite cannot look: the
documents data teams see (``fence`` as int64, tombstones), the data-team queries skipping
tombstones, the filters sent (the stand-in's ``$or`` gap), an idempotent retry's fence raise
racing another writer, and fences surviving a SIGKILL of the (file-backed) stand-in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson import Int64
from bson.codec_options import CodecOptions

import connectors.mongodb.writes as writes
from connectors.base import Delete, Outcome, Put, Snapshot, StorageRejected
from connectors.mongodb import DATA_TEAM_QUERY, MongoConnector
from connectors.mongodb.documents import LIVE, encode_put, encode_tombstone
from connectors.mongodb.writes import Batch, Raise
from tests.connectors.mongodb.conftest import MakeMongo
from tests.connectors.mongodb.test_writes import Sent  # its command listener, registered early
from tests.standins.mongodb import MongoStandin, require_standin

TOP = 2**63 - 1


async def _stored(mongo: MongoConnector, name: str) -> dict[str, Any] | None:
    """The document as a data team's PyMongo returns it (default codec: int64 is ``Int64``)."""
    collection = mongo.collection.with_options(codec_options=CodecOptions(tz_aware=True))
    return await collection.find_one({"_id": name})


async def test_fence_and_tombstone_documents(mongo: MongoConnector) -> None:
    [put] = await mongo.write([Put("user/1", 3, {"age": 40}, fence=TOP - 1)])
    assert put.ok
    document = await _stored(mongo, "user/1")
    assert document is not None
    # int64 (what is sent is Int64 always; the stand-in answers small ones as int32).
    assert type(document["fence"]) is Int64 and document["fence"] == TOP - 1
    # A fenced delete replaces the record with a tombstone: name and fence, nothing else.
    [deleted] = await mongo.write([Delete("user/1", 3, fence=TOP)])
    assert deleted.ok
    assert await _stored(mongo, "user/1") == {"_id": "user/1", "tombstone": True, "fence": TOP}
    assert type((await _stored(mongo, "user/1") or {})["fence"]) is Int64
    # Deleting a name never stored leaves one too.
    [never] = await mongo.write([Delete("user/never", 0, fence=5)])
    assert never.ok
    assert await _stored(mongo, "user/never") == {
        "_id": "user/never",
        "tombstone": True,
        "fence": 5,
    }
    # An unfenced delete removes a record without a fence entirely (as before fencing).
    await mongo.write([Put("user/plain", 1, {})])
    await mongo.write([Delete("user/plain", 1)])
    assert await _stored(mongo, "user/plain") is None


async def test_data_team_queries_see_records_only(make_mongo: MakeMongo) -> None:
    mongo = await make_mongo()
    await mongo.write([
        Put("user/alice", 1, {"age": 31}, fence=1),
        Put("user/old", 1, {"age": 70}, fence=1),
        Put("pet/rex", 1, {"age": 99}),
    ])  # fmt: skip
    await mongo.write([Delete("user/old", 1, fence=2), Delete("user/gone", 0, fence=2)])
    records = mongo.collection.database["records"]
    found = [doc["_id"] async for doc in records.find(DATA_TEAM_QUERY).sort({"_id": 1})]
    assert found == ["user/alice"]
    # The documented filter for records only (docs/connectors.md), and what it leaves out.
    live = [doc["_id"] async for doc in records.find(LIVE).sort({"_id": 1})]
    assert live == ["pet/rex", "user/alice"]
    assert LIVE == {"tombstone": {"$exists": False}}
    tombstones = [doc["_id"] async for doc in records.find({"tombstone": True}).sort({"_id": 1})]
    assert tombstones == ["user/gone", "user/old"]
    assert await records.count_documents({"collection": "user"}) == 1


async def test_unfenced_puts_keep_the_stored_fence(mongo: MongoConnector) -> None:
    """Over a fenced record and over a tombstone, also with another fenced record stored that
    the stand-in's unparenthesised ``$or`` matched (it overwrote that one with a copy of the
    put, under the put's ``_id``), so every ``$or`` is sent inside an ``$and``."""
    await mongo.write([Put("a", 1, {"a": 1}, fence=7), Delete("b", 0, fence=7)])
    listener = Sent(mongo)
    [over_tombstone] = await mongo.write([Put("b", 5, {"u": 1})])
    [over_record] = await mongo.write([Put("a", 2, {"a": 2})])
    assert over_tombstone.ok and over_record.ok
    a = await _stored(mongo, "a")
    assert a is not None and a.pop("updated_at")
    assert a == {"_id": "a", "collection": "_default", "version": 2, "fence": 7, "data": {"a": 2}}
    b = await _stored(mongo, "b")
    assert b is not None and b["version"] == 5 and b["fence"] == 7 and "tombstone" not in b
    assert await mongo.collection.count_documents({}) == 2
    assert [await mongo.get(n) for n in ("a", "b")] == [
        Snapshot("a", 2, {"a": 2}),
        Snapshot("b", 5, {"u": 1}),
    ]
    [refused] = await mongo.write([Put("b", 6, {}, fence=6)])
    assert refused.outcome is Outcome.FENCED and refused.fence == 7
    filters = [u["q"] for command in listener.named("update") for u in command["updates"]]
    assert any(q.get("fence") == 7 for q in filters), filters  # the pinned second round
    assert all("$or" not in q for q in filters), filters


async def test_an_idempotent_retry_raises_the_fence_and_nothing_else(
    mongo: MongoConnector,
) -> None:
    await mongo.write([Put("r", 4, {"a": 1, "b": 2}, fence=3)])
    before = await _stored(mongo, "r")
    # The same data in another key order: equal data, so a retry; the fence goes up.
    [retry] = await mongo.write([Put("r", 4, {"b": 2, "a": 1}, fence=9)])
    assert retry.outcome is Outcome.APPLIED
    after = await _stored(mongo, "r")
    assert before is not None and after is not None
    assert after == {**before, "fence": 9}  # same data, key order, updated_at
    [lower] = await mongo.write([Put("r", 5, {}, fence=8)])
    assert lower.outcome is Outcome.FENCED and lower.fence == 9
    assert lower.current == Snapshot("r", 4, {"a": 1, "b": 2})


async def test_a_fence_raise_misses_a_document_replaced_after_it_was_read(
    make_mongo: MakeMongo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The raise is pinned to the document read (version, fence, ``updated_at``): replaced in
    between by another writer (same version, other data), the retry is not applied to it but
    settled again: a conflict. (The other writer's fences move the stored fence: the
    stand-in compares ``updated_at`` in an update's filter to the second only, see
    test_standin_gaps_met_by_fencing.)"""
    mongo = await make_mongo()
    other = await make_mongo()
    await mongo.write([Put("r", 4, {"a": 1}, fence=3)])
    read_back = writes._read_back
    interfered = False

    async def read_then_replace(collection: Any, names: list[str]) -> Any:
        nonlocal interfered
        found = await read_back(collection, names)
        if not interfered:
            interfered = True
            assert all(r.ok for r in await other.write([Delete("r", 4, fence=4)]))
            assert all(r.ok for r in await other.write([Put("r", 4, {"a": 2}, fence=4)]))
        return found

    monkeypatch.setattr(writes, "_read_back", read_then_replace)
    [retry] = await mongo.write([Put("r", 4, {"a": 1}, fence=5)])
    assert interfered
    assert retry.outcome is Outcome.CONFLICT and retry.current == Snapshot("r", 4, {"a": 2})
    stored = await _stored(mongo, "r")
    assert stored is not None and stored["fence"] == 4 and stored["data"] == {"a": 2}


async def test_standin_gaps_met_by_fencing(mongo: MongoConnector) -> None:
    """What the stand-in does wrong that fencing ran into (docs/connectors.md lists both). If
    this fails, the stand-in changed: update the docs and the tests that work around it."""
    records = mongo.collection
    earlier = datetime(2026, 1, 1, 0, 0, 0, 100000, tzinfo=UTC)
    later = datetime(2026, 1, 1, 0, 0, 0, 900000, tzinfo=UTC)  # the same second
    await records.insert_many([
        {"_id": "a", "version": Int64(1), "fence": Int64(7), "updated_at": earlier},
        {"_id": "b", "tombstone": True, "fence": Int64(7)},
    ])  # fmt: skip
    # 1. An update's filter compares datetimes to the second (reads to the millisecond).
    assert await records.count_documents({"_id": "a", "updated_at": later}) == 0
    result = await records.update_one({"_id": "a", "updated_at": later}, {"$set": {"x": 1}})
    assert result.matched_count == 1  # MongoDB: 0
    next_second = datetime(2026, 1, 1, 0, 0, 1, 100000, tzinfo=UTC)
    result = await records.update_one({"_id": "a", "updated_at": next_second}, {"$set": {"x": 2}})
    assert result.matched_count == 0
    # 2. A $or beside other terms loses its parentheses in a replace: "_id = b AND fence = 7
    # AND tombstone OR version < 5" matches "a", which is overwritten under _id "b".
    await records.replace_one(
        {"_id": "b", "fence": 7, "$or": [{"tombstone": True}, {"version": {"$lt": 5}}]},
        {"_id": "b", "version": Int64(5)},
    )
    assert await records.count_documents({"_id": "b"}) == 2  # MongoDB: 1 (and "a" untouched)


@pytest.mark.parametrize("fence", [-1, 2**63, True, 1.0, "7"])
async def test_fences_outside_int64_are_rejected_before_writing(
    mongo: MongoConnector, fence: Any
) -> None:
    for bad in (Put("bad", 1, {}, fence=fence), Delete("bad", 1, fence=fence)):
        with pytest.raises(StorageRejected, match="fence"):
            await mongo.write([Put("ok", 1, {}), bad])
        assert await mongo.collection.count_documents({}) == 0


NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _document(name: str, version: int, data: Any, fence: int | None) -> dict[str, Any]:
    return encode_put(name, version, data, NOW, Int64, fence).document


@pytest.mark.parametrize(
    ("op", "stored", "expected"),
    [
        (Put("x", 3, {"a": 1}, fence=5), _document("x", 2, {}, 6), (Outcome.FENCED, 6, True)),
        (Put("x", 3, {"a": 1}, fence=5), {"_id": "x", "tombstone": True, "fence": 6},
         (Outcome.FENCED, 6, False)),
        (Delete("x", 3, fence=5), {"_id": "x", "tombstone": True, "fence": 9},
         (Outcome.FENCED, 9, False)),
        (Delete("x", 3, fence=5), _document("x", 9, {}, 9), (Outcome.FENCED, 9, True)),
        (Delete("x", 3, fence=5), _document("x", 9, {}, 5), (Outcome.CONFLICT, None, True)),
        (Put("x", 3, {"a": 1}, fence=5), _document("x", 3, {"a": 1}, 5), Outcome.APPLIED),
        (Put("x", 3, {"a": 1}, fence=5), _document("x", 3, {"a": 1}, 2), "raise"),
        (Put("x", 3, {"a": 1}, fence=5), _document("x", 3, {"a": 1}, None), "raise"),
        (Put("x", 3, {"a": 1}, fence=5), _document("x", 3, {"a": 2}, 2),
         (Outcome.CONFLICT, None, True)),
        # Admitted by the filter now (a lower version, a tombstone, nothing): written
        # meanwhile, or deleted: send it again.
        (Put("x", 3, {"a": 1}, fence=5), _document("x", 2, {}, 5), "again"),
        (Put("x", 3, {"a": 1}, fence=5), {"_id": "x", "tombstone": True, "fence": 5}, "again"),
        (Put("x", 3, {"a": 1}, fence=5), None, "again"),
        (Delete("x", 3, fence=5), None, "again"),  # the tombstone still has to be written
        (Delete("x", 3, fence=5), {"_id": "x", "tombstone": True, "fence": 4}, "again"),
        (Delete("x", 3, fence=5), _document("x", 3, {}, 4), "again"),
        # Unfenced: fences do not count, but an unfenced put keeps the stored one.
        (Put("x", 3, {"a": 1}), {"_id": "x", "tombstone": True, "fence": 6}, ("pin", 6)),
        (Put("x", 3, {"a": 1}), _document("x", 2, {}, 9), ("pin", 9)),
        (Put("x", 3, {"a": 1}), _document("x", 3, {"a": 1}, 9), Outcome.APPLIED),
        (Put("x", 3, {"a": 1}), _document("x", 4, {}, 9), (Outcome.CONFLICT, None, True)),
        (Delete("x", 3), {"_id": "x", "tombstone": True, "fence": 6}, Outcome.APPLIED),
    ],
)  # fmt: skip
def test_settling_fenced_writes(op: Put | Delete, stored: Any, expected: Any) -> None:
    """The decision after a refused write, on what the read-back found. (The stand-in runs one
    command at a time: the races that need "again" cannot be produced against it.)"""
    encoded = {} if isinstance(op, Delete) else {0: encode_put(op.name, op.version, op.data,
                                                               NOW, Int64, op.fence)}  # fmt: skip
    tombstones = {} if op.fence is None or not isinstance(op, Delete) else {
        0: encode_tombstone(op.name, op.fence, Int64)}  # fmt: skip
    batch = Batch([op], encoded, tombstones)
    result = batch._settle(0, stored)
    if expected == "again":
        assert result is None
    elif expected == "raise":
        assert isinstance(result, Raise) and result.fence == 5
        # Pinned to exactly the document read.
        assert result.filter["version"] == stored["version"]
        assert result.filter["updated_at"] == stored["updated_at"]
        assert result.filter["fence"] == (stored.get("fence") or {"$exists": False})
    elif isinstance(expected, tuple) and expected[0] == "pin":
        assert result is None and batch.pins == {0: expected[1]}
        assert batch._request(0)._filter["fence"] == expected[1]
        assert batch._request(0)._doc["fence"] == expected[1]
    elif isinstance(expected, Outcome):
        assert not isinstance(result, Raise) and result is not None
        assert result.outcome is expected and result.fence is None
    else:
        outcome, fence, has_current = expected
        assert not isinstance(result, Raise) and result is not None
        assert result.outcome is outcome and result.fence == fence
        assert (result.current is not None) == has_current


@pytest.mark.timeout(120)
async def test_fences_survive_a_killed_server(tmp_path: Path) -> None:
    require_standin()
    standin = MongoStandin(tmp_path, path=tmp_path / "standin.db").start()
    try:
        async with MongoConnector(standin.url("fenced"), timeout=5) as mongo:
            results = await mongo.write([
                Put("kept", 1, {"v": 1}, fence=TOP),
                Delete("gone", 0, fence=12),
            ])  # fmt: skip
            assert all(r.ok for r in results)
        standin.kill()  # SIGKILL
        standin.start()
        async with MongoConnector(standin.url("fenced"), timeout=5) as mongo:
            results = await mongo.write([
                Put("kept", 2, {"v": 2}, fence=TOP - 1),
                Put("gone", 1, {"again": True}, fence=11),
            ])  # fmt: skip
            assert [(r.outcome, r.fence) for r in results] == [
                (Outcome.FENCED, TOP),
                (Outcome.FENCED, 12),
            ]
            assert await mongo.get("kept") == Snapshot("kept", 1, {"v": 1})
            assert await mongo.get("gone") is None
    finally:
        standin.kill()


async def test_concurrent_fenced_writers_of_one_name(make_mongo: MakeMongo) -> None:
    """Four connectors (clients) race twelve puts of one name; a higher fence carries a lower
    version. The first to land applies; after it every lower fence is FENCED (whatever its
    version) and every higher one a CONFLICT (its version is lower): exactly one winner."""
    writers = [await make_mongo() for _ in range(4)]
    fences = [5, 3, 9, 1, 7, 2, 8, 4, 6, 10, 0, 11]

    async def write(index: int, fence: int) -> tuple[int, Outcome, int | None]:
        op = Put("race", 100 - fence, {"f": fence}, fence=fence)
        [result] = await writers[index % 4].write([op])
        return fence, result.outcome, result.fence

    outcomes = await asyncio.gather(*(write(i, f) for i, f in enumerate(fences)))
    [winner] = [fence for fence, outcome, _ in outcomes if outcome is Outcome.APPLIED]
    for fence, outcome, stored_fence in outcomes:
        if fence < winner:
            assert (outcome, stored_fence) == (Outcome.FENCED, winner)
        elif fence > winner:
            assert (outcome, stored_fence) == (Outcome.CONFLICT, None)
    stored = await _stored(writers[0], "race")
    assert stored is not None and (stored["fence"], stored["data"]) == (winner, {"f": winner})
