"""``payload``: the JSON edge, as pure functions (the socket tests are in test_bad_json.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.exceptions import InvalidJSON, UnencodableData
from gateway.protocol import payload

text = st.text(st.characters(exclude_categories=["Cs"]))  # no surrogates: what UTF-8 can carry
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


@given(values, st.sampled_from(["", " ", "\n\t ", "\r\n"]), st.booleans())
def test_every_json_value_reads_back_exactly(value: Any, space: str, ascii_only: bool) -> None:
    dumped = json.dumps(value, ensure_ascii=ascii_only)  # escapes: surrogate pairs included
    for wrapped in (dumped, space + dumped, dumped + space, space + dumped + space):
        assert payload.loads(wrapped, max_depth=payload.MAX_DEPTH_CEILING) == value
    assert json.loads(payload.dumps(value)) == value


@given(values)
def test_the_exact_depth_passes_one_more_level_is_refused(value: Any) -> None:
    dumped, exact = json.dumps(value), payload.depth(value)
    payload.loads(dumped, max_depth=max(exact, 1))
    if exact >= 1:  # one level deeper, as a PATCH one token down puts it
        with pytest.raises(InvalidJSON) as refused:
            payload.loads(dumped, max_depth=exact, at_depth=1)
        assert refused.value.reason == "too_deep"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "invalid"),
        ("  ", "invalid"),
        ("{", "invalid"),
        ('{"a":1} x', "invalid"),
        ('{"a":1}{"b":2}', "invalid"),
        ("[1,]", "invalid"),
        ("'a'", "invalid"),
        ('"\x01"', "invalid"),  # a raw control character, as JavaScript refuses it too
        ("NaN", "non_finite_number"),
        ("-Infinity", "non_finite_number"),
        (" [1e309]", "non_finite_number"),
        ("-1.8e308", "non_finite_number"),
        ("1" * 400 + ".0", "non_finite_number"),
        ('"\\ud800"', "lone_surrogate"),
        ('{"\\uDFFF":1}', "lone_surrogate"),
        ('["\\ude00\\ud83d"]', "lone_surrogate"),
        ("[" * 101 + "]" * 101, "too_deep"),
        ("[" * 5000 + "]" * 5000, "too_deep"),  # past the decoder's recursion limit
    ],
)
def test_refusals_name_their_reason(text: str, reason: str) -> None:
    before = payload.REFUSED[reason]
    with pytest.raises(InvalidJSON) as refused:
        payload.loads(text, max_depth=100)
    assert refused.value.reason == reason
    assert payload.REFUSED[reason] == before + 1


def test_what_is_kept() -> None:
    assert payload.loads('"\\ud83d\\ude00"', max_depth=1) == "😀"
    assert payload.loads("1.7976931348623157e308", max_depth=1) == 1.7976931348623157e308
    assert payload.loads("1e-400", max_depth=1) == 0.0  # underflow is a finite number
    assert payload.loads("9" * 4000, max_depth=1) == int("9" * 4000)  # exact
    assert payload.loads('"[[[[{{{{"', max_depth=1) == "[[[[{{{{"  # brackets in text
    payload.check(None, max_depth=1)  # absent data is not refused


def _nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), "\ud800", {"k": {1, 2}}, _nested(5000)]
)
def test_dumps_never_writes_what_is_not_json(value: Any) -> None:
    with pytest.raises(UnencodableData):
        payload.dumps(value)


@pytest.mark.parametrize(
    "value",
    ["\u0000", "a\u0000", {"k\u0000": 1}, ["x", {"y": "\\\u0000"}], "\\\\\u0000"],
)
def test_refuse_nul_finds_u0000_in_any_json_text(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        with pytest.raises(InvalidJSON) as caught:
            payload.refuse_nul(text)
        assert caught.value.reason == "unstorable" and "U+0000" in str(caught.value)


@pytest.mark.parametrize("value", ["\\u0000", "\\\\u0000", {"\\u0000": "u0000"}, "\u0001"])
def test_refuse_nul_passes_text_that_only_looks_like_it(value: Any) -> None:
    payload.refuse_nul(json.dumps(value))  # a backslash, then "u0000": no U+0000


def test_refuse_nul_checks_raw_names_and_paths() -> None:
    payload.refuse_nul(None, "name", None, "a.b")
    with pytest.raises(InvalidJSON):
        payload.refuse_nul('{"a": 1}', "na\u0000me")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\u0000" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(_has_nul, value))
    return False


@given(values, st.booleans())
def test_refuse_nul_refuses_exactly_the_data_holding_u0000(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        payload.refuse_nul(text)
    except InvalidJSON:
        assert _has_nul(value), text
    else:
        assert not _has_nul(value), text
