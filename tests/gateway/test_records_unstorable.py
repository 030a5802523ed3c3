"""Writes storage can never hold, on a real server over real storage: PostgreSQL (whose JSONB and
text cannot hold U+0000, which the SQL connector declares) refuses them at once with
INVALID_MESSAGE_DATA naming the reason, so no subscriber sees them and nothing reaches storage;
SQLite (which holds U+0000) accepts and stores the same writes."""

from __future__ import annotations

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
