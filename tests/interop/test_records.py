"""Records and lists through the official JS client."""

from __future__ import annotations

import pytest

from tests.interop.conftest import Scenario

pytestmark = pytest.mark.interop


def test_record_lifecycle(run_scenario: Scenario) -> None:
    r = run_scenario("records")
    assert r["errors"] == []
    assert r["created"] == {"version": 0, "data": {}}

    expected = {"profile": {"name": "Bea"}, "tags": ["x"]}
    assert r["afterWrites"] == {
        "a": {"version": 3, "data": expected},
        "b": {"version": 3, "data": expected},
    }
    assert r["pathValues"] == ["Ann", "Bea"]  # a path subscription fires only on its path
    assert r["pathGet"] == "Bea"

    # write acknowledgements: promise and callback forms, path and whole-record writes
    assert r["setWithAck"] == {"ok": None}
    assert r["setCallback"] == {"error": None}
    assert r["setWholeCallback"] == {"error": None}

    assert r["snapshot"] == {"ok": {"replaced": True}}
    assert r["has"] == {"ok": True}
    assert r["hasMissing"] == {"ok": False}
    assert r["head"] == {"ok": 6}
    assert r["snapshotMissing"] == {"error": "RECORD_NOT_FOUND"}

    # writes from a client that never subscribed, with and without acks
    assert r["setDataWithAck"] == {"ok": None}
    assert r["setDataWhole"] == {"ok": None}
    assert r["afterSetData"] == {"version": 9, "data": {"whole": "c"}, "head": {"ok": 9}}
    assert r["setDataCreates"] == {"ok": None}
    assert r["freshSnapshot"] == {"ok": {"made": "by setData"}}
    assert r["freshHead"] == {"ok": 1}

    # delete notifies the other subscriber; the name can then be created afresh
    assert r["delete"] == {"ok": None}
    assert r["hasAfterDelete"] == {"ok": False}
    assert r["recreated"] == {"version": 0, "data": {}}
    assert r["afterRecreate"] == {
        "version": 1,
        "snapshot": {"ok": {"second": "life"}},
        "head": {"ok": 1},
    }


def test_lists(run_scenario: Scenario) -> None:
    r = run_scenario("lists")
    assert r["errors"] == []
    assert r["initial"] == {"entries": [], "empty": True}
    assert r["afterAdd"] == ["z", "x", "y"]
    assert r["afterRemove"] == ["z", "y"]
    assert r["setEntriesWithAck"] == {"ok": None}
    assert r["aEntries"] == ["p", "q", "r"]
    assert r["versions"] == [5, 5]
    assert r["snapshot"] == {"ok": ["p", "q", "r"]}
    assert r["seen"] == [["x"], ["x", "y"], ["z", "x", "y"], ["z", "y"], ["p", "q", "r"]]
