"""What is stored natively and what as exact JSON text (pure rules of ``documents.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import Int64
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import StorageRejected
from connectors.mongodb.documents import MAX_NATIVE_DEPTH, encode_put, is_native, snapshot_of

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def nested(depth: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for _ in range(depth - 1):
        data = {"k": data}
    return data


NATIVE: dict[str, Any] = {
    "plain": {"age": 31, "tags": ["x"]},
    "array": [1, "two", 3.5, None, True, {"o": {}}],
    "int64 bounds": {"max": 2**63 - 1, "min": -(2**63), "beyond doubles": 2**53 + 1},
    "nul in a value": {"s": "a\x00b"},
    "key order": {"z": 1, "a": 2, "m": 3},
    "unicode keys": {"grüße": 1, "🙂": 2},
    "at the depth limit": nested(MAX_NATIVE_DEPTH),
    "dollar inside a key": {"a$": 1, "price $": 2},
}

FALLBACK: dict[str, Any] = {
    "$-prefixed key": {"$set": {"a": 1}},
    "DBRef shape": {"ref": {"$ref": "users", "$id": 1}},
    "dotted key": {"a.b": 1},
    "empty key": {"": "empty"},
    "NUL in a key": {"a\x00b": 1},
    "integer key": {1: "one"},
    "above int64": {"n": 2**63},
    "below int64": [-(2**63) - 1],
    "deeper than the limit": nested(MAX_NATIVE_DEPTH + 1),
    "nested in an array": [{"x": [{"$gt": 1}]}],
}


@pytest.mark.parametrize("data", NATIVE.values(), ids=NATIVE.keys())
def test_native_data_is_stored_as_a_document(data: Any) -> None:
    assert is_native(data)
    encoded = encode_put("user/1", 3, data, NOW, Int64)
    assert encoded.document["data"] is data
    assert "data_json" not in encoded.document


@pytest.mark.parametrize("data", FALLBACK.values(), ids=FALLBACK.keys())
def test_unfaithful_data_is_stored_as_exact_json_text(data: Any) -> None:
    assert not is_native(data)
    encoded = encode_put("user/1", 3, data, NOW, Int64)
    assert encoded.document["data"] is None
    assert encoded.document["data_json"] == json.dumps(
        data, ensure_ascii=False, separators=(",", ":")
    )
    assert snapshot_of(encoded.document).data == json.loads(encoded.document["data_json"])


def test_document_fields() -> None:
    document = encode_put("user/a/b", 2**40, {"x": 1}, NOW, Int64).document
    assert document == {
        "_id": "user/a/b",
        "collection": "user",
        "version": 2**40,
        "data": {"x": 1},
        "updated_at": NOW,
    }
    assert type(document["version"]) is Int64  # one BSON type for every version
    assert list(document) == ["_id", "collection", "version", "data", "updated_at"]


@pytest.mark.parametrize("version", [-1, 2**63])
def test_version_outside_int64_is_rejected(version: int) -> None:
    with pytest.raises(StorageRejected, match="version"):
        encode_put("a", version, {}, NOW, Int64)


@pytest.mark.parametrize(
    ("name", "data"),
    [("ok", {"s": "\ud800"}), ("ok", {"\udfff": 1}), ("bad\ud800", {})],
    ids=["surrogate value", "surrogate key", "surrogate name"],
)
def test_lone_surrogates_are_rejected(name: str, data: Any) -> None:
    with pytest.raises(StorageRejected, match="unicode"):
        encode_put(name, 1, data, NOW, Int64)


def test_non_json_is_rejected() -> None:
    with pytest.raises(StorageRejected):
        encode_put("a", 1, {"x": float("nan")}, NOW, Int64)


@pytest.mark.parametrize(
    "data",
    [
        {"nan": float("nan")},
        {"deep": [{"inf": float("-inf")}]},
        {"set": {1}},
        {"obj": object()},
        {"bytes": b"x"},
        nested(MAX_NATIVE_DEPTH + 5) | {"nan": float("nan")},
    ],
    ids=["nan", "nested infinity", "set", "object", "bytes", "nan beside deep nesting"],
)
def test_everything_not_json_is_rejected(data: Any) -> None:
    with pytest.raises(StorageRejected):
        encode_put("a", 1, data, NOW, Int64)


def test_a_cycle_is_rejected() -> None:
    data: dict[str, Any] = {}
    data["self"] = data
    with pytest.raises(StorageRejected):
        encode_put("a", 1, data, NOW, Int64)


def test_the_text_of_native_data_is_made_only_when_asked() -> None:
    encoded = encode_put("a", 1, {"b": [1, 2.0]}, NOW, Int64)
    assert encoded.text == '{"b":[1,2.0]}'


_KEYS = st.text(alphabet=st.sampled_from(["a", "$", ".", "\x00", "é", "🙂", " "]), max_size=4)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


@given(data=st.dictionaries(_KEYS, _JSON, max_size=5) | st.lists(_JSON, max_size=5))
@settings(max_examples=300, deadline=None)
def test_any_json_survives_bson_exactly(data: Any) -> None:
    # Through the real BSON codec, as the driver sends and reads it: same values, same types,
    # same key order, whether stored natively or as data_json.
    import bson

    from connectors.base import data_equal
    from connectors.mongodb.client import codec_options

    document = encode_put("p/1", 1, data, NOW, Int64).document
    stored = bson.decode(bson.encode(document), codec_options=codec_options())
    back = snapshot_of(stored).data
    assert data_equal(back, data)
    assert json.dumps(back) == json.dumps(data)  # key order, and 1 / 1.0 / true kept apart
