"""RethinkDB connector against reqlite 2.3.0, a RethinkDB stand-in (not RethinkDB): what the
shared conformance suite does not reach. Exact numbers past 2**53 (data and versions), the stored
layout read through the driver, names past RethinkDB's 127-byte primary-key limit, hostile keys,
concurrent opens, a paused server (timeouts) and a killed server mid-batch (nothing hangs or is
lost), option errors. Stand-ins of our own (``start_reqlite``) where a test stops or kills one."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.base import (
    Delete,
    Outcome,
    Put,
    Snapshot,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
)
from connectors.registry import create_connector
from connectors.rethinkdb import RethinkDBConnector
from connectors.rethinkdb.driver import reql
from gateway.config import CacheConfig, WriteBehindConfig
from gateway.exceptions import ConfigError
from gateway.store import CachedStore, Record
from tests.conftest import ServerFactory, url_of
from tests.connectors.rethinkdb_queries import recorded_queries
from tests.gateway.store.conftest import until
from tests.proxy import TcpProxy
from tests.standins.rethinkdb import reqlite_url, start_reqlite, stop

pytestmark = pytest.mark.needs_server("rethinkdb")


@pytest.fixture(scope="session")
def rethinkdb_url() -> str:
    return reqlite_url()


README = Path(__file__).parents[2] / "README.md"
BIG = 2**60 + 1  # not a double: 2**60 + 1 rounds to 2**60


@pytest.fixture
async def store(rethinkdb_url: str) -> AsyncIterator[RethinkDBConnector]:
    connector = RethinkDBConnector(rethinkdb_url, table=f"t_{uuid.uuid4().hex[:12]}", timeout=3)
    await connector.open()
    yield connector
    await connector.drop()
    await connector.close()


@pytest.fixture
def own_standin_at_28015(rethinkdb_url: str) -> Iterator[int]:
    """A stand-in on RethinkDB's default port (the README's example names it)."""
    node = shutil.which("node")
    assert node is not None
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 28015)) == 0:
            pytest.fail("port 28015 is taken: the README example needs it for its stand-in")
    process, port = start_reqlite(node, 28015)
    yield port
    stop(process)


@pytest.fixture
def own_standin(rethinkdb_url: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A stand-in process of this test's own (tests stop it); ``rethinkdb_url`` first: it
    installs the npm package, or skips (fails under CI) without node."""
    node = shutil.which("node")
    assert node is not None
    process, port = start_reqlite(node)
    yield process, port
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
    stop(process)


async def raw_doc(connector: RethinkDBConnector, name: str) -> dict | None:
    conn = await reql().connect(host="127.0.0.1", port=connector.address.port)
    try:
        docs = await connector.table.get_all(name, index="name").coerce_to("array").run(conn)
    finally:
        await conn.close(noreply_wait=False)
    return docs[0] if docs else None


# -- numbers -------------------------------------------------------------------------------


async def test_integers_beyond_2_53_in_data_round_trip_exactly(store: RethinkDBConnector) -> None:
    data = {"big": BIG, "neg": -BIG, "list": [2**53 + 1, 2**64], "float": 1.0, "int": 1}
    await store.write([Put("n/1", 1, data)])
    got = await store.get("n/1")
    assert got == Snapshot("n/1", 1, data)
    assert type(got.data["float"]) is float and type(got.data["int"]) is int  # type: ignore[index]
    assert [s.data async for s in store.scan("n/")] == [data]
    raw = await raw_doc(store, "n/1")
    assert raw is not None
    # The native copy holds doubles, as RethinkDB keeps numbers: not exact, hence data_json.
    assert raw["data"]["big"] != BIG and float(raw["data"]["big"]) == float(BIG)
    assert raw["data_json"] == '{"big":1152921504606846977,"neg":-1152921504606846977,' \
        '"list":[9007199254740993,18446744073709551616],"float":1.0,"int":1}'  # fmt: skip


async def test_versions_beyond_2_53_compare_exactly(store: RethinkDBConnector) -> None:
    assert float(BIG) == float(BIG - 1)  # as doubles these two versions are one number
    [first] = await store.write([Put("v", BIG - 1, {"n": 1})])
    [newer] = await store.write([Put("v", BIG, {"n": 2})])
    assert first.ok and newer.ok
    [older] = await store.write([Put("v", BIG - 1, {"n": 3})])
    assert older.outcome is Outcome.CONFLICT and older.current == Snapshot("v", BIG, {"n": 2})
    [same] = await store.write([Put("v", BIG, {"n": 2})])
    assert same.ok  # idempotent retry
    assert await store.head("v") == BIG
    [stale_delete] = await store.write([Delete("v", BIG - 1)])
    assert stale_delete.outcome is Outcome.CONFLICT
    [delete] = await store.write([Delete("v", BIG)])
    assert delete.ok and await store.get("v") is None


async def test_versions_outside_the_key_range_are_rejected(store: RethinkDBConnector) -> None:
    for version in (-1, 10**20, True):
        with pytest.raises(StorageRejected):
            await store.write([Put("x", version, {})])  # type: ignore[arg-type]
    assert await store.get("x") is None


# -- layout --------------------------------------------------------------------------------


async def test_stored_document_is_native_and_exact(store: RethinkDBConnector) -> None:
    before = datetime.now(UTC)
    await store.write([Put("user/42", 7, {"name": "ada", "age": 36, "tags": ["x"], "o": {}})])
    raw = await raw_doc(store, "user/42")
    assert raw is not None
    assert raw["id"] == hashlib.sha256(b"user/42").hexdigest()
    assert raw["collection"] == "user" and raw["version"] == 7
    assert raw["version_key"] == "00000000000000000007"
    assert raw["data"] == {"name": "ada", "age": 36, "tags": ["x"], "o": {}}  # a native document
    assert isinstance(raw["updated_at"], datetime)  # a native RethinkDB time
    assert before.timestamp() - 1 <= raw["updated_at"].timestamp() <= time.time() + 1
    conn = await reql().connect(host="127.0.0.1", port=store.address.port)
    try:
        indexes = await store.table.index_list().run(conn)
    finally:
        await conn.close(noreply_wait=False)
    assert set(indexes) >= {"name", "collection"}


async def test_names_past_the_primary_key_limit(store: RethinkDBConnector) -> None:
    stem = "long/" + "é" * 200  # 405 bytes shared by both names: beyond 127-byte primary keys
    names = [stem + "b" * 300, stem + "a" * 300, stem]
    await store.write([Put(name, 1, {"i": i}) for i, name in enumerate(names)])
    for i, name in enumerate(names):
        assert await store.get(name) == Snapshot(name, 1, {"i": i})
    assert [s.name async for s in store.scan(stem)] == sorted(names)
    assert [s.name async for s in store.scan(stem + "a")] == [stem + "a" * 300]


async def test_reserved_reql_type_key_is_stored_faithfully_with_data_null(
    store: RethinkDBConnector,
) -> None:
    """Data holding the object key ``$reql_type$`` round-trips through ``data_json``; ``data`` is
    null, so the server never reads it as a time or binary (as the stand-in did: ``data``
    came back a datetime) and the driver never meets an unknown type (reading the document
    closed its connection: "Unknown pseudo-type NOPE")."""
    tagged = {
        "t": {"$reql_type$": "TIME", "epoch_time": 0, "timezone": "+00:00"},
        "x": [{"$reql_type$": "NOPE"}],
    }
    plain = {"k": "$reql_type$", "s": 'a"$reql_type$"b'}  # as a value it is plain data
    results = await store.write([Put("tagged", 1, tagged), Put("plain", 1, plain)])
    assert [result.ok for result in results] == [True, True]
    assert await store.get("tagged") == Snapshot("tagged", 1, tagged)
    assert await store.get("plain") == Snapshot("plain", 1, plain)
    [again] = await store.write([Put("tagged", 1, tagged)])  # the idempotent retry
    assert again.outcome is Outcome.APPLIED
    [conflict] = await store.write([Put("tagged", 1, {"other": 1})])
    assert conflict.outcome is Outcome.CONFLICT and conflict.current == Snapshot(
        "tagged", 1, tagged
    )
    assert [s.name async for s in store.scan()] == ["plain", "tagged"]
    raw = store.raw_reader()
    try:
        stored = await raw.read_raw("tagged")
        assert stored is not None and stored["native_data"] is None and stored["data"] == tagged
        stored = await raw.read_raw("plain")
        assert stored is not None and stored["native_data"] == plain
    finally:
        await raw.close()


async def test_data_switching_between_tagged_and_plain_keeps_data_in_step(
    store: RethinkDBConnector,
) -> None:
    """A record whose data gains and loses the key ``$reql_type$`` from version to version
    (first insert, conditional replace, fenced put, delete and create again): every version
    reads back exact, and the stored ``data`` is null exactly while the data is tagged, never a
    stale native copy of an earlier version for data teams to query."""
    tagged = {"when": {"$reql_type$": "TIME", "epoch_time": 1, "timezone": "+00:00"}}
    raw = store.raw_reader()

    async def stored(version: int, data: object) -> None:
        assert await store.get("r") == Snapshot("r", version, data)
        doc = await raw.read_raw("r")
        assert doc is not None and doc["data"] == data
        assert doc["native_data"] == (None if data is tagged else data), (version, doc)

    try:
        steps = [({"n": 1}, None), (tagged, None), ({"n": 3}, 5), (tagged, 6), ({"n": 5}, None)]
        for version, (data, fence) in enumerate(steps, start=1):
            [result] = await store.write([Put("r", version, data, fence=fence)])
            assert result.ok, (version, result)
            await stored(version, data)
        [deleted] = await store.write([Delete("r", 5)])
        assert deleted.ok and await store.get("r") is None
        [created] = await store.write([Put("r", 1, tagged)])
        assert created.ok
        await stored(1, tagged)
    finally:
        await raw.close()


async def test_server_acknowledges_and_serves_reql_type_data(
    make_server: ServerFactory, store: RethinkDBConnector, rethinkdb_url: str
) -> None:
    """Through the gateway: acknowledged (durable), stored, read back from storage, not undone
    (before: the flush was refused, the writer got RECORD_UPDATE_ERROR, the write undone)."""
    from gateway.protocol import Message, RecordAction, Topic
    from tests.gateway.test_records import read
    from tests.wire import WireClient, write

    data = {"when": {"$reql_type$": "TIME", "epoch_time": 0, "timezone": "+00:00"}}
    storage = {"type": "rethinkdb", "url": rethinkdb_url, "table": store.table_name, "timeout": 3}
    server = await make_server({"storage": storage})
    peer = await WireClient.connect(url_of(server), login={})
    try:
        await peer.send(write("r/1", data, ack="w"))
        reply = await peer.recv(5)
        assert reply.action == RecordAction.WRITE_ACKNOWLEDGEMENT, reply
        assert server.store.stats.reverted == 0 and server.store.stats.failed == 0
        assert await store.get("r/1") == Snapshot("r/1", 1, data)
        server.store.forget("r/1")
        assert await read(peer, "r/1") == (1, data)
        await peer.send(Message(Topic.RECORD, RecordAction.DELETE, name="r/1"))
        assert (await peer.recv(5)).action == RecordAction.DELETE_SUCCESS
    finally:
        await peer.close()


# -- schema --------------------------------------------------------------------------------


async def test_concurrent_opens_create_one_table(rethinkdb_url: str) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    database = f"db_{uuid.uuid4().hex[:8]}"
    url = rethinkdb_url.rsplit("/", 1)[0] + "/" + database
    connectors = [RethinkDBConnector(url, table=table) for _ in range(6)]
    try:
        await asyncio.gather(*(c.open() for c in connectors))
        results = await asyncio.gather(
            *(c.write([Put(f"c/{i}", 1, {"i": i})]) for i, c in enumerate(connectors))
        )
        assert all(r.ok for [r] in results)
        assert len([s async for s in connectors[0].scan("c/")]) == 6
        conn = await reql().connect(host="127.0.0.1", port=connectors[0].address.port)
        try:
            assert (await reql().db(database).table_list().run(conn)).count(table) == 1
            await reql().db_drop(database).run(conn)
        finally:
            await conn.close(noreply_wait=False)
    finally:
        for connector in connectors:
            await connector.close()


# -- failures ------------------------------------------------------------------------------


async def test_paused_server_times_out_and_the_retried_batch_applies(own_standin) -> None:
    process, port = own_standin
    connector = RethinkDBConnector(f"rethinkdb://127.0.0.1:{port}/rg", table="t", timeout=0.5)
    async with connector:
        assert (await connector.write([Put("a", 1, {"n": 1})]))[0].ok
        os.kill(process.pid, signal.SIGSTOP)  # accepts nothing, answers nothing
        batch = [Put("a", 2, {"n": 2}), Put("b", 1, {"n": 1}), Delete("c", 1)]
        started = time.monotonic()
        with pytest.raises(StorageTimeout):
            await connector.write(batch)
        with pytest.raises((StorageTimeout, StorageUnavailable)):
            await connector.get("a")  # a new connection cannot be made either
        assert time.monotonic() - started < 3  # bounded by the timeout, never hung
        os.kill(process.pid, signal.SIGCONT)
        # The same batch again, as the flusher retries it: applied whether or not the first
        # attempt reached the server meanwhile.
        results = await connector.write(batch)
        assert [r.outcome for r in results] == [Outcome.APPLIED] * 3
        assert await connector.get("a") == Snapshot("a", 2, {"n": 2})


async def test_server_lost_mid_batch_neither_hangs_nor_loses_the_batch(own_standin) -> None:
    """A batch is sent and unanswered (the server is stopped) when the network path to the
    server is reset (new connections refused too); then the server resumes, possibly applying
    the batch it had received, and the path comes back. The flusher fails fast, retries (an
    idempotent retry where the batch did land), and every record arrives. (A TCP proxy stands
    for the lost server: the stand-in keeps its data in memory only, so a killed one would
    lose the table.)"""
    process, port = own_standin
    url = f"rethinkdb://127.0.0.1:{port}/rg"
    async with TcpProxy("127.0.0.1", port) as proxy:
        store = CachedStore(
            RethinkDBConnector(proxy.url_for(url), table="t", timeout=0.5),
            cache=CacheConfig(max_records=1000),
            write_behind=WriteBehindConfig(
                interval=0.02, retry_initial=0.01, retry_max=0.05, shutdown_timeout=2.0
            ),
        )
        await store.open()
        try:
            os.kill(process.pid, signal.SIGSTOP)
            for i in range(300):
                store.put(Record(f"k/{i}", 1 + i % 3, {"i": i}))
            acked = asyncio.create_task(store.durable("k/299", 1))
            await asyncio.sleep(0.2)  # the first batch is sent, and waits for an answer
            assert store.stats.flushed == 0 and not acked.done()
            await proxy.cut()
            os.kill(process.pid, signal.SIGCONT)
            await until(lambda: store.stats.retried >= 3)
            assert not acked.done()
            await proxy.restore()
            await asyncio.wait_for(acked, 20)
            await asyncio.wait_for(store.flush(), 20)
            assert store.stats.pending == 0 and store.stats.failed == 0
        finally:
            await store.close()
    async with RethinkDBConnector(url, table="t") as direct:
        stored = {s.name: (s.version, s.data) async for s in direct.scan("k/")}
    assert stored == {f"k/{i}": (1 + i % 3, {"i": i}) for i in range(300)}


async def test_unreachable_server_fails_within_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        async with RethinkDBConnector("rethinkdb://127.0.0.1:1/x", timeout=1):
            pass
    assert time.monotonic() - started < 3


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://h/db", {}, "rethinkdb://"),
        ("rethinkdb:///db", {}, "needs a host"),
        ("rethinkdb://h/bad-db", {}, "database"),
        ("rethinkdb://h/db", {"table": "a b"}, "table"),
        ("rethinkdb://h/db", {"durability": "maybe"}, "durability"),
        ("rethinkdb://h/db", {"timeout": "0"}, "timeout"),
        ("rethinkdb://h/db", {"page_size": "0"}, "page_size"),
        ("rethinkdb://h/db", {"colour": "red"}, "colour"),
    ],
)
def test_bad_options_are_config_errors(url: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_connector("rethinkdb", url, **options)


def test_password_stays_out_of_reprs_and_messages() -> None:
    connector = RethinkDBConnector("rethinkdb://bob:s3cret@h:1/db", timeout="2")
    assert "s3cret" not in repr(connector.address) and "s3cret" not in connector.address.safe
    assert connector.address.password == "s3cret" and connector.timeout == 2.0


# -- the README's query ----------------------------------------------------------------------


def test_the_readme_reql_query_runs_as_written(own_standin_at_28015: int) -> None:
    """The README's ReQL example, run verbatim by the Python interpreter against a stand-in on
    the port it names, over records written by the connector."""
    block = re.search(
        r"```python\n(from rethinkdb import r\n.*?)```", README.read_text(encoding="utf-8"), re.S
    )
    assert block is not None, "the README has no ReQL example"
    people = {
        "user/1": {"name": "ada", "age": 36},
        "user/2": {"name": "bob", "age": 30},
        "user/10": {"name": "cy", "age": 31.5},
        "user/3": {"name": "dee"},  # no age: not an error, just not matched
        "team/1": {"age": 99},  # another collection
        "user": {"age": 50},  # no "/": the default collection
    }

    async def seed() -> None:
        url = f"rethinkdb://127.0.0.1:{own_standin_at_28015}/recordgate"
        async with RethinkDBConnector(url) as connector:  # the default table: records
            await connector.write([Put(name, 1, data) for name, data in people.items()])

    asyncio.run(seed())
    done = subprocess.run(
        [sys.executable, "-c", block.group(1)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(["user/1", "user/10"])


# -- round trips -----------------------------------------------------------------------------


async def test_one_query_per_batch(store: RethinkDBConnector, monkeypatch) -> None:
    """New records, updates and conflicts take one query per batch. A first version (0 or 1) of a
    record already stored takes two (the bulk insert refuses it, the conditional write settles
    it); deletes add one read-back here, because the stand-in reports no change entry for them
    (RethinkDB does)."""
    queries = recorded_queries(monkeypatch)

    async def write(ops: list[Put | Delete]) -> tuple[list[Outcome], int]:
        queries.clear()
        results = await store.write(ops)
        return [r.outcome for r in results], len(queries)

    applied, conflict = Outcome.APPLIED, Outcome.CONFLICT
    assert await write([Put(f"q/{i}", 1, {"i": i}) for i in range(200)]) == ([applied] * 200, 1)
    assert await write([Put(f"q/{i}", 2, {"i": i}) for i in range(200)]) == ([applied] * 200, 1)
    mixed = [Put(f"q/{i}", 3 if i % 2 else 2, {"i": -i - 1}) for i in range(200)]
    assert await write(mixed) == ([applied if i % 2 else conflict for i in range(200)], 1)
    assert await write([Put("q/1", 1, {}), Put("new", 1, {})]) == ([conflict, applied], 2)
    outcomes, count = await write([Delete("q/0", 2), Put("q/1", 4, {})])
    assert outcomes == [applied, applied] and count <= 2 and queries[0].startswith("write")


# -- the driver ------------------------------------------------------------------------------


def test_importing_the_package_imports_no_driver() -> None:
    code = "import sys, connectors, connectors.rethinkdb;print('rethinkdb' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_missing_driver_is_one_line_naming_the_extra() -> None:
    code = (
        "import sys; sys.modules['rethinkdb'] = None;"  # as if the driver were not installed
        "from connectors import create_connector\n"
        "try: create_connector('rethinkdb', 'rethinkdb://h/db')\n"
        "except Exception as exc: print(type(exc).__name__, exc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("DriverMissing "), done.stdout + done.stderr
    assert "pip install 'recordgate[rethinkdb]'" in done.stdout
    assert done.stdout.count("\n") == 1


async def test_soft_durability_is_named_in_the_log(rethinkdb_url: str, caplog) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    with caplog.at_level(logging.WARNING, logger="connectors.rethinkdb.connector"):
        async with RethinkDBConnector(rethinkdb_url, table=table, durability="soft") as soft:
            assert (await soft.write([Put("s", 1, {})]))[0].ok
            await soft.drop()
    assert "durability 'soft'" in caplog.text


async def test_a_silent_server_leaks_no_sockets() -> None:
    """A listener that accepts and never answers: every open fails within the timeout, and the
    half-open handshakes are closed, not left behind (a retrying flusher would pile them up)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            connector = RethinkDBConnector(f"rethinkdb://127.0.0.1:{port}/x", timeout=0.2)
            started = time.monotonic()
            with pytest.raises((StorageUnavailable, StorageTimeout)):
                await connector.open()
            assert time.monotonic() - started < 1.5
            await connector.close()
        await asyncio.sleep(0.1)
        assert len(os.listdir("/proc/self/fd")) - before <= 2
