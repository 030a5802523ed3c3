"""The RethinkDB connector's pure parts: the stored document's JSON text, and how change entries
settle each operation. The entries here are shaped as RethinkDB 2.4 documents
``return_changes="always"`` (including error entries and entries for unchanged documents), some
of which the reqlite stand-in never produces; no server is involved."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import Delete, Outcome, Put, Snapshot, StorageRejected
from connectors.rethinkdb.layout import document_fields, record_id, snapshot_of, version_key
from connectors.rethinkdb.writes import _entries, _settle, encode_ops

NOW = datetime(2026, 11, 29, 12, 0, 0, 250000, tzinfo=UTC)


def stored(name: str, version: int, data: Any, text: str | None = None) -> dict[str, Any]:
    """A stored document as the driver returns it."""
    return {
        "id": record_id(name),
        "name": name,
        "version_key": version_key(version),
        "version": version,
        "data": data,
        "data_json": text if text is not None else json.dumps(data),
    }


@pytest.mark.parametrize(
    "name", ['quo"te/\\back', "ü/🙂/\u2028", "a" * 600, "tab\there", "$reql_type$/x"]
)
def test_document_text_is_json_of_every_field(name: str) -> None:
    data = {"big": 2**70, "f": 1.0, "s": 'x"y', "nested": [{"o": {}}]}
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    doc = json.loads(document_fields(name, 2**62, text))
    assert doc == {
        "id": hashlib.sha256(name.encode()).hexdigest(),
        "name": name,
        "collection": name.partition("/")[0] if "/" in name else "_default",
        "version": 2**62,
        "version_key": "04611686018427387904",  # 20 digits
        "data": data,
        "data_json": text,
    }
    assert len(doc["id"]) == 64 and snapshot_of(doc) == Snapshot(name, 2**62, data)


def test_version_keys_order_as_numbers() -> None:
    versions = [0, 1, 9, 10, 2**53, 2**53 + 1, 2**63 - 1, 10**20 - 1]
    assert sorted(versions, key=version_key) == versions
    assert sorted(map(version_key, versions)) == [version_key(v) for v in versions]
    assert {len(version_key(v)) for v in versions} == {20}


def test_batch_text_carries_ops_and_one_time() -> None:
    encoded, texts = encode_ops([Put("a/1", 3, {"x": [1]}), Delete("b", 4)], NOW)
    put, delete = (json.loads(e.item) for e in encoded)
    assert json.loads(encoded[0].doc or "") == put["doc"] and encoded[1].doc is None
    assert put["id"] == record_id("a/1") and put["key"] == version_key(3) and put["del"] is False
    assert put["doc"]["updated_at"] == {
        "$reql_type$": "TIME",
        "epoch_time": NOW.timestamp(),
        "timezone": "+00:00",
    }
    assert put["doc"]["data"] == {"x": [1]} and texts == {"a/1": '{"x":[1]}'}
    assert put["fence"] is None and put["match"] is None and "fence_key" not in put["doc"]
    # An unfenced delete's tombstone (written only over a record with a fence, which it keeps)
    # has no fence of its own, and an unfenced delete is never an insert.
    tomb = {"id": record_id("b"), "name": "b", "tombstone": True}
    assert delete == {"id": record_id("b"), "key": version_key(4), "fence": None, "del": True,
                      "doc": tomb, "match": None}  # fmt: skip


def test_reserved_key_anywhere_stores_data_null_and_the_exact_text() -> None:
    for data in ({"a": {"$reql_type$": "BINARY"}}, [1, [{"$reql_type$": 2}]]):
        encoded, _ = encode_ops([Put("r", 1, data)], NOW)
        doc = json.loads(encoded[0].item)["doc"]
        assert doc["data"] is None and json.loads(doc["data_json"]) == data
    for plain in ({"k": "$reql_type$"}, {"s": '"$reql_type$"'}, {"$reql_type": 1}):
        encoded, _ = encode_ops([Put("r", 1, plain)], NOW)
        assert json.loads(encoded[0].item)["doc"]["data"] == plain


def test_non_json_is_rejected_before_anything_is_sent() -> None:
    for data in ({"n": float("nan")}, {"s": {1, 2}}):
        with pytest.raises(StorageRejected):
            encode_ops([Put("ok", 1, {}), Put("bad", 1, data)], NOW)


def test_entries_by_id_skip_errors_and_nameless_entries() -> None:
    doc = stored("a", 1, {})
    answer = {
        "changes": [
            {"old_val": None, "new_val": doc},
            {"old_val": stored("b", 2, {}), "new_val": stored("b", 2, {}), "error": "Duplicate"},
            {"old_val": None, "new_val": None},  # a delete of a missing document
        ]
    }
    assert _entries(answer) == {doc["id"]: {"old_val": None, "new_val": doc}}
    assert _entries({"inserted": 0}) == {} and _entries(None) == {}


def test_settling_puts() -> None:
    put = Put("r", 5, {"a": 1, "b": [1.0]})
    texts = {"r": json.dumps(put.data, separators=(",", ":"))}
    mine = stored("r", 5, put.data, texts["r"])

    def settle(old: Any, new: Any) -> Any:
        return _settle(put, {"old_val": old, "new_val": new}, texts)

    assert settle(None, mine).outcome is Outcome.APPLIED  # inserted
    assert settle(stored("r", 4, {}), mine).outcome is Outcome.APPLIED  # replaced a lower one
    same = stored("r", 5, {"b": [1.0], "a": 1}, '{"b":[1.0],"a":1}')  # other key order
    assert settle(same, same).outcome is Outcome.APPLIED  # idempotent retry
    floats = stored("r", 5, {"a": 1.0, "b": [1.0]}, '{"a":1.0,"b":[1.0]}')
    result = settle(floats, floats)  # 1.0 is not 1: a conflict
    assert result.outcome is Outcome.CONFLICT
    assert result.current == Snapshot("r", 5, {"a": 1.0, "b": [1.0]})
    newer = stored("r", 2**60 + 1, {"z": 0})
    assert settle(newer, newer).current == Snapshot("r", 2**60 + 1, {"z": 0})
    assert settle(mine, None) is None  # deleted meanwhile: goes round again


def test_settling_deletes() -> None:
    delete = Delete("r", 5)
    assert _settle(delete, {"old_val": stored("r", 5, {}), "new_val": None}, {}).ok
    newer = stored("r", 6, {"n": 6})
    result = _settle(delete, {"old_val": newer, "new_val": newer}, {})
    assert result is not None and result.outcome is Outcome.CONFLICT
    assert result.current == Snapshot("r", 6, {"n": 6})
    not_newer = stored("r", 5, {})
    assert _settle(delete, {"old_val": not_newer, "new_val": not_newer}, {}) is None
