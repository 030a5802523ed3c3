"""The stored documents as a data team sees them through PyMongo, on the MongoDB stand-in
(NX-27017): native ``data`` where BSON is faithful, exact JSON text in ``data_json`` where not,
and every case round-trips exactly through the connector."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.base import Put, Snapshot
from connectors.mongodb import MongoConnector
from tests.connectors.mongodb.test_documents import FALLBACK, NATIVE


def _same(got: Any, want: Any) -> None:
    """Equal, with the same types (1, 1.0 and True apart) and the same key order."""
    assert type(got) is type(want) or (isinstance(want, tuple) and type(got) is list), (got, want)
    if isinstance(want, dict):
        assert list(got) == list(want), "key order changed"
        for key in want:
            _same(got[key], want[key])
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _same(g, w)
    else:
        assert got == want


async def _raw(mongo: MongoConnector, name: str) -> dict[str, Any]:
    document = await mongo.collection.database[mongo.settings.collection].find_one({"_id": name})
    assert document is not None
    return document


@pytest.mark.parametrize("data", NATIVE.values(), ids=NATIVE.keys())
async def test_native_data_round_trips_and_is_a_document(mongo: MongoConnector, data: Any) -> None:
    name = "case/native"
    [result] = await mongo.write([Put(name, 1, data)])
    assert result.ok
    raw = await _raw(mongo, name)
    assert "data_json" not in raw
    assert raw["data"] == data
    snapshot = await mongo.get(name)
    assert snapshot is not None
    _same(snapshot.data, data)
    [scanned] = [s async for s in mongo.scan("case/")]
    _same(scanned.data, data)


@pytest.mark.parametrize("data", FALLBACK.values(), ids=FALLBACK.keys())
async def test_unfaithful_data_round_trips_through_its_json_text(
    mongo: MongoConnector, data: Any
) -> None:
    name = "case/fallback"
    [result] = await mongo.write([Put(name, 1, data)])
    assert result.ok
    raw = await _raw(mongo, name)
    assert raw["data"] is None
    assert json.loads(raw["data_json"]) == json.loads(json.dumps(data))
    snapshot = await mongo.get(name)
    want = json.loads(json.dumps(data))  # JSON has string keys only: {1: x} is {"1": x}
    assert snapshot == Snapshot(name, 1, want)
    _same(snapshot.data, want)
    # Rewritten with native data: the text goes, the document comes back.
    await mongo.write([Put(name, 2, {"now": "native"})])
    raw = await _raw(mongo, name)
    assert "data_json" not in raw and raw["data"] == {"now": "native"}


async def test_big_integers_keep_their_type(mongo: MongoConnector) -> None:
    data = {"int64": 2**62 + 1, "small": 7, "float": 7.0, "bool": True, "neg0": -0.0}
    await mongo.write([Put("n/1", 1, data)])
    snapshot = await mongo.get("n/1")
    assert snapshot is not None
    _same(snapshot.data, data)
    assert str(snapshot.data["neg0"]) == "-0.0"  # type: ignore[call-overload]


async def test_versions_are_exact_int64(mongo: MongoConnector) -> None:
    # As doubles, 2**60 and 2**60 + 1 would be one number and the second put a no-op.
    big = 2**60
    await mongo.write([Put("v/1", big, {"n": 1})])
    [newer] = await mongo.write([Put("v/1", big + 1, {"n": 2})])
    assert newer.ok
    [older] = await mongo.write([Put("v/1", big, {"n": 3})])
    assert not older.ok and older.current == Snapshot("v/1", big + 1, {"n": 2})
    assert await mongo.head("v/1") == big + 1
    raw = await _raw(mongo, "v/1")
    assert raw["version"] == big + 1


async def test_item_fields_and_collection(mongo: MongoConnector) -> None:
    await mongo.write([Put("user/42", 3, {"age": 31}), Put("loose", 1, [1]), Put("/x", 1, {})])
    user = await _raw(mongo, "user/42")
    assert {k: user[k] for k in ("_id", "collection", "version", "data")} == {
        "_id": "user/42",
        "collection": "user",
        "version": 3,
        "data": {"age": 31},
    }
    assert user["updated_at"].tzinfo is not None
    assert (await _raw(mongo, "loose"))["collection"] == "_default"
    assert (await _raw(mongo, "/x"))["collection"] == "_default"


async def test_scan_crosses_record_collections_in_name_order(mongo: MongoConnector) -> None:
    names = ["b/1", "a/2", "a/10", "_default", "é/1", "A/1", "a", "a0", "🙂/1", "\uffff"]
    await mongo.write([Put(name, 1, {"n": name}) for name in names])
    small = MongoConnector(mongo.settings.url, page_size=3)  # paging boundaries inside the run
    async with small:
        assert [s.name async for s in small.scan()] == sorted(names)
        assert [s.name async for s in small.scan("a")] == ["a", "a/10", "a/2", "a0"]
        assert [s.name async for s in small.scan("a/")] == ["a/10", "a/2"]


async def test_get_many_past_one_query(mongo: MongoConnector) -> None:
    names = [f"many/{i:05}" for i in range(2100)]  # more than one $in chunk of names
    for start in range(0, len(names), 500):
        await mongo.write([Put(name, 1, {"n": name}) for name in names[start : start + 500]])
    found = await mongo.get_many([*names, "many/missing"])
    assert found == {name: Snapshot(name, 1, {"n": name}) for name in names}
