"""The store under the real server and record handler, over a real SQLite file: conflicts
resolved at flush time reach subscribers, write acks wait for storage, NOTIFY re-reads."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.base import Put
from connectors.sql import SQLConnector
from gateway.client import Client
from gateway.exceptions import RecordError
from gateway.protocol import Message, RecordAction, Topic
from tests.conftest import url_of

R = RecordAction


@pytest.fixture
def sqlite(tmp_path: Path) -> dict[str, str]:
    return {
        "type": "sql",
        "url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
        "table": f"t_{uuid.uuid4().hex[:8]}",
    }


@pytest.fixture
async def storage(sqlite: dict[str, str]) -> AsyncIterator[SQLConnector]:
    """A second writer on the same table (a data team)."""
    async with SQLConnector(sqlite["url"], table=sqlite["table"]) as connector:
        yield connector


def write(name: str, version: int, data: object, ack: str | None = None) -> Message:
    return Message(
        Topic.RECORD,
        R.UPDATE if version > 0 else R.CREATEANDUPDATE,
        name=name,
        version=version,
        data=json.dumps(data),
        correlation_id=ack,
        is_write_ack=True if ack else None,
    )


async def subscribe(peer, name: str) -> Message:  # type: ignore[no-untyped-def]
    await peer.send(
        Message(Topic.RECORD, R.SUBSCRIBECREATEANDREAD, names=[name], correlation_id="s")
    )
    return await peer.recv_until(Topic.RECORD, R.READ_RESPONSE)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("merge", {"a": 2, "b": "theirs"}),
        ("storage-wins", {"a": 1, "b": "theirs"}),
        ("gateway-wins", {"a": 2, "b": 1}),
    ],
)
async def test_a_conflict_at_flush_reaches_subscribers_and_storage(
    make_server, connect, sqlite, storage, policy, expected
) -> None:
    server = await make_server(
        {"storage": sqlite, "write_behind": {"interval": 60, "conflict_policy": policy}}
    )
    alice = await connect(to=url_of(server))
    bob = await connect(to=url_of(server))
    await alice.send(write("doc", -1, {"a": 1, "b": 1}, ack="c1"))
    assert (await alice.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    assert (await subscribe(bob, "doc")).version == 1

    await storage.write([Put("doc", 2, {"a": 1, "b": "theirs"})])  # behind the server's back
    await alice.send(write("doc", 2, {"a": 2, "b": 1}, ack="c2"))
    ack = await alice.recv()
    if policy == "storage-wins":  # the write was dropped for theirs: its ack is an error
        assert (ack.action, ack.correlation_id, ack.is_write_ack, ack.is_error) == (
            R.RECORD_UPDATE_ERROR,
            "c2",
            True,
            True,
        )
        assert "conflict_policy storage-wins" in json.loads(ack.data or "")
    else:  # gateway-wins writes ours; merge keeps our change of a
        assert (ack.action, ack.correlation_id) == (R.WRITE_ACKNOWLEDGEMENT, "c2")
    seen = await bob.recv_until(Topic.RECORD, R.UPDATE)
    assert (seen.version, json.loads(seen.data)) == (2, {"a": 2, "b": 1})  # the write itself
    pushed = await bob.recv_until(Topic.RECORD, R.UPDATE)
    assert (pushed.version, json.loads(pushed.data)) == (3, expected)  # the resolution
    async with asyncio.timeout(5):  # a failed ack does not wait for the resolution's write
        while (stored := await storage.get("doc")) is None or stored.version < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert (stored.version, stored.data) == (3, expected)


async def test_notify_rereads_what_changed_in_storage(
    make_server, connect, sqlite, storage
) -> None:
    server = await make_server({"storage": sqlite})
    alice = await connect(to=url_of(server))
    await alice.send(write("doc", -1, {"v": 1}, ack="c"))
    assert (await alice.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    assert (await subscribe(alice, "doc")).version == 1
    await storage.write([Put("doc", 5, {"v": "data team"})])
    await alice.send(Message(Topic.RECORD, R.NOTIFY, names=["doc"], correlation_id="n"))
    pushed = await alice.recv_until(Topic.RECORD, R.UPDATE)
    assert (pushed.version, json.loads(pushed.data)) == (5, {"v": "data team"})


async def test_the_python_client_raises_when_storage_wins_drops_its_write(
    make_server, sqlite, storage
) -> None:
    server = await make_server({"storage": sqlite, "write_behind": {"interval": 60}})
    async with Client(url_of(server), auth={"username": "worker"}) as client:
        record = await client.record.get("doc")
        await record.set({"a": 1})  # durable: v1 is stored
        await storage.write([Put("doc", 5, {"a": "theirs"})])  # behind the server's back
        with pytest.raises(RecordError) as raised:
            await record.set({"a": 2})
        assert raised.value.code == "RECORD_UPDATE_ERROR"
        assert "conflict_policy storage-wins" in str(raised.value)
        async with asyncio.timeout(5):  # the client is pushed storage's version
            while record.version != 5:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert record.data == {"a": "theirs"}
        await record.set({"a": 3})  # and writes on top of it
    stored = await storage.get("doc")
    assert stored is not None and (stored.version, stored.data) == (6, {"a": 3})
