"""The HTTP API under the permission file: every operation checked against the same rules as
over WebSockets, for a login by ``authData`` or by token; a refusal is that operation's
failure, and the rest of the batch runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.protocol import EventAction, PresenceAction, RecordAction, RpcAction
from gateway.server import Server
from tests.conftest import ServerFactory
from tests.gateway.httpapi.client import ops, post
from tests.gateway.permissions.test_enforcement import files  # noqa: F401 - a fixture

ALICE = {"username": "alice", "password": "alice-pw"}  # serverData role admin
BOB = {"username": "bob", "password": "bob-pw"}  # role user


@pytest.fixture
async def server(make_server: ServerFactory, files: Path) -> Server:  # noqa: F811
    return await make_server(
        {
            "auth": [{"type": "file", "users": str(files / "users.yml")}],
            "permissions": str(files / "perms.yml"),
        }
    )


def rec(action: str, name: str, **more: Any) -> dict[str, Any]:
    return {"topic": "record", "action": action, "recordName": name, **more}


def denied(topic: str, event: int, action: int) -> dict[str, Any]:
    return {
        "errorTopic": topic,
        "errorEvent": event,
        "success": False,
        "action": action,
        "error": f'Message denied. Action "{_name(topic, action)}" is not permitted.',
    }


def _name(topic: str, action: int) -> str:
    enum = {"record": RecordAction, "event": EventAction, "rpc": RpcAction}.get(
        topic, PresenceAction
    )
    return enum(action).name


async def test_records_by_auth_data(server: Server) -> None:
    port = server.port
    batch = [
        rec("write", "secret/x", data={"a": 1}),
        rec("read", "secret/x"),
        rec("head", "secret/x"),
        rec("write", "open/x", data={"b": 2}),
        rec("delete", "open/x"),  # delete: false for every record
    ]
    bob = await ops(port, *batch, authData=BOB)
    assert bob["result"] == "PARTIAL_SUCCESS"
    write, read, head, other, delete = bob["body"]
    assert write == denied("record", RecordAction.MESSAGE_DENIED, RecordAction.CREATEANDUPDATE)
    assert read == denied("record", RecordAction.MESSAGE_DENIED, RecordAction.READ)
    assert head == denied("record", RecordAction.MESSAGE_DENIED, RecordAction.HEAD)
    assert other == {"success": True}
    assert delete == denied("record", RecordAction.MESSAGE_DENIED, RecordAction.DELETE)
    assert await server.store.load("secret/x") is None  # the refused write changed nothing
    assert await server.store.load("open/x") is not None  # nor did the refused delete
    alice = await ops(port, *batch[:3], authData=ALICE)
    assert alice["body"] == [
        {"success": True},
        {"version": 1, "data": {"a": 1}, "success": True},
        {"version": 1, "success": True},
    ]


async def test_events_rpc_and_presence_by_token(server: Server) -> None:
    port = server.port
    tokens = {}
    for who, login in (("bob", BOB), ("alice", ALICE)):
        status, answer = await post(port, login, path="/api/auth")
        assert status == 200
        tokens[who] = answer["token"]
    batch = [
        {"topic": "event", "action": "emit", "eventName": "admin/x", "data": 1},
        {"topic": "event", "action": "emit", "eventName": "price", "data": -1},
        {"topic": "event", "action": "emit", "eventName": "price", "data": 3},
        {"topic": "rpc", "action": "make", "rpcName": "admin/x"},
        {"topic": "presence", "action": "query"},
    ]
    bob = (await ops(port, *batch, token=tokens["bob"]))["body"]
    assert bob[0] == denied("event", EventAction.MESSAGE_DENIED, EventAction.EMIT)
    assert bob[1] == denied("event", EventAction.MESSAGE_DENIED, EventAction.EMIT)
    assert bob[2] == {"success": True}
    assert bob[3] == denied("rpc", RpcAction.MESSAGE_DENIED, RpcAction.REQUEST)
    assert bob[4] == denied("presence", PresenceAction.MESSAGE_DENIED, PresenceAction.QUERY_ALL)
    alice = (await ops(port, *batch, token=tokens["alice"]))["body"]
    assert alice[0] == {"success": True}
    assert alice[3] == denied("rpc", RpcAction.MESSAGE_DENIED, RpcAction.REQUEST)  # false for all
    assert alice[4] == {"users": [], "success": True}
