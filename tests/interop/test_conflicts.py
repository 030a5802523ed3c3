"""Concurrent writers of one record and the client's merge strategies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.interop.conftest import Scenario

pytestmark = pytest.mark.interop

ROUNDS = 6


def test_two_writers_converge_every_round(run_scenario: Scenario) -> None:
    r = run_scenario("concurrent", ROUNDS)
    assert r["errors"] == []
    # exactly one write wins each round (REMOTE_WINS: the loser adopts it, writes nothing more)
    assert [step["version"] for step in r["rounds"]] == list(range(1, ROUNDS + 1))
    for step in r["rounds"][::2]:
        assert step["data"] in (
            {"writer": "a", "round": step["version"] - 1},
            {"writer": "b", "round": step["version"] - 1},
        )
    assert r["a"] == r["b"]
    assert r["server"] == r["a"]["data"]
    assert r["head"] == ROUNDS


def _agreed(case: dict[str, Any], data: dict[str, Any]) -> None:
    (version_a, data_a), (_version_b, data_b) = case["a"], case["b"]
    assert data_a == data_b == case["server"] == data
    assert case["head"] == version_a


def test_merge_strategies(run_scenario: Scenario) -> None:
    r = run_scenario("merge")
    assert r["errors"] == []
    remote = r["remoteWinsDefault"]
    assert remote["a"] == remote["b"]
    _agreed(remote, remote["server"])
    assert remote["server"] in ({"fromA": True}, {"fromB": True})
    assert remote["head"] == 1
    for case in ("localWinsOption", "localWinsPerRecord", "localWinsByName"):
        _agreed(r[case], {"fromB": True})  # b insists on its data, whoever reached the server first
    _agreed(r["custom"], {"fromA": True, "fromB": True})
