"""The three-way JSON merge of the ``merge`` conflict policy: examples, then properties."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.store.merge import json_equal, keeps, merge


@pytest.mark.parametrize(
    ("base", "ours", "theirs", "expected"),
    [
        # Disjoint changes combine: changed, added and removed keys on either side.
        ({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 3}, {"a": 2, "b": 3}),
        (
            {"a": 1},
            {"a": 1, "new": "ours"},
            {"a": 1, "other": "theirs"},
            {"a": 1, "new": "ours", "other": "theirs"},
        ),
        ({"a": 1, "b": 1}, {"a": 1}, {"a": 5, "b": 1}, {"a": 5}),
        # Nested objects merge key by key.
        (
            {"p": {"x": 1, "y": 1}},
            {"p": {"x": 2, "y": 1}},
            {"p": {"x": 1, "y": 2}},
            {"p": {"x": 2, "y": 2}},
        ),
        # Clashes: ours wins, including remove-versus-change and a change of type.
        ({"a": 1}, {"a": 2}, {"a": 3}, {"a": 2}),
        ({"a": 1, "b": 0}, {"b": 0}, {"a": 3, "b": 0}, {"b": 0}),
        ({"a": 1}, {"a": 9}, {}, {"a": 9}),
        ({"a": {"x": 1}}, {"a": {"x": 2}}, {"a": "flat"}, {"a": {"x": 2}}),
        # Both sides made the same change: no clash.
        ({"a": 1}, {"a": 2}, {"a": 2}, {"a": 2}),
        # Arrays are atomic: different changes clash whole, a one-sided change is taken.
        ({"l": [1, 2]}, {"l": [1, 2, 3]}, {"l": [0, 1, 2]}, {"l": [1, 2, 3]}),
        ({"l": [1, 2]}, {"l": [1, 2]}, {"l": [2]}, {"l": [2]}),
        # Top-level arrays and type changes of the whole document.
        ([1], [1, 2], [1], [1, 2]),
        ([1], [1, 2], [0], [1, 2]),
        ({"a": 1}, {"a": 1}, [1], [1]),
        # No base (nothing known stored): both objects merge from empty; else ours.
        (None, {"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        (None, {"a": 1}, {"a": 2}, {"a": 1}),
        (None, [1], [2], [1]),
        # JSON equality: true is not 1, 1 is 1.0.
        ({"a": 1}, {"a": 1}, {"a": True}, {"a": True}),
        ({"a": 1}, {"a": 1.0}, {"a": 5}, {"a": 5}),
        ({"a": None}, {"a": None}, {}, {}),
    ],
)
def test_examples(base: Any, ours: Any, theirs: Any, expected: Any) -> None:
    assert json_equal(merge(base, ours, theirs), expected)


def test_inputs_are_not_mutated_and_the_result_shares_nothing() -> None:
    base = {"a": {"x": [1]}, "b": 1}
    ours = {"a": {"x": [1]}, "b": 2}
    theirs = {"a": {"x": [1, 2]}, "b": 1}
    before = copy.deepcopy((base, ours, theirs))
    result = merge(base, ours, theirs)
    assert (base, ours, theirs) == before
    result["a"]["x"].append(3)
    assert theirs["a"]["x"] == [1, 2]


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (True, 1, False),
        (1, 1.0, True),
        (False, 0, False),
        ({"a": [1, True]}, {"a": [1, True]}, True),
        ({"a": [1, True]}, {"a": [1, 1]}, False),
        ([], {}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        (None, None, True),
        ("1", 1, False),
    ],
)
def test_json_equal(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["x", "y", ""])
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abcd"), inner),
    max_leaves=8,
)
documents = st.dictionaries(st.sampled_from("abcdef"), values, max_size=6)


@given(documents, documents)
def test_one_sided_changes_are_taken_whole(base: Any, changed: Any) -> None:
    assert json_equal(merge(base, changed, base), changed)
    assert json_equal(merge(base, base, changed), changed)


@given(documents, documents)
def test_identical_changes_are_that_change(base: Any, changed: Any) -> None:
    assert json_equal(merge(base, changed, changed), changed)


@given(documents, documents, documents)
def test_ours_wins_every_clash_and_keeps_its_own_keys(base: Any, ours: Any, theirs: Any) -> None:
    result = merge(base, ours, theirs)
    for key, value in ours.items():
        if not json_equal(value, base.get(key)) or key not in base:
            # A key ours set (changed or added) survives, merged only if both are objects.
            assert key in result
            if not (isinstance(value, dict) and isinstance(theirs.get(key), dict)):
                assert json_equal(result[key], value)


@given(documents, st.data())
def test_disjoint_top_level_changes_combine(base: Any, data: st.DataObject) -> None:
    keys = sorted(set(base) | set("abcdef"))
    mine = set(data.draw(st.lists(st.sampled_from(keys), unique=True)))
    ours, theirs = dict(base), dict(base)
    for key in keys:
        if data.draw(st.booleans()):
            side = ours if key in mine else theirs
            new = data.draw(values | st.just(_DELETE))
            if new is _DELETE:
                side.pop(key, None)
            else:
                side[key] = new
    result = merge(base, ours, theirs)
    for key in keys:
        source = ours if key in mine else theirs
        assert json_equal(result.get(key, _DELETE), source.get(key, _DELETE)), key
    assert json_equal(result, merge(base, theirs, ours))  # no clash: the order is irrelevant


@given(documents, documents, documents)
def test_merge_never_mutates_its_inputs(base: Any, ours: Any, theirs: Any) -> None:
    before = copy.deepcopy((base, ours, theirs))
    merge(base, ours, theirs)
    assert (base, ours, theirs) == before


_DELETE: Any = object()


@pytest.mark.parametrize(
    ("base", "ours", "result", "kept"),
    [
        ({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 2, "b": 9, "c": 1}, True),  # b was not ours
        ({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 1, "b": 1}, False),  # our change undone
        ({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 3, "b": 1}, False),  # overwritten
        ({"a": 1, "b": 1}, {"b": 1}, {"b": 1}, True),  # our removal of a holds
        ({"a": 1, "b": 1}, {"b": 1}, {"a": 1, "b": 1}, False),  # ...or was lost
        ({"x": {"y": 1, "z": 1}}, {"x": {"y": 2, "z": 1}}, {"x": {"y": 2, "z": 5}}, True),
        ({"l": [1, 2]}, {"l": [1, 3]}, {"l": [1, 3, 4]}, False),  # arrays are whole values
        (None, {"a": 1}, {"a": 1, "b": 2}, True),  # nothing stored before: an empty base
        ({"a": 1}, {"a": 1}, {"z": 0}, True),  # ours changed nothing
        ({"a": True}, {"a": 1}, {"a": True}, False),  # JSON equality: 1 is not true
    ],
)
def test_keeps_says_whether_a_result_holds_every_change_of_ours(
    base: Any, ours: Any, result: Any, kept: bool
) -> None:
    assert keeps(base, ours, result) is kept
    if kept:  # and what merge makes always keeps ours (ours wins every clash)
        assert keeps(base, ours, merge(base, ours, result))


@given(documents, documents, documents)
def test_the_merge_policy_always_keeps_ours(base: Any, ours: Any, theirs: Any) -> None:
    """Why a ``merge`` acknowledgement never fails today: ours wins every clash."""
    assert keeps(base, ours, merge(base, ours, theirs))
    assert keeps(base, ours, ours)
    assert keeps(base, ours, theirs) == json_equal(merge(base, ours, theirs), theirs)
