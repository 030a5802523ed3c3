"""The Python client against a server with file auth and permissions: every section's refusal
reaches the call that caused it (an exception naming MESSAGE_DENIED), the allowed actions work,
and a refused write changes nothing for anyone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.auth.passwords import hash_password
from gateway.client import Client
from gateway.exceptions import AuthenticationFailed, ClientError, RecordError, RpcError
from tests.conftest import ServerFactory, url_of

RULES: dict[str, Any] = {
    "record": {
        "*": {"create": True, "read": True, "write": True, "delete": True},
        "admin/*": {
            "read": "user.data.role === 'admin'",
            "write": "user.data.role === 'admin'",
            "create": "user.data.role === 'admin'",
            "delete": False,
        },
        "broken/*": {"write": "oldData.missing.deeper === 1"},
    },
    "event": {
        "*": {"publish": True, "subscribe": True},
        "admin/*": {"publish": "user.data.role === 'admin'", "subscribe": False},
    },
    "rpc": {
        "*": {"provide": True, "request": True},
        "admin/*": {"provide": False, "request": False},
    },
    "presence": {"*": {"allow": "user.data.role === 'admin'"}},
}


@pytest.fixture
async def url(make_server: ServerFactory, tmp_path: Path) -> str:
    users = {
        "alice": {
            "password": hash_password("alice-pw"),
            "serverData": {"role": "admin"},
            "clientData": {"name": "Alice"},
        },
        "bob": {"password": hash_password("bob-pw"), "serverData": {"role": "user"}},
    }
    (tmp_path / "users.yml").write_text(yaml.safe_dump(users))
    (tmp_path / "perms.yml").write_text(yaml.safe_dump(RULES))
    server = await make_server(
        {
            "auth": [{"type": "file", "users": str(tmp_path / "users.yml")}],
            "permissions": str(tmp_path / "perms.yml"),
        }
    )
    return url_of(server)


@pytest.fixture
async def users(url: str) -> AsyncIterator[tuple[Client, Client]]:
    alice = Client(url, auth={"username": "alice", "password": "alice-pw"}, request_timeout=3.0)
    bob = Client(url, auth={"username": "bob", "password": "bob-pw"}, request_timeout=3.0)
    await alice.connect()
    await bob.connect()
    yield alice, bob
    await alice.close()
    await bob.close()


async def test_login_outcomes(url: str, users: tuple[Client, Client]) -> None:
    alice, _ = users
    assert alice.client_data == {"name": "Alice"}
    wrong = Client(url, auth={"username": "alice", "password": "nope"}, request_timeout=3.0)
    with pytest.raises(AuthenticationFailed):
        await wrong.connect()
    await wrong.close()


async def test_records(users: tuple[Client, Client]) -> None:
    alice, bob = users
    record = await alice.record.get("admin/config")
    await record.set({"limit": 1})
    seen: list[Any] = []
    record.subscribe(seen.append)
    with pytest.raises(RecordError, match="MESSAGE_DENIED"):
        await bob.record.get("admin/config")
    with pytest.raises(RecordError, match="MESSAGE_DENIED"):
        await bob.record.set_data("admin/config", {"limit": 99})
    with pytest.raises(RecordError, match="MESSAGE_DENIED"):
        await bob.record.snapshot("admin/config")
    with pytest.raises(RecordError, match="MESSAGE_PERMISSION_ERROR"):
        await bob.record.set_data("broken/x", {"a": 1})
    with pytest.raises(RecordError, match="MESSAGE_DENIED"):
        await record.delete()
    await asyncio.sleep(0.2)
    assert seen == [] and await alice.record.snapshot("admin/config") == {"limit": 1}
    mine = await bob.record.get("open/bob")
    await mine.set({"ok": True})
    assert await alice.record.snapshot("open/bob") == {"ok": True}


async def test_events_rpc_presence(users: tuple[Client, Client]) -> None:
    alice, bob = users
    with pytest.raises(ClientError, match="MESSAGE_DENIED"):
        await bob.event.subscribe("admin/news", lambda data: None)
    with pytest.raises(RpcError, match="MESSAGE_DENIED"):
        await bob.rpc.provide("admin/op", lambda data: data)
    with pytest.raises(RpcError, match="MESSAGE_DENIED"):
        await bob.rpc.make("admin/op", 1)
    await alice.rpc.provide("double", lambda data: data * 2)
    assert await bob.rpc.make("double", 21) == 42
    with pytest.raises(ClientError, match="MESSAGE_DENIED"):
        await bob.presence.get_all()
    with pytest.raises(ClientError, match="MESSAGE_DENIED"):
        await bob.presence.get(["alice"])
    assert await alice.presence.get(["bob"]) == {"bob": True}
