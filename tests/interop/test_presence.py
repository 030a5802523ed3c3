"""Presence through the official JS client."""

from __future__ import annotations

import pytest

from tests.interop.conftest import Scenario

pytestmark = pytest.mark.interop


def test_presence(run_scenario: Scenario) -> None:
    r = run_scenario("presence")
    assert r["errors"] == []
    user = next(iter(r["before"]["ok"]))
    prefix = user.removesuffix("-user")
    other, watcher, nobody = f"{prefix}-other", f"{prefix}-watcher", f"{prefix}-nobody"
    assert r["before"] == {"ok": {user: False}}
    assert r["getAll"] == sorted([other, user])  # never the asking watcher
    assert r["getSome"] == {"ok": {user: True, nobody: False, watcher: True}}
    assert sorted(r["seenByUser"]) == sorted([watcher, other])
    assert r["afterFirstClose"] == {"ok": {user: True}}  # a second connection keeps it online
    assert r["afterSecondClose"] == {"ok": {user: False}}
    # one join per user however many connections; unsubscribed: no leave event for `other`
    assert r["events"] == [[user, True], [other, True], [user, False]]
    assert r["userEvents"] == [[user, True], [user, False]]
