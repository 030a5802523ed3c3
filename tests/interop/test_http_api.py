"""The HTTP API beside the official JS client: what HTTP writes, a JS subscriber sees live."""

from __future__ import annotations

import pytest

from tests.interop.conftest import Scenario

pytestmark = pytest.mark.interop

OK = {"status": 200, "answer": {"result": "SUCCESS", "body": [{"success": True}]}}


def test_http_operations_meet_a_websocket_client(run_scenario: Scenario) -> None:
    r = run_scenario("http_api")
    assert r["errors"] == []
    assert r["whole"] == OK
    assert r["patch"] == OK
    # the HTTP write, the HTTP patch, then the client's own set
    assert r["updates"] == [{"from": "http"}, {"from": "http", "n": 7}, {"from": "http", "n": 8}]
    assert r["version"] == 3
    assert r["emit"] == OK
    assert r["events"] == [{"hi": 1}]
    assert r["rpc"] == {
        "status": 200,
        "answer": {"result": "SUCCESS", "body": [{"data": {"doubled": 42}, "success": True}]},
    }
    assert r["read"]["answer"]["body"] == [
        {"version": 3, "data": {"from": "http", "n": 8}, "success": True}
    ]
