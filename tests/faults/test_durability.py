"""Durability across process death: acknowledged writes survive SIGKILL and a restart;
SIGTERM flushes everything pending before the process exits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.protocol import Message, Topic
from tests.faults.conftest import R, Storage, acks, read, write

LONG = 60.0
"""A flush interval that never elapses during a test: only acks and shutdown flush."""


async def test_acknowledged_writes_survive_sigkill_and_restart(
    storage: Storage, start_server, peers
) -> None:
    config = {"storage": storage.section(), "write_behind": {"interval": LONG}}
    server = await start_server(config)
    peer = await peers(server.url)
    names = [f"doc/{i}" for i in range(40)]
    for i, name in enumerate(names):
        await peer.send(write(name, {"i": i, "text": "ü/\"'"}, ack=f"c{i}"))
    for version in range(2, 12):  # one record written over and over, every write acked
        await peer.send(write("hot", {"v": version}, ack=f"h{version}"))
    assert len(await acks(peer, len(names) + 10)) == len(names) + 10
    await server.kill()

    stored = await storage.read([*names, "hot"])
    assert stored == {
        **{name: (1, {"i": i, "text": "ü/\"'"}) for i, name in enumerate(names)},
        "hot": (10, {"v": 11}),
    }

    restarted = await start_server(config)
    reader = await peers(restarted.url)
    assert await read(reader, "doc/7") == (1, {"i": 7, "text": "ü/\"'"})
    assert await read(reader, "hot") == (10, {"v": 11})


async def test_sigterm_flushes_everything_pending(storage: Storage, start_server, peers) -> None:
    server = await start_server({"storage": storage.section(), "write_behind": {"interval": LONG}})
    peer = await peers(server.url)
    names = [f"item/{i}" for i in range(200)]
    for i, name in enumerate(names):
        await peer.send(write(name, {"i": i}))  # no acks: nothing hurries these
    await peer.send(write("last", {"done": True}))
    assert await read(peer, "last") == (1, {"done": True})  # the server has applied them all
    assert set((await storage.read(names)).values()) == {None}  # ...and written none yet
    assert await server.terminate() == 0
    stored = await storage.read(names)
    assert stored == {name: (1, {"i": i}) for i, name in enumerate(names)}


async def test_with_no_config_records_persist_in_sqlite_in_the_data_directory(
    tmp_path: Path, start_server, peers
) -> None:
    server = await start_server(None)  # run in tmp_path: ./recordgate-data/records.db
    peer = await peers(server.url)
    await peer.send(write("user/1", {"name": "ada"}, ack="1"))
    await peer.send(write("user/2", {"name": "bob"}))  # not acked: the SIGTERM flush saves it
    await acks(peer, 1)
    assert await server.terminate() == 0
    assert (tmp_path / "recordgate-data" / "records.db").is_file()

    restarted = await start_server(None)
    reader = await peers(restarted.url)
    assert await read(reader, "user/1") == (1, {"name": "ada"})
    assert await read(reader, "user/2") == (1, {"name": "bob"})


async def test_acknowledged_deletes_survive_sigkill_and_restart(
    storage: Storage, start_server, peers
) -> None:
    """DELETE_SUCCESS means the delete is in storage: killed right after the last one, the
    server comes back without any of the deleted records (and with the others)."""
    config = {"storage": storage.section(), "write_behind": {"interval": LONG}}
    server = await start_server(config)
    peer = await peers(server.url)
    names = [f"doomed/{i}" for i in range(20)]
    for i, name in enumerate([*names, "kept"]):
        await peer.send(write(name, {"i": i}, ack=name))
    await acks(peer, len(names) + 1)
    watcher = await peers(server.url)  # a subscriber learns of each delete at once
    await watcher.send(Message(Topic.RECORD, R.SUBSCRIBE, names=names, correlation_id="s"))
    assert (await watcher.recv()).is_ack
    for name in names:
        await peer.send(Message(Topic.RECORD, R.DELETE, name=name))
    confirmed = set()
    async with asyncio.timeout(10):
        while len(confirmed) < len(names):
            msg = await peer.recv(10)
            assert msg.action == R.DELETE_SUCCESS, msg
            confirmed.add(msg.name)
    await server.kill()  # within a millisecond or so of the last DELETE_SUCCESS
    assert confirmed == set(names)
    assert await storage.read(names) == dict.fromkeys(names)
    deleted = {(await watcher.recv()).name for _ in names}
    assert deleted == set(names)  # every DELETED arrived (before the process died)

    restarted = await start_server(config)
    reader = await peers(restarted.url)
    for name in names:
        await reader.send(Message(Topic.RECORD, R.HEAD, name=name))
        assert (await reader.recv()).version == -1, name
    assert await read(reader, "kept") == (1, {"i": 20})
