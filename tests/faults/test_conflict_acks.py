"""Acknowledgements under each conflict policy, with real ``recordgate start`` processes on
SQLite, PostgreSQL and Redis: another writer changes the row behind the server's back (through a
connector of its own, as another server would), then an acknowledged write or a delete meets
it at flush time. An acknowledgement is a success only if what it acknowledges is stored."""

from __future__ import annotations

import json

import pytest

from connectors.base import Put
from connectors.registry import create_connector
from gateway.protocol import Message, Topic
from tests.faults.conftest import R, Storage, read, write

LONG = 60.0


async def behind_the_back(storage: Storage, name: str, version: int, data: object) -> None:
    other = create_connector(storage.connector, storage.url, **{storage.namespace: storage.table})
    async with other:
        [result] = await other.write([Put(name, version, data)])
        assert result.ok, result


@pytest.mark.parametrize(
    ("policy", "acknowledged", "stored"),
    [
        ("storage-wins", False, {"a": 1, "b": "theirs"}),
        ("gateway-wins", True, {"a": 2, "b": 1}),
        ("merge", True, {"a": 2, "b": "theirs"}),
    ],
)
async def test_an_acknowledged_write_meeting_a_newer_stored_version(
    storage: Storage, start_server, peers, policy: str, acknowledged: bool, stored: object
) -> None:
    config = {
        "storage": storage.section(),
        "write_behind": {"interval": LONG, "conflict_policy": policy},
    }
    server = await start_server(config)
    peer = await peers(server.url)
    await peer.send(write("doc", {"a": 1, "b": 1}, ack="c1"))
    assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    await behind_the_back(storage, "doc", 5, {"a": 1, "b": "theirs"})
    await peer.send(write("doc", {"a": 2, "b": 1}, ack="c2"))
    ack = await peer.recv()
    assert ack.correlation_id == "c2" and ack.is_write_ack
    if acknowledged:
        assert ack.action == R.WRITE_ACKNOWLEDGEMENT, ack
    else:
        assert (ack.action, ack.is_error) == (R.RECORD_UPDATE_ERROR, True), ack
        assert "storage holds version 5" in json.loads(ack.data or "")
    await storage.wait_for("doc", (6 if acknowledged else 5, stored))
    await server.kill()  # whatever was acknowledged survives
    restarted = await start_server(config)
    assert await read(await peers(restarted.url), "doc") == (6 if acknowledged else 5, stored)


async def test_a_delete_dropped_by_storage_wins_is_an_error(
    storage: Storage, start_server, peers
) -> None:
    config = {"storage": storage.section(), "write_behind": {"interval": LONG}}
    server = await start_server(config)
    peer = await peers(server.url)
    await peer.send(write("doc", {"v": 1}, ack="c1"))
    assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    await behind_the_back(storage, "doc", 3, {"v": "theirs"})
    await peer.send(Message(Topic.RECORD, R.DELETE, name="doc"))
    reply = await peer.recv()
    assert (reply.action, reply.name, reply.is_error) == (R.RECORD_DELETE_ERROR, "doc", True)
    assert reply.original_action == R.DELETE
    await storage.wait_for("doc", (3, {"v": "theirs"}))
    assert await read(peer, "doc") == (3, {"v": "theirs"})  # storage's version, as it said
