"""Round-trip fidelity: JSON data and record names come back exactly as written."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from connectors.base import (
    NUL,
    Connector,
    Delete,
    Put,
    Snapshot,
    StorageError,
    StorageRejected,
    cannot_hold,
)

pytestmark = pytest.mark.asyncio

MAX_SAFE_INT = 2**53 - 1  # the integer range every JSON implementation represents exactly


def _nested(depth: int) -> dict[str, Any]:
    """Objects and arrays nested ``depth`` deep (the outermost object counts as one)."""
    data: Any = {"leaf": "x"}
    for level in range(depth - 2):
        data = {f"l{level}": data} if level % 2 else [data]
    return {"top": data}


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
    "nested operator-like keys": {"a": {"$set": {"x.y": {"$inc": 1}}, "$": [{"..": "."}]}},
    "layout-like keys": {
        "_id": "not the id",
        "id": 7,
        "name": "not the name",
        "version": "not the version",
        "data": {"data": {"data": 1}},
        "collection": [],
        "updated_at": None,
        "_source": 1,
        "_version": 2,
    },
    "javascript-like keys": {"__proto__": {"polluted": True}, "constructor": 1, "toString": 2},
    "integral floats": {"one": 1.0, "neg": -3.0, "big": 2.0**60, "e16": 1e16, "zero": 0.0},
    "0, 0.0 and false": {"int": 0, "float": 0.0, "bool": False, "list": [0, 0.0, False, None]},
    "deep nesting (30 levels)": _nested(30),
    "strings that look like other things": {
        "num": "1",
        "float": "1.0",
        "bool": "true",
        "null": "null",
        "json": '{"a": 1}',
        "date": "2024-01-01T00:00:00Z",
        "objectid": "507f1f77bcf86cd799439011",
    },
    "many keys": {f"k{i}": i for i in range(500)},
    # RethinkDB reads objects with this key as its own types (a time, binary data, ...).
    "database type tags": {
        "time": {"$reql_type$": "TIME", "epoch_time": 0, "timezone": "+00:00"},
        "binary": [{"$reql_type$": "BINARY", "data": "aGk="}],
        "unknown": {"$reql_type$": "NOPE"},
        "not a string": {"$reql_type$": 1},
        "mongo": {"$date": 0, "$oid": "507f1f77bcf86cd799439011"},
    },
    "a database type tag at the top": {"$reql_type$": "TIME", "epoch_time": 5, "timezone": "Z"},
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
    "dots": "a.b..c.",
    "only a dot": ".",
    "dollars": "$set$",
    "glob and regex": "*?+(a|b)^$.{1}",
    "id-like": "_id",
    "beyond the BMP": "\U0001f600\U00010000\U0010fffd",
    "control characters": "tab\there\nnewline\x7f",
    "html": "<b>&amp;</b>",
    "percent-encoded": "a%2Fb%20c",
}


def _name(prefix: str, tail: str) -> str:
    return f"{prefix}/{tail}"


@pytest.mark.parametrize("data", DATA_CASES.values(), ids=DATA_CASES.keys())
async def test_data_round_trips(connector: Connector, name_prefix: str, data: Any) -> None:
    name = _name(name_prefix, "doc")
    original = copy.deepcopy(data)
    try:
        [result] = await connector.write([Put(name, 1, data)])
    except StorageError as exc:  # e.g. keys a database reserves, refused without declaring
        pytest.fail(f"rule: JSON data is stored, whatever its keys: write raised {exc!r}")
    assert result.ok, f"rule: JSON data is stored: {result}"
    assert data == original and _same_types(data, original), (
        "rule: the caller's data is never mutated"
    )
    try:
        snapshot = await connector.get(name)
    except StorageError as exc:  # e.g. a driver reading tagged objects as its own types
        pytest.fail(f"rule: JSON data round-trips exactly: reading it back raised {exc!r}")
    assert snapshot == Snapshot(name, 1, original), "rule: JSON data round-trips exactly"
    _assert_same_types(snapshot.data, original)
    found = await connector.get_many([name])
    assert found == {name: snapshot}, "rule: get_many returns what get returns"
    _assert_same_types(found[name].data, original)
    scanned = [s async for s in connector.scan(name)]
    assert scanned == [snapshot], "rule: scan returns what get returns"
    _assert_same_types(scanned[0].data, original)


def _same_types(got: Any, want: Any) -> bool:
    try:
        _assert_same_types(got, want)
    except AssertionError:
        return False
    return True


def _assert_same_types(got: Any, want: Any) -> None:
    # == says 1 == 1.0 == True; a faithful store keeps ints, floats and bools apart.
    assert type(got) is type(want), (
        f"rule: ints, floats and booleans stay apart: {want!r} came back as {got!r} "
        f"({type(got).__name__})"
    )
    if isinstance(want, dict):
        for key in want:
            _assert_same_types(got[key], want[key])
    elif isinstance(want, list):
        for g, w in zip(got, want, strict=True):
            _assert_same_types(g, w)


@pytest.mark.parametrize("tail", NAME_CASES.values(), ids=NAME_CASES.keys())
async def test_names_round_trip(connector: Connector, name_prefix: str, tail: str) -> None:
    name = _name(name_prefix, tail)
    rule = f"rule: names may hold any character but U+0000 ({tail!r})"
    [result] = await connector.write([Put(name, 1, {"name": name})])
    assert result.ok, rule
    snapshot = await connector.get(name)
    assert snapshot == Snapshot(name, 1, {"name": name}), rule
    assert await connector.head(name) == 1, rule
    assert await connector.get_many([name]) == {name: snapshot}, rule
    assert [s.name async for s in connector.scan(name)] == [name], rule
    assert [s.name async for s in connector.scan(f"{name_prefix}/")] == [name], rule
    [deleted] = await connector.write([Delete(name, 1)])
    assert deleted.ok and await connector.get(name) is None, rule


async def test_distinct_names_are_distinct_records(connector: Connector, name_prefix: str) -> None:
    """Collations fold case, pad trailing spaces, normalise unicode; names must not."""
    tails = [
        "x",
        "X",
        "x ",
        " x",
        "x\t",
        "\u00e9",  # é, one code point
        "e\u0301",  # é, e + combining acute
        "\u00df",  # ß
        "ss",
        "\ufb01",  # the fi ligature
        "fi",
        "\u0131",  # dotless i
        "i",
        "\uff41",  # fullwidth a
        "a",
    ]
    names = [_name(name_prefix, t) for t in tails]
    results = await connector.write([Put(n, 1, {"i": i}) for i, n in enumerate(names)])
    rule = "rule: distinct strings are distinct records (no case folding, padding, normalising)"
    assert all(r.ok for r in results), f"{rule}: {[r.outcome.value for r in results]}"
    for i, name in enumerate(names):
        assert await connector.get(name) == Snapshot(name, 1, {"i": i}), f"{rule}: {name!r}"
    found = await connector.get_many(names)
    assert found == {n: Snapshot(n, 1, {"i": i}) for i, n in enumerate(names)}, rule
    assert [s.name async for s in connector.scan(f"{name_prefix}/")] == sorted(names), rule


async def test_name_without_slash(connector: Connector, name_prefix: str) -> None:
    name = f"{name_prefix}-no-slash"
    await connector.write([Put(name, 1, {"x": 1})])
    assert await connector.head(name) == 1


@pytest.mark.parametrize("char", ["ü", "\U0001f600"], ids=["2-byte", "4-byte"])
async def test_long_name_500_bytes(connector: Connector, name_prefix: str, char: str) -> None:
    head = _name(name_prefix, "")
    room = 500 - len(head.encode())
    width = len(char.encode())
    name = head + char * (room // width) + "x" * (room % width)
    assert len(name.encode()) == 500
    rule = "rule: names of 500 bytes of UTF-8 work, never truncated"
    [result] = await connector.write([Put(name, 1, {"long": True})])
    assert result.ok, rule
    assert await connector.get(name) == Snapshot(name, 1, {"long": True}), rule
    # One character less is another record, not the same truncated key.
    shorter = name[:-1]
    await connector.write([Put(shorter, 1, {"long": False})])
    assert await connector.get(name) == Snapshot(name, 1, {"long": True}), rule
    assert [s.name async for s in connector.scan(head)] == sorted([name, shorter]), rule


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
    rule = "rule: get_many returns the snapshots of the names that exist, missing ones absent"
    assert found == {n: Snapshot(n, i + 1, {"i": i}) for i, n in enumerate(names[:3])}, rule
    assert await connector.get_many([]) == {}, rule


async def test_get_many_takes_any_iterable_with_duplicates(
    connector: Connector, name_prefix: str
) -> None:
    names = [_name(name_prefix, str(i)) for i in range(3)]
    await connector.write([Put(n, 1, {"i": i}) for i, n in enumerate(names)])
    wanted = [names[2], names[0], _name(name_prefix, "missing"), names[2], names[0]]
    found = await connector.get_many(n for n in wanted)  # a generator: iterable once
    assert found == {names[0]: Snapshot(names[0], 1, {"i": 0}),
                     names[2]: Snapshot(names[2], 1, {"i": 2})}, (
        "rule: get_many takes any iterable of names (a generator, duplicates, missing names)"
    )  # fmt: skip


async def test_get_many_of_many_names(connector: Connector, name_prefix: str) -> None:
    names = [_name(name_prefix, f"{i:05d}") for i in range(2500)]
    await connector.write([Put(n, 1, {"i": i}) for i, n in enumerate(names[::2])])
    found = await connector.get_many(names)
    rule = "rule: get_many returns every existing name, however many are asked for"
    assert len(found) == 1250, f"{rule}: {len(found)} of 1250"
    assert all(found[n].data == {"i": i} for i, n in enumerate(names[::2])), rule


async def test_head_agrees_with_get(connector: Connector, name_prefix: str) -> None:
    name = _name(name_prefix, "head")
    rule = "rule: head returns the version get returns (None when get does)"
    steps: list[Put | Delete] = [
        Put(name, 1, {}),
        Put(name, 5, {"v": 5}),
        Put(name, 3, {"stale": True}),
        Delete(name, 4),
        Delete(name, 5),
        Put(name, 2, [2]),
    ]
    for op in steps:
        await connector.write([op])
        snapshot = await connector.get(name)
        head = await connector.head(name)
        assert head == (None if snapshot is None else snapshot.version), f"{rule}: after {op}"


@pytest.mark.parametrize(
    "number",
    [2**53 + 1, -(2**53 + 1), 2**63 - 1, -(2**63), 2**64 + 1, 10**30 + 1],
    ids=["2^53+1", "-(2^53+1)", "2^63-1", "-2^63", "2^64+1", "10^30+1"],
)
async def test_big_integers_exact_or_rejected(
    connector: Connector, name_prefix: str, number: int
) -> None:
    name = _name(name_prefix, "big")
    data = {"n": number, "list": [number], "deep": {"n": -number}}
    try:
        [result] = await connector.write([Put(name, 1, data)])
    except StorageRejected:
        assert await connector.get(name) is None, "rule: a rejected put writes nothing"
        return
    assert result.ok
    snapshot = await connector.get(name)
    assert snapshot is not None
    assert snapshot.data == data and _same_types(snapshot.data, data), (
        f"rule: integers beyond 2^53 round-trip exactly or are StorageRejected, never rounded: "
        f"{number} came back as {snapshot.data}"
    )


async def test_deeper_nesting_exact_or_rejected(connector: Connector, name_prefix: str) -> None:
    # 30 levels must work (DATA_CASES); deeper, some databases refuse (MariaDB at 32).
    name = _name(name_prefix, "deep")
    data = _nested(100)
    try:
        [result] = await connector.write([Put(name, 1, data)])
    except StorageRejected:
        assert await connector.get(name) is None, "rule: a rejected put writes nothing"
        return
    assert result.ok
    assert await connector.get(name) == Snapshot(name, 1, data), (
        "rule: data nested beyond 30 levels round-trips or is StorageRejected"
    )


@pytest.mark.parametrize(
    "data",
    [{"s": "a\u0000b"}, {"k\u0000": 1}, ["\u0000"]],
    ids=["in a string", "in a key", "in an array"],
)
async def test_u0000_is_held_unless_declared(
    connector: Connector, name_prefix: str, data: Any
) -> None:
    """``cannot_hold`` is a promise both ways: the gateway refuses what is declared before it
    reaches storage (so it must really be refused), and lets through what is not (so it must
    round-trip)."""
    name = _name(name_prefix, "nul")
    if NUL in cannot_hold(connector):
        try:
            await connector.write([Put(name, 1, data)])
        except StorageRejected:
            assert await connector.get(name) is None, "rule: a rejected put writes nothing"
            return
        pytest.fail(
            "rule: a connector declaring NUL in cannot_hold refuses U+0000 (StorageRejected)"
        )
    try:
        [result] = await connector.write([Put(name, 1, data)])
    except StorageRejected:
        pytest.fail(
            "rule: U+0000 in data round-trips unless the connector declares NUL in cannot_hold"
        )
    assert result.ok
    assert await connector.get(name) == Snapshot(name, 1, data), (
        "rule: U+0000 in data round-trips unless the connector declares NUL in cannot_hold"
    )


async def test_u0000_in_names_is_held_unless_declared(
    connector: Connector, name_prefix: str
) -> None:
    """The same promise for names: U+0000 in a name (middle and end) is its own record, unless
    the connector declares NUL, when a put of such a name is ``StorageRejected`` and writes
    nothing. A name cut at U+0000 (a C string) would make ``a\\0b`` and ``a`` one record."""
    cut = _name(name_prefix, "a")
    names = [_name(name_prefix, "a\u0000b"), _name(name_prefix, "a\u0000")]
    await connector.write([Put(cut, 1, {"cut": True})])
    if NUL in cannot_hold(connector):
        for name in names:
            try:
                await connector.write([Put(name, 1, {"v": 1})])
            except StorageRejected:
                continue
            pytest.fail(
                "rule: a connector declaring NUL in cannot_hold refuses U+0000 in a name "
                "(StorageRejected)"
            )
        stored = [snapshot async for snapshot in connector.scan(name_prefix + "/")]
        assert stored == [Snapshot(cut, 1, {"cut": True})], "rule: a rejected put writes nothing"
        return
    rule = "rule: U+0000 in a name round-trips unless the connector declares NUL in cannot_hold"
    for version, name in enumerate(names, start=2):
        try:
            results = await connector.write([Put(name, version, {"v": version})])
        except StorageRejected:
            pytest.fail(rule)
        assert [result.ok for result in results] == [True], rule
    for version, name in enumerate(names, start=2):
        assert await connector.get(name) == Snapshot(name, version, {"v": version}), rule
        assert await connector.head(name) == version, rule
    assert await connector.get(cut) == Snapshot(cut, 1, {"cut": True}), rule
    many = await connector.get_many([cut, *names])
    assert sorted(many) == sorted([cut, *names]), rule
    scanned = [snapshot.name async for snapshot in connector.scan(name_prefix + "/")]
    assert scanned == sorted([cut, *names]), rule
    [deleted] = await connector.write([Delete(names[0], 2)])
    assert deleted.ok, rule
    assert await connector.get(names[0]) is None, rule
    assert await connector.get(cut) == Snapshot(cut, 1, {"cut": True}), rule
    assert await connector.head(names[1]) == 3, rule


async def test_negative_zero(connector: Connector, name_prefix: str) -> None:
    name = _name(name_prefix, "zero")
    await connector.write([Put(name, 1, {"z": -0.0})])
    snapshot = await connector.get(name)
    assert snapshot is not None
    value = snapshot.data["z"]  # type: ignore[call-overload]
    assert type(value) is float and value == 0.0, (
        f"rule: -0.0 comes back as a float zero (its sign may be lost), not {value!r}"
    )


@pytest.mark.parametrize(
    "data",
    [{"t": (1, 2)}, {1: "a"}, {"x": {True: 1, None: 2}}],
    ids=["tuple", "int key", "bool and null keys"],
)
async def test_python_only_shapes_rejected_or_stored_as_json(
    connector: Connector, name_prefix: str, data: Any
) -> None:
    """The gateway never passes these; a connector refuses them or stores their JSON form."""
    name = _name(name_prefix, "shape")
    as_json = json.loads(json.dumps(data))
    try:
        [result] = await connector.write([Put(name, 1, data)])
    except StorageRejected:
        assert await connector.get(name) is None, "rule: a rejected put writes nothing"
        return
    assert result.ok
    assert await connector.get(name) == Snapshot(name, 1, as_json), (
        "rule: tuples and non-string keys are StorageRejected or stored as their JSON form"
    )


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


async def test_reads_match_the_exact_name(connector: Connector, name_prefix: str) -> None:
    """No read is a pattern or a prefix match: ``a*`` is not ``ab``, ``a`` is not ``a/b``."""
    p = name_prefix
    await connector.write([Put(f"{p}/ab", 1, {}), Put(f"{p}/a/b", 1, {}), Put(f"{p}/aXc", 1, {})])
    rule = "rule: get, get_many and head match the exact name, never a pattern or a prefix"
    for absent in (f"{p}/a", f"{p}/a*", f"{p}/a?", f"{p}/a.", f"{p}/a%", f"{p}/a_c", f"{p}/A"):
        assert await connector.get(absent) is None, f"{rule}: get({absent!r})"
        assert await connector.head(absent) is None, f"{rule}: head({absent!r})"
        assert await connector.get_many([absent]) == {}, f"{rule}: get_many([{absent!r}])"
    [result] = await connector.write([Delete(f"{p}/a*", 1)])
    assert result.ok and await connector.head(f"{p}/ab") == 1, f"{rule}: Delete('a*')"
