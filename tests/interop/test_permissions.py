"""Permissions through the official JS client, on a recordgate with a Valve file: every
section's refusal reaches the client the way the reference server's does (the same scenario
runs against the reference with ``RECORDGATE_PERMISSIONS_REFERENCE=host:port/path``, a
deepstream 7.0.2 started with ``PERMISSIONS`` below; see ``docs`` in the README)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ServerFactory, url_of
from tests.interop.conftest import scenario_runner

pytestmark = pytest.mark.interop

PERMISSIONS: dict[str, Any] = {
    "record": {
        "*": {"create": True, "read": True, "write": True, "delete": True, "listen": True},
        "sec/*": {
            "create": "user.id === 'admin'",
            "read": "user.id === 'admin'",
            "write": "user.id === 'admin'",
            "listen": False,
        },
        "pub/*": {"read": True, "write": "user.id === 'admin'", "delete": False},
    },
    "event": {
        "*": {"publish": True, "subscribe": True, "listen": True},
        "ev/admin/*": {
            "publish": "user.id === 'admin'",
            "subscribe": "user.id === 'admin'",
            "listen": False,
        },
    },
    "rpc": {
        "*": {"provide": True, "request": True},
        "rpc/admin/*": {"provide": "user.id === 'admin'", "request": "user.id === 'admin'"},
    },
    "presence": {"*": {"allow": "user.id === 'admin'"}},
}


def check(result: dict[str, Any]) -> None:
    denied = {"error": "MESSAGE_DENIED"}
    assert result["adminSet"] == {"ok": None}
    assert result["setWithAck"] == denied and result["setPath"] == denied
    assert result["snapshot"] == denied and result["head"] == denied
    assert result["has"] == denied
    assert result["deniedRecordReady"] is False
    assert result["createDenied"] == denied
    assert result["pubSnapshot"] == {"ok": {"v": 1}}
    assert result["deleteDenied"] == denied
    assert result["adminMake"] == {"ok": 42}
    assert result["bobMake"]["error"] == "MESSAGE_DENIED"
    assert result["presenceAll"] == denied and result["presenceSome"] == denied
    assert result["adminPresence"] == {"ok": {"bob": True}}
    assert result["updatesSeenByAdmin"] == []  # nothing of bob's refused writes
    assert result["adminSnapshot"] == {"ok": {"v": 1}}
    assert result["eventsHeardByAdmin"] == ["from admin"]


def error_events(result: dict[str, Any]) -> list[tuple[int, str, str, str]]:
    return sorted((e["client"], e["error"], e["event"], str(e["topic"])) for e in result["errors"])


async def test_every_refusal_as_the_official_client_sees_it(
    make_server: ServerFactory, node: str, tmp_path: Path
) -> None:
    (tmp_path / "perms.yml").write_text(yaml.safe_dump(PERMISSIONS))
    server = await make_server({"permissions": str(tmp_path / "perms.yml")})
    url = url_of(server).removeprefix("ws://")
    run = scenario_runner(node, url)
    result = await asyncio.to_thread(run, "permissions", "p")
    check(result)
    events = error_events(result)
    # bob (client 1): the subscription to a secret record, its unacknowledged write, listening
    # on records and events, subscribing and emitting to an admin event, providing an admin
    # RPC, subscribing to presence: each reported once as MESSAGE_DENIED
    assert all(e[0] == 1 and "MESSAGE_DENIED" in (e[1] + e[2]) for e in events), events
    reference = os.environ.get("RECORDGATE_PERMISSIONS_REFERENCE")
    if reference:
        theirs = await asyncio.to_thread(scenario_runner(node, reference), "permissions", "p")
        check(theirs)
        assert events == error_events(theirs)
    (tmp_path / "result.json").write_text(json.dumps(result))
