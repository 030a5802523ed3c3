"""Permission rules that read records (``_()``) by a name built from what a client sent, on a
real server over real PostgreSQL: a name storage cannot hold never reaches it, and a read
storage fails is answered as the rule's failure, never dropped."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from connectors.base import Put
from connectors.sql import SQLConnector
from gateway.protocol import EventAction, Message, RecordAction, Topic
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.gateway.test_server import http_get
from tests.proxy import TcpProxy
from tests.servers import require_postgres
from tests.wire import WireClient

E = EventAction
ROOM = "chat/a\u0000b"
RULES = {
    "event": {
        "*": {"publish": True, "subscribe": True, "listen": True},
        # A room is open to publish in unless a record closes it.
        "chat/$room": {"publish": "_('closed/' + $room) === null"},
    }
}


@pytest.fixture
async def table() -> AsyncIterator[tuple[str, str]]:
    url = require_postgres()
    connector = SQLConnector(url, table=f"gate_{uuid.uuid4().hex[:12]}")
    await connector.open()
    yield url, connector.table_name
    await connector.drop()
    await connector.close()


async def _serve(
    make_server: ServerFactory, tmp_path: Path, table: tuple[str, str], storage_type: str
) -> Server:
    (tmp_path / "perms.yml").write_text(yaml.safe_dump(RULES))
    url, name = table
    return await make_server(
        {
            "storage": {"type": storage_type, "url": url, "table": name},
            "permissions": str(tmp_path / "perms.yml"),
        }
    )


async def _subscribed(server: Server) -> WireClient:
    peer = await WireClient.connect(url_of(server), login={})
    await peer.send(Message(Topic.EVENT, E.SUBSCRIBE, names=[ROOM], correlation_id="s"))
    assert (await peer.recv()).is_ack
    return peer


async def test_a_name_storage_cannot_hold_reads_as_missing_without_asking_it(
    make_server: ServerFactory, tmp_path: Path, table: tuple[str, str]
) -> None:
    """PostgreSQL declares U+0000: no record so named can exist, so the rule reads null and
    the event goes out (before: the read failed in PostgreSQL, the emit was dropped with an
    error logged and no answer)."""
    server = await _serve(make_server, tmp_path, table, "sql")
    subscriber = await _subscribed(server)
    publisher = await WireClient.connect(url_of(server), login={})
    try:
        await publisher.send(Message(Topic.EVENT, E.EMIT, name=ROOM, data=json.dumps(1)))
        got = await subscriber.recv()
        assert (got.action, got.name, got.data) == (E.EMIT, ROOM, "1"), got
        await publisher.expect_silence()
        # Storage was never asked (store.stats.errors counts flushes only, not reads).
        assert _read_errors(await _metrics(server)) == {}
    finally:
        await subscriber.close()
        await publisher.close()


async def test_a_read_storage_fails_is_the_rule_failing(
    make_server: ServerFactory, tmp_path: Path, table: tuple[str, str]
) -> None:
    """A connector that does not declare U+0000 lets the read reach PostgreSQL, which fails
    it: the publisher is answered MESSAGE_PERMISSION_ERROR at once, as for any rule that fails
    (and as the reference answers a failed cross-read), nothing is delivered, the server goes
    on serving."""
    server = await _serve(
        make_server, tmp_path, table, "tests.faults.poison:UndeclaringSQLConnector"
    )
    subscriber = await _subscribed(server)
    publisher = await WireClient.connect(url_of(server), login={})
    try:
        await publisher.send(Message(Topic.EVENT, E.EMIT, name=ROOM, data=json.dumps(1)))
        reply = await publisher.recv()
        assert (reply.action, reply.name, reply.is_error) == (
            E.MESSAGE_PERMISSION_ERROR,
            ROOM,
            True,
        ), reply
        await subscriber.expect_silence()
        await publisher.send(Message(Topic.EVENT, E.EMIT, name="chat/open", data="2"))
        await publisher.send(Message(Topic.EVENT, E.EMIT, name=ROOM, data="3"))
        assert (await publisher.recv()).action == E.MESSAGE_PERMISSION_ERROR
    finally:
        await subscriber.close()
        await publisher.close()


async def test_a_storage_outage_during_a_rule_is_told_apart_from_policy(
    make_server: ServerFactory,
    tmp_path: Path,
    table: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL cut (a real outage, through a TCP proxy) while a rule reads a record: the
    sender is refused with MESSAGE_PERMISSION_ERROR, and operators can tell this from a policy
    refusal: a WARNING of its own naming the record and the storage error, and
    recordgate_permission_read_errors_total{kind="unavailable"} in /metrics. A policy denial
    (the record closes the room) stays an INFO line and counts nothing there."""
    url, name = table
    async with TcpProxy("127.0.0.1", 5432) as proxy:
        (tmp_path / "perms.yml").write_text(yaml.safe_dump(RULES))
        server = await make_server(
            {
                "storage": {
                    "type": "sql",
                    "url": proxy.url_for(url),
                    "table": name,
                    "timeout": 2,
                },
                "permissions": str(tmp_path / "perms.yml"),
            }
        )
        async with SQLConnector(url, table=name) as direct:
            await direct.write([Put("closed/shut", 1, {"by": "ops"})])
        publisher = await WireClient.connect(url_of(server), login={})
        try:
            caplog.set_level(logging.INFO, logger="gateway")
            await publisher.send(Message(Topic.EVENT, E.EMIT, name="chat/shut", data="1"))
            denied = await publisher.recv()
            assert denied.action == E.MESSAGE_DENIED, denied
            assert _read_errors(await _metrics(server)) == {}
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

            await proxy.cut()
            await publisher.send(Message(Topic.EVENT, E.EMIT, name="chat/open", data="2"))
            failed = await publisher.recv()
            assert (failed.action, failed.name) == (E.MESSAGE_PERMISSION_ERROR, "chat/open")
            warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1, warnings
            text = warnings[0].getMessage()
            assert "'closed/open'" in text and "unavailable" in text, text
            assert _read_errors(await _metrics(server)) == {"unavailable": 1}
        finally:
            await publisher.close()
            await proxy.restore()


async def _metrics(server: Server) -> str:
    status, body = await http_get(server.port, "/metrics")
    assert status == 200
    return body.decode()


def _read_errors(body: str) -> dict[str, int]:
    """Non-zero recordgate_permission_read_errors_total by kind."""
    found = re.findall(
        r'^recordgate_permission_read_errors_total\{kind="(\w+)"\} (\d+)$', body, re.M
    )
    return {kind: int(n) for kind, n in found if int(n)}


async def test_a_subscribe_whose_rule_reads_old_data_is_answered_during_an_outage(
    make_server: ServerFactory, tmp_path: Path, table: tuple[str, str]
) -> None:
    """SUBSCRIBE, LISTEN and NOTIFY are checked before their handler, so a rule's ``oldData``
    is loaded by the gate, not by a record operation that would answer its failure. With
    PostgreSQL cut, a SUBSCRIBE under such a rule is answered MESSAGE_PERMISSION_ERROR (as a
    failed ``_()`` read, and as the reference denies when it cannot load the record); before,
    the StorageError escaped the check and the client got no answer at all."""
    url, name = table
    rules = {"record": {"*": {"read": "oldData === null || oldData.open === true"}}}
    (tmp_path / "perms.yml").write_text(yaml.safe_dump(rules))
    async with TcpProxy("127.0.0.1", 5432) as proxy:
        server = await make_server(
            {
                "storage": {"type": "sql", "url": proxy.url_for(url), "table": name, "timeout": 2},
                "permissions": str(tmp_path / "perms.yml"),
            }
        )
        client = await WireClient.connect(url_of(server), login={})
        try:
            await proxy.cut()
            await client.send(
                Message(Topic.RECORD, RecordAction.SUBSCRIBE, names=["r/1"], correlation_id="s")
            )
            reply = await client.recv()
            assert (reply.action, reply.name, reply.original_action) == (
                RecordAction.MESSAGE_PERMISSION_ERROR,
                "r/1",
                RecordAction.SUBSCRIBE,
            ), reply
            assert _read_errors(await _metrics(server)) == {"unavailable": 1}
            await client.expect_silence()
        finally:
            await client.close()
            await proxy.restore()
