"""Storage down while a real server runs: PostgreSQL behind a TCP proxy that the test cuts.

Clients keep reading and writing from the cache, the flusher retries, write acks wait for
storage, nothing accepted is lost once it returns; the pending cap pushes back meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.protocol import Message, Topic
from tests.faults.conftest import R, Storage, acks, read, write
from tests.proxy import TcpProxy


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    async with TcpProxy("127.0.0.1", 5432) as proxy:
        yield proxy


def config(storage: Storage, proxy: TcpProxy, **write_behind: object) -> dict[str, object]:
    return {
        "storage": storage.section(proxy.url_for(storage.url)),
        "write_behind": {"interval": 0.1, "retry_initial": 0.05, "retry_max": 0.2, **write_behind},
    }


async def test_clients_ride_out_an_outage_and_nothing_is_lost(
    postgres: Storage, proxy: TcpProxy, start_server, peers
) -> None:
    server = await start_server(config(postgres, proxy))
    writer, watcher = await peers(server.url), await peers(server.url)
    names = [f"doc/{i}" for i in range(20)]
    for i, name in enumerate(names):
        await writer.send(write(name, {"i": i}, ack=name))
    await acks(writer, len(names))
    await watcher.send(
        Message(Topic.RECORD, R.SUBSCRIBEANDREAD, names=["doc/3"], correlation_id="s")
    )
    await watcher.recv_until(Topic.RECORD, R.READ_RESPONSE)

    await proxy.cut()
    for round_ in range(2, 6):  # every record rewritten, from the cache, while storage is down
        for i, name in enumerate(names):
            await writer.send(write(name, {"i": i, "round": round_}))
    update = await watcher.recv_until(Topic.RECORD, R.UPDATE)  # subscribers still hear writes
    assert update.name == "doc/3"
    assert await read(writer, "doc/0") == (5, {"i": 0, "round": 5})
    await writer.send(write("doc/0", {"i": 0, "acked": True}, ack="during"))
    await writer.expect_silence(0.5)  # the ack waits for storage
    assert (await postgres.read(["doc/0"]))["doc/0"] == (1, {"i": 0})

    await proxy.restore()
    assert await acks(writer, 1) == {"during"}
    await postgres.wait_for("doc/19", (5, {"i": 19, "round": 5}))
    stored = await postgres.read(names)
    assert stored["doc/0"] == (6, {"i": 0, "acked": True})
    assert stored == {
        "doc/0": (6, {"i": 0, "acked": True}),
        **{name: (5, {"i": i, "round": 5}) for i, name in enumerate(names) if i},
    }


async def test_the_pending_cap_pushes_back_instead_of_growing(
    postgres: Storage, proxy: TcpProxy, start_server, peers
) -> None:
    server = await start_server(config(postgres, proxy, max_pending=10))
    peer = await peers(server.url)
    names = [f"doc/{i}" for i in range(25)]
    for start in range(0, len(names), 5):  # in steps below the cap, which holds even now
        for name in names[start : start + 5]:
            await peer.send(write(name, {"v": 0}, ack=name))
        await acks(peer, 5)

    await proxy.cut()
    for name in names:
        await peer.send(write(name, {"v": 1}))
    refused = []
    async with asyncio.timeout(5):
        while len(refused) < len(names) - 10:
            msg = await peer.recv()
            assert msg.action == R.RECORD_UPDATE_ERROR, msg
            refused.append(msg.name)
    await peer.expect_silence(0.3)
    assert refused == names[10:]  # the first ten were accepted, the rest refused
    # Accepted records coalesce: more writes to them are still taken, nothing new is.
    await peer.send(write("doc/0", {"v": 2}))
    await peer.send(write("doc/24", {"v": 2}))
    msg = await peer.recv()
    assert (msg.action, msg.name) == (R.RECORD_UPDATE_ERROR, "doc/24")
    assert await read(peer, "doc/24") == (1, {"v": 0})  # a refused write changed nothing

    await proxy.restore()
    await postgres.wait_for("doc/9", (2, {"v": 1}))  # the next retry drains the backlog...
    await peer.send(write("doc/24", {"v": 3}, ack="after"))  # ...and writes are taken again
    assert await acks(peer, 1) == {"after"}
    stored = await postgres.read(names)
    assert stored["doc/0"] == (3, {"v": 2})
    assert all(stored[name] == (2, {"v": 1}) for name in names[1:10])
    assert all(stored[name] == (1, {"v": 0}) for name in names[10:24])
    assert stored["doc/24"] == (2, {"v": 3})
