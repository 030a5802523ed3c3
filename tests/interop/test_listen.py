"""Listening (active providers) for records and events through the official JS client."""

from __future__ import annotations

import pytest

from tests.interop.conftest import Scenario

pytestmark = pytest.mark.interop


def test_record_and_event_listen(run_scenario: Scenario) -> None:
    r = run_scenario("listen")
    assert r["errors"] == []
    names = [name.rsplit("/", 1)[1] for name in r["records"]["found"]]
    assert names == ["early-accept", "late-accept", "late-reject"]
    assert r["records"]["hasProvider"] == {"early": True, "accepted": True, "rejected": False}
    assert [name.rsplit("/", 1)[1] for name in r["records"]["stopped"]] == ["early-accept"]

    events = r["events"]
    assert [name.rsplit("/", 1)[1] for name in events["found"]] == ["accept", "reject"]
    assert events["received"] == [f"provided {events['found'][0]}"]
    assert events["stopped"] == [events["found"][0]]

    assert r["afterUnlisten"] == {"found": 3, "hasProvider": False}
