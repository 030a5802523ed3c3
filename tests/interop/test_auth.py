"""File-auth logins through the official JS client: what ``login`` resolves or rejects with,
and the connection state after it. The expected outcomes are the reference server's (deepstream
7.0.2 with the same users, plain passwords, file auth); with
``RECORDGATE_AUTH_REFERENCE=host:port/path`` the scenario also runs against such a server and
both must agree."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
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


async def test_jwt_logins(make_server: ServerFactory, node: str) -> None:
    """Token logins through the official client: claims become the user and clientData;
    expired, wrongly signed, other-audience and missing tokens are refused."""
    secret = "k" * 32
    server = await make_server(
        {
            "auth": [
                {
                    "type": "jwt",
                    "secret": secret,
                    "audience": "recordgate",
                    "client_data_claim": "profile",
                }
            ]
        }
    )
    now = int(time.time())

    def token(key: str = secret, **claims: Any) -> str:
        body = {"sub": "carol", "aud": "recordgate", "exp": now + 60, "profile": {"n": 1}}
        return jwt.encode({**body, **claims}, key, algorithm="HS256")

    cases = {
        "good": {"token": token()},
        "expired": {"token": token(exp=now - 120)},
        "forged": {"token": token(key="x" * 32)},
        "audience": {"token": token(aud="elsewhere")},
        "none": {"token": jwt.encode({"sub": "carol", "exp": now + 60}, None, algorithm="none")},
        "missing": {},
    }
    run = scenario_runner(node, url_of(server).removeprefix("ws://"))
    result = await asyncio.to_thread(run, "auth", json.dumps(cases))
    assert result.pop("errors") == []
    assert result.pop("good") == {"ok": {"n": 1}, "state": "OPEN", "events": []}
    for name, outcome in result.items():
        assert outcome["state"] == "AWAITING_AUTHENTICATION", (name, outcome)
        assert "ok" not in outcome, (name, outcome)
