"""File-auth logins through the official JS client: what ``login`` resolves or rejects with,
and the connection state after it. The expected outcomes are the reference server's (deepstream
7.0.2 with the same users, plain passwords, file auth); with
``RECORDGATE_AUTH_REFERENCE=host:port/path`` the scenario also runs against such a server and
both must agree."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.auth.passwords import hash_password
from tests.conftest import ServerFactory, url_of
from tests.interop.conftest import scenario_runner

pytestmark = pytest.mark.interop

REFUSED = {"state": "AWAITING_AUTHENTICATION", "events": []}
MISSING = {"error": "missing authentication parameter: username or/and password"}
EXPECTED: dict[str, Any] = {
    "good": {"ok": {"name": "Alice"}, "state": "OPEN", "events": []},
    "noClientData": {"ok": None, "state": "OPEN", "events": []},
    "wrong": {"error": {"reason": "INVALID_AUTHENTICATION_DETAILS"}, **REFUSED},
    "unknown": {"error": {"reason": "INVALID_AUTHENTICATION_DETAILS"}, **REFUSED},
    "missing": {"error": {"reason": MISSING}, **REFUSED},
    "empty": {"error": {"reason": MISSING}, **REFUSED},
    "errors": [],
}


async def test_file_auth_outcomes_match_the_reference(
    make_server: ServerFactory, node: str, tmp_path: Path
) -> None:
    users = {
        "alice": {
            "password": hash_password("alice-pw"),
            "serverData": {"role": "admin"},
            "clientData": {"name": "Alice"},
        },
        "bob": {"password": hash_password("bob-pw")},
    }
    (tmp_path / "users.yml").write_text(yaml.safe_dump(users))
    server = await make_server({"auth": [{"type": "file", "users": str(tmp_path / "users.yml")}]})
    run = scenario_runner(node, url_of(server).removeprefix("ws://"))
    assert await asyncio.to_thread(run, "auth") == EXPECTED
    reference = os.environ.get("RECORDGATE_AUTH_REFERENCE")
    if reference:
        assert await asyncio.to_thread(scenario_runner(node, reference), "auth") == EXPECTED
