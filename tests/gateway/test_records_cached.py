"""Records through the real write-behind store (``CachedStore`` over the memory connector).

A second connector on the same ``memory://`` store plays "someone else writing to storage".
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from connectors.base import Put
from connectors.memory import MemoryConnector
from gateway.protocol import RecordAction, Topic
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.gateway.test_records import get_record, read, rec
from tests.wire import WireClient

R = RecordAction


@pytest.fixture
async def storage() -> AsyncIterator[str]:
    url = f"memory://records-{uuid.uuid4().hex[:8]}"
    yield url
    MemoryConnector.drop_store(url)


@pytest.fixture
async def outside(storage: str) -> AsyncIterator[MemoryConnector]:
    """Direct access to the storage behind the server."""
    async with MemoryConnector(storage) as connector:
        yield connector


async def start(make_server: ServerFactory, storage: str, interval: float) -> Server:
    return await make_server(
        {
            "storage": {"type": "memory", "url": storage},
            "write_behind": {"interval": interval, "conflict_policy": "storage-wins"},
        }
    )


async def test_write_ack_means_the_version_is_in_storage(make_server, storage, outside) -> None:
    server = await start(make_server, storage, interval=30.0)  # only an ack expedites a flush
    async with await WireClient.connect(url_of(server), login={}) as alice:
        await get_record(alice, "acked")
        await alice.send(rec(R.UPDATE, name="acked", version=1, data='{"a":1}'))
        await alice.send(
            rec(
                R.PATCH,
                name="acked",
                version=2,
                path="b",
                data="2",
                correlation_id="w",
                is_write_ack=True,
            )
        )
        got = await alice.recv()
        assert (got.action, got.correlation_id) == (R.WRITE_ACKNOWLEDGEMENT, "w")
        stored = await outside.get("acked")
        assert stored is not None and (stored.version, stored.data) == (2, {"a": 1, "b": 2})


async def test_notify_pushes_a_change_made_in_storage(make_server, storage, outside) -> None:
    server = await start(make_server, storage, interval=0.05)
    async with (
        await WireClient.connect(url_of(server), login={}) as alice,
        await WireClient.connect(url_of(server), login={}) as bob,
    ):
        await get_record(bob, "n")
        await server.store.durable("n", 0)
        await outside.write([Put("n", 4, {"by": "data team"})])
        await alice.send(rec(R.NOTIFY, names=["n"], correlation_id="x"))
        assert (await alice.recv()).is_ack
        got = await bob.recv()
        assert (got.action, got.version, got.data) == (R.UPDATE, 4, '{"by":"data team"}')
        assert await read(alice, "n") == (4, {"by": "data team"})


async def test_conflict_resolved_in_storages_favour_reaches_subscribers(
    make_server, storage, outside
) -> None:
    server = await start(make_server, storage, interval=0.2)
    async with (
        await WireClient.connect(url_of(server), login={}) as alice,
        await WireClient.connect(url_of(server), login={}) as bob,
    ):
        await get_record(alice, "c")
        await get_record(bob, "c")
        await server.store.durable("c", 0)
        await alice.send(rec(R.UPDATE, name="c", version=1, data='{"ours":1}'))
        assert (await bob.recv()).version == 1
        await outside.write([Put("c", 5, {"theirs": 1})])  # lands before our flush
        for peer in (alice, bob):  # the writer hears it too: its write was overruled
            got = await peer.recv_until(Topic.RECORD, R.UPDATE)
            assert (got.version, got.data) == (5, '{"theirs":1}')
        await alice.send(rec(R.UPDATE, name="c", version=6, data='{"next":1}'))
        assert (await bob.recv()).version == 6
