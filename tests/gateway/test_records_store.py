"""Records against stores that are slow, full or failing: order, back-pressure, acks, errors."""

from __future__ import annotations

import asyncio
import json

from gateway.exceptions import BackPressure, StorageUnavailable
from gateway.protocol import RecordAction
from gateway.store import MemoryStore, Record
from tests.conftest import ServerFactory, url_of
from tests.gateway.test_records import get_record, read, rec
from tests.wire import WireClient

R = RecordAction


class ScriptedStore(MemoryStore):
    """A cache (``MemoryStore``) in front of a dict playing storage, with knobs for tests."""

    def __init__(self) -> None:
        super().__init__()
        self.storage: dict[str, Record] = {}
        self.loads: list[str] = []
        self.load_gate = asyncio.Event()
        self.load_gate.set()
        self.load_error: Exception | None = None
        self.durable_gate = asyncio.Event()
        self.durable_gate.set()
        self.durable_error: Exception | None = None
        self.delete_error: Exception | None = None
        self.full = False

    async def load(self, name: str) -> Record | None:
        cached = self.cached(name)
        if cached is not None:
            return cached
        self.loads.append(name)
        await self.load_gate.wait()
        if self.load_error is not None:
            raise self.load_error
        record = self.storage.get(name)
        if record is not None:
            super().put(record)
        return record

    def put(self, record: Record) -> None:
        if self.full:
            raise BackPressure("pending writes at the cap")
        super().put(record)
        self.storage[record.name] = record

    async def durable(self, name: str, version: int) -> None:
        await self.durable_gate.wait()
        if self.durable_error is not None:
            raise self.durable_error

    async def delete(self, name: str) -> asyncio.Future[None]:
        if self.delete_error is not None:
            raise self.delete_error
        stored = await super().delete(name)
        self.storage.pop(name, None)
        return stored

    def forget(self, name: str) -> None:
        self._records.pop(name, None)


async def start(make_server: ServerFactory) -> tuple[ScriptedStore, str]:
    store = ScriptedStore()
    server = await make_server(store=store)
    return store, url_of(server)


async def peers(url: str, n: int) -> list[WireClient]:
    return [await WireClient.connect(url, login={}) for _ in range(n)]


async def test_writes_queued_behind_a_cache_miss_apply_in_arrival_order(make_server) -> None:
    store, url = await start(make_server)
    store.storage["cold"] = Record("cold", 3, {"n": 3})
    alice, bob, watcher = await peers(url, 3)
    await watcher.send(rec(R.SUBSCRIBE, names=["cold"], correlation_id="s"))
    assert (await watcher.recv()).is_ack
    store.load_gate.clear()
    await alice.send(rec(R.UPDATE, name="cold", version=4, data='{"by":"alice"}'))
    await asyncio.sleep(0.05)  # alice's write is first in line, waiting for storage
    await bob.send(rec(R.UPDATE, name="cold", version=4, data='{"by":"bob"}'))
    await bob.send(rec(R.PATCH, name="cold", version=5, path="x", data="1"))
    await asyncio.sleep(0.05)
    await watcher.expect_silence(0.05)
    store.load_gate.set()
    got = await watcher.recv()
    assert (got.action, got.version, got.data) == (R.UPDATE, 4, '{"by":"alice"}')
    conflict = await bob.recv()
    assert (conflict.action, conflict.version, conflict.data) == (
        R.VERSION_EXISTS,
        4,
        '{"by":"alice"}',
    )
    got = await watcher.recv()  # bob's next write saw alice's snapshot
    assert (got.action, got.version, got.path) == (R.PATCH, 5, "x")
    assert store.loads == ["cold"]  # one storage read for the whole queue
    assert await read(watcher, "cold") == (5, {"by": "alice", "x": 1})
    for peer in (alice, bob, watcher):
        await peer.close()


async def test_a_connection_keeps_its_own_order_across_a_miss(make_server) -> None:
    store, url = await start(make_server)
    store.storage["slow"] = Record("slow", 0, {})
    (alice,) = await peers(url, 1)
    store.load_gate.clear()
    await alice.send(rec(R.UPDATE, name="slow", version=1, data='{"a":1}'))
    await alice.send(rec(R.READ, name="slow"))
    await asyncio.sleep(0.05)
    await alice.expect_silence(0.05)
    store.load_gate.set()
    got = await alice.recv()  # the READ was served after the write it followed
    assert (got.action, got.version, got.data) == (R.READ_RESPONSE, 1, '{"a":1}')
    await alice.close()


async def test_back_pressure_refuses_the_write_and_loses_nothing(make_server) -> None:
    store, url = await start(make_server)
    alice, bob = await peers(url, 2)
    await get_record(alice, "bp")
    await get_record(bob, "bp")
    await alice.send(rec(R.UPDATE, name="bp", version=1, data='{"kept":true}'))
    await bob.recv()
    store.full = True
    await alice.send(
        rec(
            R.UPDATE, name="bp", version=2, data='{"lost":1}', correlation_id="c", is_write_ack=True
        )
    )
    got = await alice.recv()
    assert (got.action, got.name, got.is_error, got.correlation_id, got.is_write_ack) == (
        R.RECORD_UPDATE_ERROR,
        "bp",
        True,
        "c",
        True,
    )
    await bob.expect_silence(0.05)
    assert await read(alice, "bp") == (1, {"kept": True})
    store.full = False
    await alice.send(rec(R.PATCH, name="bp", version=2, path="more", data="1"))
    assert (await bob.recv()).version == 2
    for peer in (alice, bob):
        await peer.close()


async def test_back_pressure_on_create(make_server) -> None:
    store, url = await start(make_server)
    (alice,) = await peers(url, 1)
    store.full = True
    await alice.send(rec(R.SUBSCRIBECREATEANDREAD, names=["new"], correlation_id="1"))
    assert (await alice.recv()).is_ack
    got = await alice.recv()
    assert (got.action, got.name, got.original_action) == (
        R.RECORD_CREATE_ERROR,
        "new",
        R.SUBSCRIBECREATEANDREAD,
    )
    store.full = False
    await alice.send(rec(R.HEAD, name="new"))
    assert (await alice.recv()).version == -1
    await alice.close()


async def test_write_ack_waits_for_durability_without_blocking_the_connection(
    make_server,
) -> None:
    store, url = await start(make_server)
    alice, bob = await peers(url, 2)
    await get_record(alice, "dur")
    await get_record(bob, "dur")
    store.durable_gate.clear()
    await alice.send(
        rec(R.UPDATE, name="dur", version=1, data="{}", correlation_id="w", is_write_ack=True)
    )
    assert (await bob.recv()).action == R.UPDATE  # applied and broadcast at once
    assert await read(alice, "dur") == (1, {})  # alice's next message is served meanwhile
    await alice.expect_silence(0.05)
    store.durable_gate.set()
    got = await alice.recv()
    assert (got.action, got.correlation_id, got.is_write_ack) == (
        R.WRITE_ACKNOWLEDGEMENT,
        "w",
        True,
    )
    for peer in (alice, bob):
        await peer.close()


async def test_failed_durability_is_reported_to_the_writer(make_server) -> None:
    store, url = await start(make_server)
    (alice,) = await peers(url, 1)
    await get_record(alice, "f")
    store.durable_error = StorageUnavailable("database down")
    await alice.send(
        rec(R.UPDATE, name="f", version=1, data="{}", correlation_id="w", is_write_ack=True)
    )
    got = await alice.recv()
    assert (got.action, got.name, got.is_error, got.correlation_id, got.is_write_ack) == (
        R.RECORD_UPDATE_ERROR,
        "f",
        True,
        "w",
        True,
    )
    await alice.close()


async def test_load_errors_are_answered_and_the_next_try_loads_again(make_server) -> None:
    store, url = await start(make_server)
    store.storage["e"] = Record("e", 2, {"e": 1})
    (alice,) = await peers(url, 1)
    store.load_error = StorageUnavailable("down")
    await alice.send(rec(R.READ, name="e"))
    got = await alice.recv()
    assert (got.action, got.name, got.is_error, got.original_action) == (
        R.RECORD_LOAD_ERROR,
        "e",
        True,
        R.READ,
    )
    await alice.send(
        rec(R.UPDATE, name="e", version=3, data="{}", correlation_id="1", is_write_ack=True)
    )
    got = await alice.recv()
    assert (got.action, got.is_error, got.correlation_id) == (R.RECORD_UPDATE_ERROR, True, "1")
    store.load_error = None
    assert await read(alice, "e") == (2, {"e": 1})
    await alice.close()


async def test_delete_error(make_server) -> None:
    store, url = await start(make_server)
    alice, bob = await peers(url, 2)
    await get_record(alice, "de")
    await get_record(bob, "de")
    store.delete_error = StorageUnavailable("down")
    await alice.send(rec(R.DELETE, name="de"))
    got = await alice.recv()
    assert (got.action, got.name, got.is_error) == (R.RECORD_DELETE_ERROR, "de", True)
    await bob.expect_silence(0.05)
    assert await read(bob, "de") == (0, {})
    for peer in (alice, bob):
        await peer.close()


async def test_writes_during_a_delete_wait_for_it(make_server) -> None:
    store, url = await start(make_server)
    alice, bob = await peers(url, 2)
    await get_record(alice, "gone")
    release = asyncio.Event()
    real_delete = store.delete

    async def slow_delete(name: str) -> asyncio.Future[None]:
        await release.wait()
        return await real_delete(name)

    store.delete = slow_delete  # type: ignore[method-assign]
    await alice.send(rec(R.DELETE, name="gone"))
    await asyncio.sleep(0.05)
    await bob.send(rec(R.UPDATE, name="gone", version=1, data="{}"))
    await asyncio.sleep(0.05)
    release.set()
    assert (await alice.recv()).action == R.DELETE_SUCCESS
    got = await bob.recv()  # the write came after the delete: there is no record any more
    assert (got.action, got.name) == (R.RECORD_UPDATE_ERROR, "gone")
    for peer in (alice, bob):
        await peer.close()


async def test_notify_rereads_from_storage(make_server) -> None:
    store, url = await start(make_server)
    alice, bob = await peers(url, 2)
    await get_record(bob, "nn")
    store.storage["nn"] = Record("nn", 9, {"from": "db"})  # written by someone else
    await alice.send(rec(R.NOTIFY, names=["nn"], correlation_id="n"))
    assert (await alice.recv()).is_ack
    got = await bob.recv()
    assert (got.action, got.version, json.loads(got.data or "")) == (R.UPDATE, 9, {"from": "db"})
    assert store.loads[-1] == "nn"
    store.load_error = StorageUnavailable("down")
    await alice.send(rec(R.NOTIFY, names=["nn"], correlation_id="m"))
    got = await alice.recv()
    assert (got.action, got.is_error, got.correlation_id) == (R.RECORD_NOTIFY_ERROR, True, "m")
    await alice.expect_silence(0.05)  # one answer only: no ack after the error
    for peer in (alice, bob):
        await peer.close()
