"""Round-trip fidelity: JSON data and record names come back exactly as written."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from connectors.base import Connector, Put, Snapshot, StorageRejected

pytestmark = pytest.mark.asyncio

MAX_SAFE_INT = 2**53 - 1  # the integer range every JSON implementation represents exactly

DATA_CASES: dict[str, Any] = {
    "empty object": {},
    "empty array": [],
    "array at top level": [1, "two", 3.5, None, True, False, {"x": []}],
    "unicode": {"grüße": "こんにちは 🌍", "rtl": "שלום", "escapes": 'tab\tline\nquote"\\'},
    "nesting": {"a": {"b": {"c": {"d": {"e": [[[{"f": [1, [2, [3]]]}]]]}}}}},
    "empty containers": {"o": {}, "a": [], "s": "", "n": None, "deep": {"o": {}, "a": [[]]}},
    "big ints": {"max": MAX_SAFE_INT, "min": -MAX_SAFE_INT, "zero": 0, "neg": -1},
    "floats": {
        "pi": 3.141592653589793,
        "tiny": 5e-324,
        "big": 1.7976931348623157e308,
        "tenth": 0.1,
        "neg": -2.5,
        "exp": 1e21,
        "half": 0.5,
    },
    "booleans and null": {"t": True, "f": False, "n": None, "list": [None, None]},
    "keys needing care": {"": "empty key", "with.dot": 1, "$dollar": 2, "a/b": 3, "'q'": 4},
    "many keys": {f"k{i}": i for i in range(500)},
}

NAME_CASES: dict[str, str] = {
    "plain": "plain",
    "several slashes": "a/b/c/d/e",
    "trailing slash": "a/b/",
    "quotes": 'it\'s "quoted" `back`',
    "unicode": "ユーザー/ñame/🙂",
    "sql-ish": "x'; DROP TABLE records; --",
    "wildcards": "100%_done\\[x]",
    "spaces": "  spaced name  ",
}


def _name(prefix: str, tail: str) -> str:
    return f"{prefix}/{tail}"


@pytest.mark.parametrize("data", DATA_CASES.values(), ids=DATA_CASES.keys())
async def test_data_round_trips(connector: Connector, name_prefix: str, data: Any) -> None:
    name = _name(name_prefix, "doc")
    original = copy.deepcopy(data)
    [result] = await connector.write([Put(name, 1, data)])
    assert result.ok
    assert data == original, "the caller's data was mutated"
    snapshot = await connector.get(name)
    assert snapshot == Snapshot(name, 1, original)
    assert type(snapshot.data) is type(original)
    _assert_same_types(snapshot.data, original)


def _assert_same_types(got: Any, want: Any) -> None:
    # == says 1 == 1.0 == True; a faithful store keeps ints, floats and bools apart.
    assert type(got) is type(want), f"{got!r} came back as {type(got).__name__}"
    if isinstance(want, dict):
        for key in want:
            _assert_same_types(got[key], want[key])
    elif isinstance(want, list):
        for g, w in zip(got, want, strict=True):
            _assert_same_types(g, w)


@pytest.mark.parametrize("tail", NAME_CASES.values(), ids=NAME_CASES.keys())
async def test_names_round_trip(connector: Connector, name_prefix: str, tail: str) -> None:
    name = _name(name_prefix, tail)
    await connector.write([Put(name, 1, {"name": name})])
    snapshot = await connector.get(name)
    assert snapshot is not None and snapshot.name == name and snapshot.data == {"name": name}
    assert await connector.head(name) == 1
    assert [s.name async for s in connector.scan(name)] == [name]


async def test_name_without_slash(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}-no-slash"
    await connector.write([Put(name, 1, {"x": 1})])
    assert await connector.head(name) == 1


async def test_long_name_500_bytes(connector: Connector, name_prefix: str) -> None:
    tail = "ü" * 240  # two bytes each in UTF-8
    name = _name(name_prefix, tail) + "x" * (500 - len(_name(name_prefix, tail).encode()))
    assert len(name.encode()) == 500
    await connector.write([Put(name, 1, {"long": True})])
    snapshot = await connector.get(name)
    assert snapshot is not None and snapshot.name == name


async def test_large_document(connector: Connector, name_prefix: str) -> None:
    name = _name(name_prefix, "large")
    data = {"rows": [{"i": i, "text": f"row {i} " + "é" * 90} for i in range(5000)]}
    await connector.write([Put(name, 1, data)])
    snapshot = await connector.get(name)
    assert snapshot is not None and snapshot.data == data


async def test_returned_data_is_a_copy(connector: Connector, name_prefix: str) -> None:
    name = _name(name_prefix, "copy")
    data: dict[str, Any] = {"list": [1, 2], "obj": {"k": "v"}}
    await connector.write([Put(name, 1, data)])
    data["list"].append(3)  # mutating the caller's object after the write changes nothing
    first = await connector.get(name)
    assert first is not None
    assert isinstance(first.data, dict)
    first.data["obj"]["k"] = "changed"  # nor does mutating what a read returned
    second = await connector.get(name)
    assert second is not None and second.data == {"list": [1, 2], "obj": {"k": "v"}}


async def test_get_many(connector: Connector, name_prefix: str) -> None:
    names = [_name(name_prefix, str(i)) for i in range(5)]
    await connector.write([Put(n, i + 1, {"i": i}) for i, n in enumerate(names)])
    missing = _name(name_prefix, "missing")
    found = await connector.get_many([*names[:3], missing])
    assert found == {n: Snapshot(n, i + 1, {"i": i}) for i, n in enumerate(names[:3])}
    assert await connector.get_many([]) == {}


async def test_missing_record(connector: Connector, name_prefix: str) -> None:
    assert await connector.get(_name(name_prefix, "none")) is None
    assert await connector.head(_name(name_prefix, "none")) is None


async def test_nul_character_round_trips_or_is_rejected(
    connector: Connector, name_prefix: str
) -> None:
    # Some databases cannot store U+0000 in JSON (PostgreSQL JSONB); refusing is fine, but only
    # as the project's StorageRejected, never a raw driver error, and nothing half-written.
    name = _name(name_prefix, "nul")
    try:
        [result] = await connector.write([Put(name, 1, {"s": "a\x00b"})])
    except StorageRejected:
        assert await connector.get(name) is None
    else:
        assert result.ok
        assert await connector.get(name) == Snapshot(name, 1, {"s": "a\x00b"})
