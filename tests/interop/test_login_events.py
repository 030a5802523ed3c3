"""Login and events through the official JS client."""

from __future__ import annotations

import pytest

from tests.interop.conftest import Scenario

pytestmark = pytest.mark.interop


def test_open_login_makes_username_the_user_id(run_scenario: Scenario) -> None:
    result = run_scenario("login")
    assert result["errors"] == []
    assert result["states"] == ["OPEN", "OPEN", "OPEN"]
    assert result["loginData"] == [None, None]
    online = result["online"]["ok"]
    assert result["user"] in online  # the username became the user id other clients see
    assert not any(name.startswith("observer") for name in online)  # never the asking user


def test_events_subscribe_emit_unsubscribe(run_scenario: Scenario) -> None:
    result = run_scenario("events")
    assert result["errors"] == []
    payloads = [
        {"hello": "world", "nested": {"list": [1, 2.5, None]}},
        "text",
        42,
        True,
        None,
        ["a"],
    ]
    assert result["received"] == payloads  # every JSON type, in order, exactly once
    # the emitter hears its own events once (locally), never echoed back by the server
    assert result["ownReceived"] == [*payloads, "after unsubscribe"]
    assert result["barrier"] == ["done"]
