"""Writes storage can never hold, on a real server over real storage: PostgreSQL (whose JSONB and
text cannot hold U+0000, which the SQL connector declares) refuses them at once with
INVALID_MESSAGE_DATA naming the reason, so no subscriber sees them and nothing reaches storage;
SQLite (which holds U+0000) accepts and stores the same writes."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.sql import SQLConnector
from gateway.protocol import Message, RecordAction, Topic, payload
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.gateway.httpapi.client import ops
from tests.gateway.test_metrics import parse
from tests.gateway.test_records import get_record, read
from tests.gateway.test_server import http_get
from tests.servers import require_postgres
from tests.wire import WireClient, write

R = RecordAction

NUL = "a\u0000b"


def _writes(name: str) -> list[Message]:
    """U+0000 in a value, in a key, in a PATCH value, in a PATCH path, in PATCH_MULTI."""

    def patch(path: str, value: Any, cid: str) -> Message:
        return Message(
            Topic.RECORD,
            R.PATCH,
            name=name,
            version=-1,
            path=path,
            data=json.dumps(value),
            correlation_id=cid,
            is_write_ack=True,
        )

    multi = Message(
        Topic.RECORD,
        R.PATCH_MULTI,
        name=name,
        version=-1,
        data=json.dumps([{"path": "m", "data": NUL}]),
        correlation_id="multi",
        is_write_ack=True,
    )
    update = Message(
        Topic.RECORD,
        R.UPDATE,
        name=name,
        version=-1,
        data=json.dumps({"s": NUL}),
        correlation_id="update",
        is_write_ack=True,
    )
    return [
        write(name, {"s": NUL}, ack="value"),
        write(name, {NUL: 1}, ack="key"),
        update,
        patch("s", NUL, "patch"),
        patch(f"k{NUL}", 1, "path"),
        multi,
    ]


@pytest.fixture
async def storage(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SQLConnector]:
    """The server's storage, seen through a connector of its own (the same table)."""
    if request.param == "postgresql":
        url = require_postgres()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/r.db"
    connector = SQLConnector(url, table=f"nul_{uuid.uuid4().hex[:12]}")
    await connector.open()
    yield connector
    await connector.drop()
    await connector.close()


async def _serve(make_server: ServerFactory, storage: SQLConnector) -> Server:
    return await make_server(
        {"storage": {"type": "sql", "url": storage.url, "table": storage.table_name}}
    )


@pytest.mark.parametrize("storage", ["postgresql"], indirect=True)
async def test_postgresql_refuses_u0000_at_once_and_nothing_changes(
    make_server: ServerFactory, storage: SQLConnector
) -> None:
    server = await _serve(make_server, storage)
    writer = await WireClient.connect(url_of(server), login={})
    watcher = await WireClient.connect(url_of(server), login={})
    try:
        await writer.send(write("r/1", {"v": 1}, ack="first"))
        assert (await writer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        await get_record(watcher, "r/1")
        refused_before = payload.REFUSED["unstorable"]
        for msg in _writes("r/1"):
            await writer.send(msg)
            reply = await writer.recv()
            assert (reply.action, reply.is_error, reply.correlation_id) == (
                R.INVALID_MESSAGE_DATA,
                True,
                msg.correlation_id,
            ), reply
            assert "U+0000" in json.loads(reply.data or '""'), reply
        await watcher.expect_silence()  # no subscriber saw a state that would be undone
        await writer.expect_silence()  # and the writer got no acknowledgement besides
        assert payload.REFUSED["unstorable"] - refused_before == 6  # /metrics, by reason
        # A backslash followed by "u0000" is no U+0000: stored as usual.
        await writer.send(write("r/2", {"s": "\\u0000"}, ack="backslash"))
        assert (await writer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        assert await read(writer, "r/1") == (1, {"v": 1})

        answer = await ops(
            server.port,
            {"topic": "record", "action": "write", "recordName": "r/3", "data": {"s": NUL}},
            {"topic": "record", "action": "write", "recordName": "r/1", "path": "s", "data": NUL},
        )
        for result in answer["body"]:
            assert result["success"] is False
            assert (result["errorTopic"], result["errorEvent"]) == (
                "record",
                R.INVALID_MESSAGE_DATA,
            )
            assert "U+0000" in result["error"], result
        await watcher.expect_silence()
        assert payload.REFUSED["unstorable"] - refused_before == 8

        await server.store.flush()
        stats = server.store.stats
        assert (stats.failed, stats.reverted, stats.errors) == (0, 0, {})  # nothing refused
        stored = await storage.get("r/1")
        assert stored is not None and (stored.version, stored.data) == (1, {"v": 1})
        assert await storage.get("r/3") is None
        backslash = await storage.get("r/2")
        assert backslash is not None and backslash.data == {"s": "\\u0000"}
        counted = parse((await http_get(server.port, "/metrics"))[1])
        assert counted['recordgate_json_refused_total{reason="unstorable"}'] >= 8
    finally:
        await writer.close()
        await watcher.close()


@pytest.mark.parametrize("storage", ["sqlite"], indirect=True)
async def test_storage_that_holds_u0000_accepts_and_stores_it(
    make_server: ServerFactory, storage: SQLConnector
) -> None:
    server = await _serve(make_server, storage)
    writer = await WireClient.connect(url_of(server), login={})
    try:
        await writer.send(write("r/1", {"v": 1}, ack="first"))
        assert (await writer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        for msg in _writes("r/1"):
            await writer.send(msg)
            reply = await writer.recv()
            assert (reply.action, reply.correlation_id) == (
                R.WRITE_ACKNOWLEDGEMENT,
                msg.correlation_id,
            ), reply
        answer = await ops(
            server.port,
            {"topic": "record", "action": "write", "recordName": "r/3", "data": {"s": NUL}},
        )
        assert answer["body"] == [{"success": True}]
        await server.store.flush()
        stored = await storage.get("r/1")
        assert stored is not None and stored.version == 7
        assert stored.data == {"s": NUL, f"k{NUL}": 1, "m": NUL}
        third = await storage.get("r/3")
        assert third is not None and third.data == {"s": NUL}
    finally:
        await writer.close()


NAME = "r/a\u0000b"


def _name_messages() -> list[Message]:
    """Every RECORD action that names a record, naming ``NAME``."""

    def one(action: int, **fields: Any) -> Message:
        return Message(Topic.RECORD, action, name=NAME, **fields)

    def bulk(action: int, **fields: Any) -> Message:
        return Message(Topic.RECORD, action, names=[NAME], correlation_id="bulk", **fields)

    return [
        one(R.READ),
        one(R.HEAD),
        one(R.DELETE),
        bulk(R.SUBSCRIBECREATEANDREAD),
        bulk(R.SUBSCRIBEANDREAD),
        bulk(R.SUBSCRIBEANDHEAD),
        bulk(R.HEAD_BULK),
        bulk(R.SUBSCRIBE),
        bulk(R.UNSUBSCRIBE),
        bulk(R.NOTIFY),
        write(NAME, {"v": 1}, ack="write"),
        one(R.PATCH, version=-1, path="p", data="1", correlation_id="patch", is_write_ack=True),
    ]


@pytest.mark.parametrize("storage", ["postgresql"], indirect=True)
async def test_postgresql_refuses_u0000_in_names_at_once_for_every_action(
    make_server: ServerFactory, storage: SQLConnector
) -> None:
    """A name PostgreSQL cannot hold is answered INVALID_MESSAGE_DATA about that name, whatever
    the action, before it reaches storage (without the check: RECORD_LOAD_ERROR from a failed
    load, or a record created in the cache that could never be flushed)."""
    server = await _serve(make_server, storage)
    peer = await WireClient.connect(url_of(server), login={})
    try:
        refused_before = payload.REFUSED["unstorable"]
        messages = _name_messages()
        for msg in messages:
            await peer.send(msg)
            reply = await peer.recv()
            assert (reply.action, reply.name, reply.original_action, reply.is_error) == (
                R.INVALID_MESSAGE_DATA,
                NAME,
                msg.action,
                True,
            ), (msg, reply)
            assert reply.correlation_id == msg.correlation_id, reply
            assert "U+0000" in json.loads(reply.data or '""'), reply
            await peer.expect_silence(0.1)  # no ack, read response or load error besides
        assert payload.REFUSED["unstorable"] - refused_before == len(messages)

        # In a bulk message the name is refused on its own; the other names are served.
        await peer.send(
            Message(
                Topic.RECORD,
                R.SUBSCRIBECREATEANDREAD,
                names=["r/ok", NAME],
                correlation_id="mixed",
            )
        )
        refusal = await peer.recv()
        assert (refusal.action, refusal.name) == (R.INVALID_MESSAGE_DATA, NAME), refusal
        assert (await peer.recv()).action == R.SUBSCRIBECREATEANDREAD  # the ack
        served = await peer.recv()
        assert (served.action, served.name, served.version) == (R.READ_RESPONSE, "r/ok", 0)

        await server.store.flush()
        stats = server.store.stats
        assert (stats.failed, stats.reverted, stats.errors) == (0, 0, {})
        assert server.store.cached(NAME) is None
        stored = [snapshot.name async for snapshot in storage.scan()]
        assert stored == ["r/ok"]
        counted = parse((await http_get(server.port, "/metrics"))[1])
        assert counted['recordgate_json_refused_total{reason="unstorable"}'] >= len(messages) + 1
    finally:
        await peer.close()


@pytest.mark.parametrize("storage", ["postgresql"], indirect=True)
async def test_postgresql_refuses_u0000_in_names_over_http_and_the_python_client(
    make_server: ServerFactory, storage: SQLConnector
) -> None:
    from gateway.client import Client
    from gateway.exceptions import RecordError

    server = await _serve(make_server, storage)
    answer = await ops(
        server.port,
        {"topic": "record", "action": "read", "recordName": NAME},
        {"topic": "record", "action": "head", "recordName": NAME},
        {"topic": "record", "action": "write", "recordName": NAME, "data": {"a": 1}},
        {"topic": "record", "action": "delete", "recordName": NAME},
        {"topic": "record", "action": "notify", "recordNames": [NAME]},
    )
    assert len(answer["body"]) == 5
    for result in answer["body"]:
        assert result["success"] is False, result
        assert result["errorEvent"] == R.INVALID_MESSAGE_DATA, result
        assert "U+0000" in result["error"], result

    client = Client(url_of(server), auth={}, request_timeout=5.0)
    await client.connect()
    try:
        calls = [
            client.record.get(NAME),
            client.record.snapshot(NAME),
            client.record.head(NAME),
            client.record.set_data(NAME, {"a": 1}),
            client.record.notify([NAME]),
        ]
        for call in calls:
            with pytest.raises(RecordError) as refused:
                # Well inside the request timeout: the refusal reaches the call that waits.
                await asyncio.wait_for(call, 1.0)
            assert refused.value.code == "INVALID_MESSAGE_DATA", refused.value
            assert "U+0000" in str(refused.value), refused.value
    finally:
        await client.close()
    await server.store.flush()
    assert [snapshot async for snapshot in storage.scan()] == []
    assert server.store.stats.errors == {}


@pytest.mark.parametrize("storage", ["sqlite"], indirect=True)
async def test_storage_that_holds_u0000_in_names_serves_them(
    make_server: ServerFactory, storage: SQLConnector
) -> None:
    server = await _serve(make_server, storage)
    writer = await WireClient.connect(url_of(server), login={})
    watcher = await WireClient.connect(url_of(server), login={})
    try:
        cut = NAME.partition("\u0000")[0]
        await writer.send(write(cut, {"cut": True}, ack="cut"))
        assert (await writer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        subscribed = await get_record(watcher, NAME)
        assert (subscribed.name, subscribed.version) == (NAME, 0)
        await writer.send(write(NAME, {"v": 1}, ack="named"))
        assert (await writer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
        update = await watcher.recv()
        assert (update.name, json.loads(update.data or "null")) == (NAME, {"v": 1})
        await server.store.flush()
        stored = await storage.get(NAME)
        assert stored is not None and stored.data == {"v": 1}
        cut_stored = await storage.get(cut)
        assert cut_stored is not None and cut_stored.data == {"cut": True}
        server.store.forget(NAME)  # read back from storage, not the cache
        assert await read(writer, NAME) == (1, {"v": 1})
    finally:
        await writer.close()
        await watcher.close()
