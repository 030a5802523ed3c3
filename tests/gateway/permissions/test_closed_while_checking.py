"""A client that disconnects while its message waits on storage (a rule's ``_()`` read, or its
record's load) leaves nothing behind: no subscription or RPC provider registered for a
connection that is gone, on a real server over real PostgreSQL (the wait is a real lock). The
connection's cleanup runs after the message it was handling, so what that message registered
is removed with it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
import yaml

from connectors.sql import SQLConnector
from gateway.protocol import EventAction, Message, RecordAction, RpcAction, Topic
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.servers import require_postgres
from tests.wire import WireClient

RULES = {
    "event": {"*": {"publish": True, "subscribe": "_('closed/' + name) === null", "listen": True}},
    "rpc": {"*": {"provide": "_('closed/' + name) === null", "request": True}},
    "record": {"*": {"read": True, "write": True, "create": True, "delete": True}},
}


@pytest.fixture
async def table() -> AsyncIterator[tuple[str, str]]:
    url = require_postgres()
    connector = SQLConnector(url, table=f"closed_{uuid.uuid4().hex[:12]}")
    await connector.open()
    yield url, connector.table_name
    await connector.drop()
    await connector.close()


def _registry(server: Server, topic: int) -> object:
    return {
        Topic.EVENT: server.events.subscriptions,
        Topic.RPC: server.rpc.providers,
        Topic.RECORD: server.records.subscriptions,
    }[topic]


@pytest.mark.parametrize(
    "msg",
    [
        Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["chat/a"], correlation_id="s"),
        Message(Topic.RPC, RpcAction.PROVIDE, names=["add"], correlation_id="p"),
        Message(Topic.RECORD, RecordAction.SUBSCRIBEANDREAD, names=["r/1"], correlation_id="r"),
    ],
    ids=["event subscribe (rule reads)", "rpc provide (rule reads)", "record subscribe (load)"],
)
async def test_a_client_gone_while_storage_is_slow_leaves_nothing_registered(
    make_server: ServerFactory, tmp_path: Path, table: tuple[str, str], msg: Message
) -> None:
    url, name = table
    (tmp_path / "perms.yml").write_text(yaml.safe_dump(RULES))
    server = await make_server(
        {
            "storage": {"type": "sql", "url": url, "table": name, "timeout": 30},
            "permissions": str(tmp_path / "perms.yml"),
        }
    )
    lock = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        transaction = lock.transaction()
        await transaction.start()
        await lock.execute(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE')  # reads wait
        client = await WireClient.connect(url_of(server), login={})
        await client.send(msg)
        if msg.topic == Topic.RECORD:  # acknowledged first, as the reference does
            assert (await client.recv()).is_ack
        await client.expect_silence()  # no answer: the read is waiting on the lock
        await client.close()
        await asyncio.sleep(0.3)
        await transaction.commit()  # the read completes after the client is gone
    finally:
        await lock.close()
    await asyncio.sleep(0.5)
    registry = _registry(server, msg.topic)
    assert not registry.has_subscribers(msg.names[0])  # type: ignore[attr-defined]
    assert len(registry) == 0  # type: ignore[arg-type]
    assert not server.connections
