"""Permissions enforced by a real server over real sockets: every section and action, allowed
and denied, with file logins (serverData in rules), SIGHUP-style reloads and hostile rules."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.auth.passwords import hash_password
from gateway.protocol import EventAction, Message, PresenceAction, RecordAction, RpcAction, Topic
from tests.conftest import ServerFactory, url_of
from tests.wire import WireClient, write

R, E, P, Q = RecordAction, EventAction, RpcAction, PresenceAction

RULES: dict[str, Any] = {
    "record": {
        "*": {
            "create": True,
            "read": True,
            "write": True,
            "delete": False,
            "listen": True,
            "notify": False,
        },
        "secret/*": {
            "read": "user.data.role === 'admin'",
            "write": "user.data.role === 'admin'",
            "create": "user.data.role === 'admin'",
            "listen": False,
        },
        "profile/$owner": {"write": "user.id === $owner", "delete": "user.id === $owner"},
        "counter": {"write": "data.value > oldData.value"},
        "order/$id": {"create": "_('stock/' + $id).count > 0"},
        "broken": {
            "write": "data.constructor !== undefined || data.__proto__.x === 1",
            "read": "oldData.a.b.c",
        },
    },
    "event": {
        "*": {"publish": True, "subscribe": True, "listen": True},
        "admin/*": {"publish": "user.data.role === 'admin'", "subscribe": False, "listen": False},
        "price": {"publish": "typeof data === 'number' && data > 0"},
    },
    "rpc": {
        "*": {"provide": True, "request": True},
        "admin/*": {"provide": "user.data.role === 'admin'", "request": False},
    },
    "presence": {"*": {"allow": "user.data.role === 'admin'"}},
}


@pytest.fixture
def files(tmp_path: Path) -> Path:
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
    return tmp_path


@pytest.fixture
async def url(make_server: ServerFactory, files: Path) -> str:
    server = await make_server(
        {
            "auth": [{"type": "file", "users": str(files / "users.yml")}],
            "permissions": str(files / "perms.yml"),
        }
    )
    return url_of(server)


async def login(url: str, user: str) -> WireClient:
    return await WireClient.connect(url, login={"username": user, "password": f"{user}-pw"})


async def denied(client: WireClient, topic: int, action: int = 0) -> Message:
    """The next message of ``topic``, asserted to be MESSAGE_DENIED (or ``action``)."""
    got = await client.recv()
    want = (
        action
        or {
            Topic.RECORD: R.MESSAGE_DENIED,
            Topic.EVENT: E.MESSAGE_DENIED,
            Topic.RPC: P.MESSAGE_DENIED,
            Topic.PRESENCE: Q.MESSAGE_DENIED,
        }[topic]
    )
    assert (got.topic, got.action, got.is_error) == (topic, want, True), got
    return got


async def test_record_writes_denied_change_nothing_and_reach_no_subscriber(url: str) -> None:
    alice, bob = await login(url, "alice"), await login(url, "bob")
    try:
        await alice.send(
            Message(Topic.RECORD, R.SUBSCRIBECREATEANDREAD, names=["secret/x"], correlation_id="s")
        )
        assert (await alice.recv()).is_ack
        assert (await alice.recv()).action == R.READ_RESPONSE
        await bob.send(
            Message(
                Topic.RECORD,
                R.UPDATE,
                name="secret/x",
                version=-1,
                data='{"v":1}',
                is_write_ack=True,
                correlation_id="w1",
            )
        )
        got = await denied(bob, Topic.RECORD)
        assert (got.name, got.original_action, got.correlation_id, got.is_write_ack) == (
            "secret/x",
            R.UPDATE,
            "w1",
            True,
        )
        await alice.expect_silence()
        # A patch, an erase and a patch_multi are writes too.
        for action, extra in (
            (R.PATCH, {"path": "a", "data": "1"}),
            (R.ERASE, {"path": "a"}),
            (R.PATCH_MULTI, {"data": '[{"path":"a","data":1}]'}),
        ):
            await bob.send(Message(Topic.RECORD, action, name="secret/x", version=-1, **extra))
            assert (await denied(bob, Topic.RECORD)).original_action == action
        await bob.send(Message(Topic.RECORD, R.READ, name="secret/x"))
        assert (await denied(bob, Topic.RECORD)).original_action == R.READ
        await bob.send(Message(Topic.RECORD, R.HEAD, name="secret/x"))
        await denied(bob, Topic.RECORD)
        # The admin's write goes through, and the record shows nothing of bob's attempts.
        await alice.send(
            Message(
                Topic.RECORD,
                R.UPDATE,
                name="secret/x",
                version=-1,
                data='{"v":2}',
                is_write_ack=True,
                correlation_id="w2",
            )
        )
        assert (await alice.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        await alice.send(Message(Topic.RECORD, R.READ, name="secret/x"))
        got = await alice.recv()
        assert (got.action, got.version, json.loads(got.data or "")) == (
            R.READ_RESPONSE,
            1,
            {"v": 2},
        )
    finally:
        await alice.close()
        await bob.close()


async def test_record_create_subscribe_delete_listen_notify(url: str) -> None:
    bob = await login(url, "bob")
    try:
        # Creating a secret record is denied; nothing is created, nothing subscribed.
        await bob.send(
            Message(
                Topic.RECORD, R.SUBSCRIBECREATEANDREAD, names=["secret/y", "ok"], correlation_id="c"
            )
        )
        msgs = [await bob.recv() for _ in range(3)]
        kinds = sorted((m.action, m.name) for m in msgs)
        assert (R.MESSAGE_DENIED, "secret/y") in kinds and (R.READ_RESPONSE, "ok") in kinds
        await bob.send(
            Message(
                Topic.RECORD,
                R.CREATEANDUPDATE,
                name="secret/z",
                version=-1,
                data="{}",
                correlation_id="u",
                is_write_ack=True,
            )
        )
        got = await denied(bob, Topic.RECORD)
        assert (got.original_action, got.correlation_id) == (R.CREATEANDUPDATE, "u")
        # Bulk subscribe: the denied name answered, the rest subscribed and acked.
        await bob.send(
            Message(Topic.RECORD, R.SUBSCRIBE, names=["secret/a", "open/a"], correlation_id="b")
        )
        got = await denied(bob, Topic.RECORD)
        assert (got.name, got.correlation_id) == ("secret/a", "b")
        ack = await bob.recv()
        assert ack.is_ack and ack.correlation_id == "b"
        # Delete: only one's own profile.
        await bob.send(
            Message(Topic.RECORD, R.CREATEANDUPDATE, name="profile/alice", version=-1, data="{}")
        )
        assert (await denied(bob, Topic.RECORD)).original_action == R.CREATEANDUPDATE
        await bob.send(Message(Topic.RECORD, R.DELETE, name="profile/alice"))
        assert (await denied(bob, Topic.RECORD)).original_action == R.DELETE
        await bob.send(Message(Topic.RECORD, R.DELETE, name="open/a"))
        await denied(bob, Topic.RECORD)
        await bob.send(write("profile/bob", {"n": 1}, ack="p"))
        assert (await bob.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        await bob.send(Message(Topic.RECORD, R.DELETE, name="profile/bob"))
        assert (await bob.recv()).action == R.DELETE_SUCCESS
        await bob.send(Message(Topic.RECORD, R.LISTEN, name="secret/.*", correlation_id="l"))
        got = await denied(bob, Topic.RECORD)
        assert (got.name, got.original_action) == ("secret/.*", R.LISTEN)
        await bob.send(Message(Topic.RECORD, R.NOTIFY, names=["open/a"], correlation_id="n"))
        await denied(bob, Topic.RECORD)
        await bob.expect_silence()
    finally:
        await bob.close()


async def test_rules_over_data_old_data_and_other_records(url: str) -> None:
    bob = await login(url, "bob")
    try:
        await bob.send(write("counter", {"value": 1}, ack="1"))
        await denied(bob, Topic.RECORD, R.MESSAGE_PERMISSION_ERROR)  # oldData is null: it throws
        # (a record that does not exist has oldData null, as in the reference)
        await bob.send(write("stock/7", {"count": 0}, ack="2"))
        assert (await bob.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        await bob.send(write("order/7", {}, ack="3"))
        await denied(bob, Topic.RECORD)  # _('stock/7').count is 0
        await bob.send(
            Message(
                Topic.RECORD,
                R.PATCH,
                name="stock/7",
                version=-1,
                path="count",
                data="3",
                is_write_ack=True,
                correlation_id="4",
            )
        )
        assert (await bob.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        await bob.send(write("order/7", {}, ack="5"))
        assert (await bob.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        # An escape attempt in a rule is only an error for that message; the server lives on.
        await bob.send(
            Message(Topic.RECORD, R.CREATEANDUPDATE, name="broken", version=-1, data='{"a":1}')
        )
        await denied(bob, Topic.RECORD, R.MESSAGE_PERMISSION_ERROR)  # __proto__ is undefined
        await bob.send(Message(Topic.RECORD, R.READ, name="stock/7"))
        assert json.loads((await bob.recv()).data or "") == {"count": 3}
    finally:
        await bob.close()


async def test_events_rpc_presence(url: str) -> None:
    alice, bob = await login(url, "alice"), await login(url, "bob")
    try:
        await alice.send(Message(Topic.EVENT, E.SUBSCRIBE, names=["price"], correlation_id="1"))
        assert (await alice.recv()).is_ack
        await bob.send(Message(Topic.EVENT, E.EMIT, name="price", data="-1"))
        assert (await denied(bob, Topic.EVENT)).original_action == E.EMIT
        await bob.send(Message(Topic.EVENT, E.EMIT, name="price", data="{not json"))
        await denied(bob, Topic.EVENT)  # not JSON: data is undefined to the rule, still checked
        await bob.send(Message(Topic.EVENT, E.EMIT, name="price", data="5"))
        assert (await alice.recv()).data == "5"
        await bob.send(Message(Topic.EVENT, E.EMIT, name="admin/x", data="1"))
        await denied(bob, Topic.EVENT)
        await bob.send(Message(Topic.EVENT, E.SUBSCRIBE, names=["admin/x"], correlation_id="2"))
        got = await denied(bob, Topic.EVENT)
        assert (got.name, got.correlation_id) == ("admin/x", "2")
        await bob.send(Message(Topic.EVENT, E.LISTEN, name="admin/.*", correlation_id="3"))
        await denied(bob, Topic.EVENT)
        await bob.send(Message(Topic.RPC, P.PROVIDE, names=["admin/op"], correlation_id="4"))
        assert (await denied(bob, Topic.RPC)).name == "admin/op"
        await alice.send(Message(Topic.RPC, P.PROVIDE, names=["admin/op"], correlation_id="5"))
        assert (await alice.recv()).is_ack
        await alice.send(
            Message(Topic.RPC, P.REQUEST, name="admin/op", correlation_id="6", data="1")
        )
        got = await denied(alice, Topic.RPC)
        assert (got.correlation_id, got.original_action) == ("6", P.REQUEST)
        await bob.send(Message(Topic.PRESENCE, Q.QUERY_ALL, correlation_id="7"))
        await denied(bob, Topic.PRESENCE)
        await bob.send(Message(Topic.PRESENCE, Q.SUBSCRIBE, names=["alice"], correlation_id="8"))
        assert (await denied(bob, Topic.PRESENCE)).name == "alice"
        await alice.send(Message(Topic.PRESENCE, Q.QUERY, names=["bob"], correlation_id="9"))
        assert (await alice.recv()).action == Q.QUERY_RESPONSE
        await bob.expect_silence()
    finally:
        await alice.close()
        await bob.close()


async def test_reload_swaps_rules_keeps_connections_and_survives_a_broken_file(
    make_server: ServerFactory, files: Path
) -> None:
    perms = files / "perms.yml"
    perms.write_text(yaml.safe_dump({"event": {"*": {"publish": True}}}))
    server = await make_server({"permissions": str(perms)})
    client = await WireClient.connect(url_of(server), login={})
    try:
        await client.send(Message(Topic.EVENT, E.EMIT, name="a", data="1"))
        await client.expect_silence()
        perms.write_text(yaml.safe_dump({"event": {"*": {"publish": False}}}))
        server.reload()
        await client.send(Message(Topic.EVENT, E.EMIT, name="a", data="1"))
        await denied(client, Topic.EVENT)
        perms.write_text("event: {'*': {publish: 'user.'}}")  # does not parse: kept as before
        server.reload()
        await client.send(Message(Topic.EVENT, E.EMIT, name="a", data="1"))
        await denied(client, Topic.EVENT)
    finally:
        await client.close()


async def test_ordering_across_a_rule_that_reads_records(url: str) -> None:
    """A write whose rule reads another record waits in its lane; the same client's later
    read of that record sees it (no overtaking)."""
    alice = await login(url, "alice")
    try:
        await alice.send(
            Message(Topic.RECORD, R.CREATEANDUPDATE, name="stock/9", version=-1, data='{"count":1}')
        )
        for i in range(5):
            await alice.send(
                Message(
                    Topic.RECORD,
                    R.CREATEANDUPDATE,
                    name="order/9",
                    version=-1,
                    data=json.dumps({"i": i}),
                )
            )
        await alice.send(Message(Topic.RECORD, R.READ, name="order/9"))
        got = await alice.recv()
        assert (got.action, json.loads(got.data or "")) == (R.READ_RESPONSE, {"i": 4})
        await asyncio.sleep(0)
    finally:
        await alice.close()


async def test_bulk_messages_answer_every_refused_name(url: str) -> None:
    """Every refused name of a bulk message is answered and left out; the reference 7.0.2 here
    answers only the first and drops the *last* name of the list instead (its splice uses the
    bulk message's absent ``name``), subscribing a refused name."""
    alice, bob = await login(url, "alice"), await login(url, "bob")
    try:
        await bob.send(
            Message(
                Topic.RECORD,
                R.SUBSCRIBE,
                names=["secret/a", "open/a", "secret/b"],
                correlation_id="b",
            )
        )
        refused = {(await denied(bob, Topic.RECORD)).name for _ in range(2)}
        assert refused == {"secret/a", "secret/b"}
        assert (await bob.recv()).is_ack
        # Only open/a was subscribed: a write to a refused name reaches bob not at all.
        for name in ("secret/a", "secret/b", "open/a"):
            await alice.send(
                Message(Topic.RECORD, R.CREATEANDUPDATE, name=name, version=-1, data='{"n":1}')
            )
        got = await bob.recv()
        assert (got.action, got.name) == (R.UPDATE, "open/a")
        await bob.expect_silence()
        await bob.send(
            Message(
                Topic.RECORD, R.SUBSCRIBEANDHEAD, names=["secret/a", "open/b"], correlation_id="h"
            )
        )
        assert (await denied(bob, Topic.RECORD)).name == "secret/a"
        heads = await bob.recv()
        assert (heads.action, heads.versions) == (R.HEAD_RESPONSE_BULK, {"open/b": -1})
        ack = await bob.recv()
        assert ack.is_ack and ack.correlation_id == "h"
        await bob.expect_silence()  # no HEAD_RESPONSE of the refused name (the reference sends one)
    finally:
        await alice.close()
        await bob.close()


RECORD_MATRIX = [
    (R.READ, {"name": "secret/m"}, R.READ_RESPONSE),
    (R.HEAD, {"name": "secret/m"}, R.HEAD_RESPONSE),
    (R.SUBSCRIBEANDREAD, {"names": ["secret/m"]}, R.READ_RESPONSE),
    (R.SUBSCRIBECREATEANDREAD, {"names": ["secret/new"]}, R.READ_RESPONSE),
    (R.HEAD_BULK, {"names": ["secret/m"]}, R.HEAD_RESPONSE_BULK),
    (R.UPDATE, {"name": "secret/m", "data": '{"a":2}'}, R.WRITE_ACKNOWLEDGEMENT),
    (R.PATCH, {"name": "secret/m", "path": "a", "data": "3"}, R.WRITE_ACKNOWLEDGEMENT),
    (R.ERASE, {"name": "secret/m", "path": "a"}, R.WRITE_ACKNOWLEDGEMENT),
    (
        R.PATCH_MULTI,
        {"name": "secret/m", "data": '[{"path":"b","data":1}]'},
        R.WRITE_ACKNOWLEDGEMENT,
    ),
    (R.CREATEANDUPDATE, {"name": "secret/n1", "data": "{}"}, R.WRITE_ACKNOWLEDGEMENT),
    (R.CREATEANDPATCH, {"name": "secret/n2", "path": "a", "data": "1"}, R.WRITE_ACKNOWLEDGEMENT),
]


@pytest.mark.parametrize(("action", "fields", "allowed_reply"), RECORD_MATRIX)
async def test_record_action_matrix(
    url: str, action: int, fields: dict[str, Any], allowed_reply: int
) -> None:
    """Each record action on a secret record: the admin is served, bob refused with the
    action as originalAction and the write's correlationId / isWriteAck."""
    alice, bob = await login(url, "alice"), await login(url, "bob")
    try:
        await alice.send(write("secret/m", {"a": 1}, ack="seed"))
        assert (await alice.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        writes = action in (
            R.UPDATE,
            R.PATCH,
            R.ERASE,
            R.PATCH_MULTI,
            R.CREATEANDUPDATE,
            R.CREATEANDPATCH,
        )
        extra: dict[str, Any] = {"version": -1, "is_write_ack": True} if writes else {}
        msg = Message(Topic.RECORD, action, correlation_id="m", **fields, **extra)
        await bob.send(msg)
        got = await bob.recv_until(Topic.RECORD, R.MESSAGE_DENIED)
        assert (got.original_action, got.correlation_id) == (action, "m")
        assert got.name == (fields.get("name") or fields["names"][0])
        assert got.is_write_ack is (True if writes else None)
        await alice.send(msg)
        served = await alice.recv_until(Topic.RECORD, allowed_reply)
        assert not served.is_error
        await alice.send(Message(Topic.RECORD, R.READ, name="secret/m"))
        after = await alice.recv_until(Topic.RECORD, R.READ_RESPONSE)
        assert after.version == (1 if not writes or "secret/n" in str(fields) else 2)
    finally:
        await alice.close()
        await bob.close()


async def test_a_rule_reading_too_many_records_is_counted(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    perms = tmp_path / "cross.yml"
    rule = " && ".join(f"_('other/{i}') === null" for i in range(12))
    perms.write_text(yaml.safe_dump({"record": {"*": {"read": rule, "write": True}}}))
    server = await make_server({"permissions": str(perms), "permissions_max_cross_reads": 8})
    client = await WireClient.connect(url_of(server), login={})
    try:
        await client.send(Message(Topic.RECORD, RecordAction.READ, name="x"))
        got = await client.recv()
        assert (got.action, got.name) == (RecordAction.MESSAGE_PERMISSION_ERROR, "x")
        assert server.trips["permissions_max_cross_reads"] == 1
    finally:
        await client.close()
