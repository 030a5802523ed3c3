"""The MongoDB server killed mid-load (SIGKILL) and restarted on the same port: the flusher
neither hangs nor loses a batch, and every acknowledged write is in the database afterwards.

The server is the NX-27017 MongoDB **stand-in** (no genuine MongoDB here) in its file-backed
mode (``--db FILE``, SQLite in WAL mode), which keeps what it committed across a kill; its
in-memory mode would lose everything, acknowledged or not, so it cannot show this.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from connectors.mongodb import MongoConnector
from gateway.config import WriteBehindConfig
from gateway.store import CachedStore, Record
from tests.standins.mongodb import MongoStandin, require_standin

pytestmark = pytest.mark.needs_server("mongodb stand-in")


async def test_acknowledged_writes_survive_the_server_killed_mid_load(tmp_path: Path) -> None:
    require_standin()
    standin = MongoStandin(tmp_path, path=tmp_path / "standin.db").start()
    url = standin.url("killed")
    store = CachedStore(
        MongoConnector(url, timeout=1),
        write_behind=WriteBehindConfig(
            interval=0.05, batch_size=50, retry_initial=0.05, retry_max=0.3, shutdown_timeout=20
        ),
    )
    await store.open()
    acked: dict[str, tuple[int, dict[str, int]]] = {}
    acked_when_down: list[str] = []
    count = itertools.count(1)
    acks = 0
    down = asyncio.Event()
    stop = asyncio.Event()

    async def writer(task: int) -> None:
        nonlocal acks
        for i in itertools.count():
            if stop.is_set():
                return
            # A new record every time, so what was acknowledged before the kill is never
            # rewritten after the restart: it must have survived the kill itself.
            name = f"w{task}/{i}"
            version = 1 + i % 3
            data = {"task": task, "i": i, "version": version}
            store.put(Record(name, version, data))
            await store.durable(name, version)  # the write acknowledgement waits for this
            acked[name] = (version, data)
            acks = next(count)
            if down.is_set():
                acked_when_down.append(name)

    writers = [asyncio.create_task(writer(task)) for task in range(4)]
    try:
        await asyncio.sleep(0.5)
        before = acks
        standin.kill()  # mid-load: batches are in flight or queued
        down.set()
        await asyncio.sleep(1.5)
        stalled = len(acked_when_down)
        down.clear()
        await asyncio.to_thread(standin.start)  # same port, same file
        await asyncio.sleep(1.5)
        stop.set()
        async with asyncio.timeout(30):  # the flusher recovered: every waiting write completes
            await asyncio.gather(*writers)
    finally:
        stop.set()
        for task in writers:
            task.cancel()
        await store.close()
    assert before > 0, "nothing was acknowledged before the kill"
    assert stalled <= 8, "acknowledged while the server was dead"  # at most those in flight
    assert store.stats.retried > 0, "the outage never reached the flusher"
    assert acks > before + stalled, "nothing was acknowledged after the restart"

    try:
        async with MongoConnector(url, timeout=5) as direct:
            stored = await direct.get_many(list(acked))
    finally:
        standin.kill()
    for name, (version, data) in acked.items():
        assert name in stored, f"acknowledged {name} v{version} is not in the database"
        assert stored[name].version == version and stored[name].data == data
