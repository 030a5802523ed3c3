"""RPC through the official JS client."""

from __future__ import annotations

import pytest

from tests.interop.conftest import Scenario

pytestmark = pytest.mark.interop


def test_rpc(run_scenario: Scenario) -> None:
    r = run_scenario("rpc")
    assert r["errors"] == []
    assert r["add"] == {"ok": 5}
    assert r["echo"] == [
        {"ok": "text"},
        {"ok": 7},
        {"ok": None},
        {"ok": [1, {"x": True}]},
        {"ok": {"deep": {"er": "yes"}}},
    ]
    assert r["callback"] == {"error": None, "result": 2}
    assert r["fail"] == {"error": "bad input x"}
    # a rejecting provider is skipped: every call lands on the accepting one
    assert r["route"] == [{"ok": "second"}] * 4
    assert r["routeCalls"]["accepting"] == 4
    assert r["onlyRejects"] == {"error": "NO_RPC_PROVIDER"}
    assert r["noProvider"] == {"error": "NO_RPC_PROVIDER"}
    assert r["afterUnprovide"] == {"error": "NO_RPC_PROVIDER"}
    assert r["acceptTimeout"] == {"error": "ACCEPT_TIMEOUT"}
    assert r["responseTimeout"] == {"error": "RESPONSE_TIMEOUT"}
