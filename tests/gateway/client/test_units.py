"""Pure logic of the client, without I/O: paths, pending requests, backoff, URLs, merges."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gateway.client import LOCAL_WINS, REMOTE_WINS
from gateway.client.connection import backoff, normalize_url
from gateway.client.jsonpath import erase, get, set_value, tokenize
from gateway.client.pending import Pending


def test_tokenize_splits_dots_and_brackets() -> None:
    assert tokenize("a.b[1].c") == ["a", "b", 1, "c"]
    assert tokenize("a[0][2]") == ["a", 0, 2]
    assert tokenize(" a . b ") == ["a", "b"]
    assert tokenize("a..b") == ["a", "b"]
    with pytest.raises(ValueError):
        tokenize("a[x]")


def test_get_reads_paths_and_tolerates_missing_ones() -> None:
    data = {"a": {"b": [10, {"c": 1}]}}
    assert get(data, None) is data
    assert get(data, "a.b[1].c") == 1
    assert get(data, "a.b[0]") == 10
    assert get(data, "a.x.y") is None
    assert get(data, "a.b[5]") is None
    assert get(data, "a.b[0].c") is None  # through a scalar


def test_set_value_copies_only_the_path() -> None:
    untouched = {"deep": [1, 2]}
    root = {"a": {"b": 1}, "u": untouched}
    new = set_value(root, "a.b", 2)
    assert new == {"a": {"b": 2}, "u": untouched}
    assert root == {"a": {"b": 1}, "u": {"deep": [1, 2]}}  # input never mutated
    assert new["u"] is untouched  # unchanged subtrees are shared


def test_set_value_creates_parents_like_the_js_client() -> None:
    assert set_value({}, "a.b.c", 1) == {"a": {"b": {"c": 1}}}
    assert set_value({}, "list[2]", "x") == {"list": [None, None, "x"]}
    assert set_value({"a": 5}, "a.b", 1) == {"a": {"b": 1}}  # a scalar parent is replaced
    assert set_value({"l": [1]}, "l[3]", 4) == {"l": [1, None, None, 4]}
    assert set_value({"x": 1}, None, [1, 2]) == [1, 2]


def test_erase_removes_keys_and_nulls_array_slots() -> None:
    root = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert erase(root, "a.b") == {"a": {"c": 2}, "l": [1, 2]}
    assert erase(root, "l[0]") == {"a": {"b": 1, "c": 2}, "l": [None, 2]}
    assert erase(root, "nothing.here") is root
    assert erase(root, "l[7]") is root
    assert root == {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    with pytest.raises(ValueError):
        erase(root, "")


def test_merge_strategies() -> None:
    assert REMOTE_WINS({"l": 1}, 3, {"r": 1}, 3) == {"r": 1}
    assert LOCAL_WINS({"l": 1}, 3, {"r": 1}, 3) == {"l": 1}


def test_normalize_url() -> None:
    assert normalize_url("localhost:6020") == "ws://localhost:6020/deepstream"
    assert normalize_url("ws://h:1/x") == "ws://h:1/x"
    assert normalize_url("wss://h") == "wss://h/deepstream"


def test_backoff_starts_at_once_doubles_and_caps() -> None:
    delays = list(itertools.islice(backoff(1.0, 8.0), 7))
    assert delays[0] == 0
    for delay, ceiling in zip(delays[1:], [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_pending_settles_a_future_by_any_of_its_keys() -> None:
    pending = Pending()
    first = pending.add("ack-1", "denied-x")
    twin = pending.add("denied-x")
    assert pending.resolve("ack-1", "ok")
    assert await first == "ok"
    assert "ack-1" not in pending
    # The other key of the settled future is forgotten; its co-waiter is still there.
    assert "denied-x" in pending and len(pending) == 1
    assert pending.reject("denied-x", KeyError("no"))
    with pytest.raises(KeyError):
        await twin
    assert not pending.resolve("ack-1") and len(pending) == 0


async def test_pending_reject_all_and_discard() -> None:
    pending = Pending()
    a, b = pending.add("a"), pending.add("a")
    c = pending.add("c")
    pending.discard(c)
    assert "c" not in pending
    pending.reject_all(ConnectionError("gone"))
    for future in (a, b):
        with pytest.raises(ConnectionError):
            await future
    assert not c.done()
    c.cancel()
    await asyncio.sleep(0)
