"""JSON paths: parsing as the JS client does, copy-on-write set/erase, hostile paths refused."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.exceptions import InvalidData
from gateway.protocol.payload import dumps
from gateway.records.paths import (
    MAX_INDEX_GAP,
    erase_path,
    get_path,
    parse_path,
    patch,
    set_path,
)


@pytest.mark.parametrize(
    ("path", "tokens"),
    [
        ("a", ("a",)),
        ("a.b.c", ("a", "b", "c")),
        ("a.b[2].c", ("a", "b", 2, "c")),
        ("a[0][1]", ("a", 0, 1)),
        ("a.2.c", ("a", "2", "c")),  # a dotted number is a key, as in the client
        (" a . b ", ("a", "b")),  # parts are trimmed like the client trims them
        ("first name.x", ("first name", "x")),
        ("a[007]", ("a", 7)),
        ("ünï.çødé", ("ünï", "çødé")),
    ],
)
def test_parse(path: str, tokens: tuple[Any, ...]) -> None:
    assert parse_path(path) == tokens


@pytest.mark.parametrize(
    "path",
    [
        None,
        "",
        "   ",
        "a..b",
        ".a",
        "a.",
        "a[x]",
        "a[-1]",
        "a[]",
        "a[1",
        "a]1[",
        "a[1]b",
        "[0]",
        "a.[0]",
        "a[1.5]",
        "a[9999999999]",
        "__proto__",
        "a.__proto__.b",
        "a.constructor",
        "prototype[0]",
        " __proto__ ",
        ".".join(["k"] * 300),
    ],
)
def test_parse_rejects(path: str | None) -> None:
    with pytest.raises(InvalidData):
        parse_path(path)


def test_set_creates_objects_and_arrays_like_the_client() -> None:
    assert set_path({}, parse_path("a.b"), 1) == {"a": {"b": 1}}
    assert set_path({}, parse_path("a[2]"), "x") == {"a": [None, None, "x"]}
    assert set_path({}, parse_path("a[1].b"), True) == {"a": [None, {"b": True}]}
    assert set_path({"a": 5}, parse_path("a.b"), 1) == {"a": {"b": 1}}  # primitive replaced
    assert set_path({"a": None}, parse_path("a[0]"), 1) == {"a": [1]}
    assert set_path({"a": [1, 2, 3]}, parse_path("a.1"), 9) == {"a": [1, 9, 3]}
    assert set_path({"a": {"0": 1}}, parse_path("a[0]"), 2) == {"a": {"0": 2}}  # index as key


def test_set_and_erase_on_a_top_level_array() -> None:
    assert set_path([1, 2], parse_path("1"), 5) == [1, 5]
    assert set_path([1, 2], parse_path("3"), 5) == [1, 2, None, 5]
    assert set_path([{"a": 1}], parse_path("0.a"), 2) == [{"a": 2}]
    assert erase_path([1, 2, 3], parse_path("1")) == [1, None, 3]  # JS delete leaves a hole
    assert erase_path([1], parse_path("5")) == [1]
    with pytest.raises(InvalidData):
        set_path([1], parse_path("name"), 1)
    with pytest.raises(InvalidData):
        set_path([1], parse_path("01"), 1)  # not a canonical index: a JS property, not a slot


def test_erase_removes_the_key_and_keeps_the_rest() -> None:
    data = {"a": {"b": 1, "c": 2}, "d": 3}
    assert erase_path(data, parse_path("a.b")) == {"a": {"c": 2}, "d": 3}
    assert erase_path(data, parse_path("zz")) == data
    # Like the client, missing intermediates are still created, new arrays pre-filled.
    assert erase_path({}, parse_path("x.y")) == {"x": {}}
    assert erase_path({}, parse_path("x[2]")) == {"x": [None, None]}


def test_index_far_past_the_end_is_refused() -> None:
    with pytest.raises(InvalidData):
        set_path({"a": []}, parse_path(f"a[{MAX_INDEX_GAP + 1}]"), 1)
    with pytest.raises(InvalidData):  # refused before allocating anything
        erase_path({}, parse_path("a[999999999].b"))
    assert len(set_path({"a": []}, parse_path("a[99]"), 1)["a"]) == 100


def test_copy_on_write_shares_untouched_subtrees() -> None:
    data = {"a": {"b": [1, 2]}, "other": {"deep": [1]}}
    before = copy.deepcopy(data)
    new = set_path(data, parse_path("a.b[1]"), 7)
    assert data == before
    assert new["other"] is data["other"]
    assert new["a"] is not data["a"] and new["a"]["b"] is not data["a"]["b"]
    erased = erase_path(new, parse_path("a.b"))
    assert new["a"]["b"] == [1, 7]
    assert erased["other"] is data["other"]


def test_get() -> None:
    data = {"a": [{"b": 1}], "n": None}
    assert get_path(data, parse_path("a[0].b")) == 1
    assert get_path(data, parse_path("a.0.b")) == 1
    assert get_path(data, parse_path("n")) is None
    assert get_path(data, parse_path("a[3]"), "d") == "d"
    assert get_path(data, parse_path("a[0].b.c"), "d") == "d"
    assert get_path(data, parse_path("x.y"), "d") == "d"


keys = st.text(
    alphabet=st.characters(blacklist_characters=".[]", blacklist_categories=("Z", "C")),
    min_size=1,
    max_size=5,
).filter(lambda k: k not in {"__proto__", "constructor", "prototype"})
token_lists = st.lists(st.one_of(keys, st.integers(0, 4)), min_size=1, max_size=5).filter(
    lambda ts: isinstance(ts[0], str)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=10,
)


def _render(tokens: list[Any]) -> str:
    out = ""
    for token in tokens:
        out += f"[{token}]" if isinstance(token, int) else f".{token}"
    return out.lstrip(".")


@given(st.dictionaries(keys, json_values, max_size=4), token_lists, json_values)
def test_set_then_get_round_trips_and_never_mutates(
    data: dict[str, Any], tokens: list[Any], value: Any
) -> None:
    path = parse_path(_render(tokens))
    assert path == tuple(tokens)
    snapshot = json.dumps(data)
    try:
        new = set_path(data, path, value)
    except InvalidData:  # a key on an existing array: refused, never half-applied
        assert json.dumps(data) == snapshot
        return
    assert get_path(new, path, object()) == value
    assert json.dumps(data) == snapshot
    erased = erase_path(new, path)
    assert get_path(erased, path, "gone") in ("gone", None)  # null when erased from an array
    json.dumps(erased)  # still plain JSON


# Scalars whose JSON text is as long as ``patch`` counts it (strings without escapes).
plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="ascii", exclude_characters='"\\', min_codepoint=32))
)
plain_keys = st.text(st.sampled_from("abtz"), min_size=1, max_size=3)


@given(
    st.dictionaries(plain_keys, plain_scalars, min_size=2, max_size=5),
    plain_keys,
    plain_scalars,
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_patch_counts_the_bytes_it_adds(
    data: dict[str, Any], key: str, value: Any, erase: bool, nested: bool, alone: bool
) -> None:
    """On an object of at least two plain scalars (so no comma is in doubt), ``patch``'s
    estimate is exact: the JSON grows by ``growth`` plus the new value's own text. One key
    (``patch``'s shortcut) and the same key one object down (its walk) agree, alone in their
    write (``owned`` None) or sharing an ``owned`` map."""
    root: dict[str, Any] = {"o": data, "p": 1} if nested else data
    tokens = ("o", key) if nested else (key,)
    before = dumps(root)
    new, growth = patch(root, tokens, value, erase=erase, owned=None if alone else {})
    assert new == (erase_path(root, tokens) if erase else set_path(root, tokens, value))
    assert dumps(root) == before  # copy-on-write
    added = 0 if erase else len(dumps(value))
    if erase and key not in data:
        assert growth == 0
    else:
        assert len(dumps(new)) == len(before) + growth + added


@example({"a": {"b": 1}}, [("a.b", 1, True)])
@given(
    st.dictionaries(plain_keys, st.dictionaries(plain_keys, plain_scalars, max_size=2), max_size=4),
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "ab", "a.b", "a.t", "b[0]", "b[2]", "a.b.z", "t[1].z"]),
            plain_scalars | st.just({}) | st.just([1]),
            st.booleans(),
        ),
        max_size=12,
    ),
)
def test_patch_estimates_never_fall_below_the_real_size(
    data: dict[str, Any], writes: list[tuple[str, Any, bool]]
) -> None:
    """From an exactly measured record (a whole write, a load), any sequence of one-path
    writes keeps the estimate at or above the record's real JSON length: the record limit is
    checked on the estimate and measured only once the estimate passes it, so an estimate
    below the real length would let a record pass ``max_record_size``. (Erasing the only key
    of an object once counted a comma it did not have.)"""
    size = len(dumps(data))
    for path, value, erase in writes:
        try:
            data, growth = patch(data, parse_path(path), value, erase=erase)
        except InvalidData:  # an index into an object, a key into an array
            continue
        size += growth + (0 if erase else len(dumps(value)))
        assert size >= len(dumps(data)), (path, value, erase, data)


def test_erasing_the_only_key_of_an_object_counts_what_it_removes() -> None:
    data = {f"k{i}": {"x": 1} for i in range(100)}
    size = len(dumps(data))
    for i in range(100):
        data, growth = patch(data, parse_path(f"k{i}.x"), None, erase=True)
        size += growth
    assert size == len(dumps(data))
