"""Errors leave the MongoDB connector only as storage errors, within its timeout: a server that
never answers, a connection cut mid-batch, a server that goes silent mid-batch (all real
sockets, in front of the MongoDB stand-in NX-27017), and the translation of driver errors."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import errors

from connectors.base import Put, StorageRejected, StorageTimeout, StorageUnavailable
from connectors.mongodb import MongoConnector
from connectors.mongodb.errors import translate
from tests.proxy import TcpProxy
from tests.standins.mongodb import MongoStandin

TIMEOUT = 1.0
SLACK = 3.0  # scheduling allowance on a busy machine


class FreezingProxy(TcpProxy):
    """A ``TcpProxy`` that can also go silent: connections stay open, bytes are swallowed."""

    frozen = False

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if not self.frozen:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()


@pytest.fixture
async def proxy(mongodb_standin: MongoStandin) -> AsyncIterator[FreezingProxy]:
    async with FreezingProxy("127.0.0.1", mongodb_standin.port) as proxy:
        yield proxy


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for writer in held:
        writer.transport.abort()


async def write_until_it_works(mongo: MongoConnector, batch: list[Put]) -> list[Any]:
    """Retry ``batch`` while storage is unavailable, as the flusher does (up to 20 s)."""
    async with asyncio.timeout(20):
        while True:
            try:
                return await mongo.write(batch)
            except (StorageUnavailable, StorageTimeout):
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def within(seconds: float) -> AsyncIterator[None]:
    started = time.monotonic()
    yield
    assert time.monotonic() - started < seconds


async def test_a_refused_port_is_unavailable_saying_why() -> None:
    from conformance.target import free_port

    connector = MongoConnector(f"mongodb://127.0.0.1:{free_port()}/db", timeout=2)
    async with within(2 + SLACK):
        with pytest.raises(StorageUnavailable, match=r"no server available: .*(refused|failed)"):
            await connector.open()
    await connector.close()


@pytest.mark.needs_server("mongodb stand-in")
async def test_a_server_that_never_answers_fails_open_in_time(silent_port: int) -> None:
    connector = MongoConnector(f"mongodb://127.0.0.1:{silent_port}/db", timeout=TIMEOUT)
    async with within(TIMEOUT + SLACK):
        with pytest.raises((StorageUnavailable, StorageTimeout)):
            await connector.open()
    await connector.close()


@pytest.mark.needs_server("mongodb stand-in")
async def test_a_server_going_silent_mid_batch_times_out_then_recovers(
    proxy: FreezingProxy, database: str
) -> None:
    url = f"mongodb://127.0.0.1:{proxy.port}/{database}"
    async with MongoConnector(url, timeout=TIMEOUT) as mongo:
        await mongo.write([Put("s/0", 1, {})])
        proxy.frozen = True
        batch = [Put(f"s/{i}", 1, {"i": i}) for i in range(1, 200)]
        async with within(TIMEOUT + SLACK):
            with pytest.raises(StorageTimeout):
                await mongo.write(batch)
            with pytest.raises((StorageTimeout, StorageUnavailable)):
                await mongo.get("s/0")
        proxy.frozen = False
        results = await write_until_it_works(mongo, batch)  # the same batch: nothing refused
        assert all(r.ok for r in results)
        assert len([s async for s in mongo.scan("s/")]) == 200


@pytest.mark.needs_server("mongodb stand-in")
async def test_a_connection_cut_mid_batch_fails_then_the_batch_goes_through(
    proxy: FreezingProxy, database: str
) -> None:
    url = f"mongodb://127.0.0.1:{proxy.port}/{database}"
    timeout = 5.0  # the stand-in takes a while for a big batch
    async with MongoConnector(url, timeout=timeout) as mongo:
        batch = [Put(f"c/{i:05}", 1, {"i": i, "pad": "x" * 200}) for i in range(2000)]
        writing = asyncio.create_task(mongo.write(batch))
        await asyncio.sleep(0.05)
        await proxy.cut()
        async with within(timeout + SLACK):
            # The stand-in takes far longer than 50 ms for this batch: the cut lands inside it.
            with pytest.raises((StorageUnavailable, StorageTimeout)):
                await writing
        await proxy.restore()
        results = await write_until_it_works(mongo, batch)  # retried whole, as the flusher does
        assert all(r.ok for r in results)
        assert [s.name async for s in mongo.scan("c/")] == [op.name for op in batch]


def _bulk(
    write_errors: list[dict[str, object]], concern: list[dict[str, object]]
) -> errors.BulkWriteError:
    return errors.BulkWriteError({"writeErrors": write_errors, "writeConcernErrors": concern,
                                  "nInserted": 0, "nUpserted": 0, "nMatched": 0,
                                  "nModified": 0, "nRemoved": 0, "upserted": []})  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (errors.ServerSelectionTimeoutError("no servers"), StorageUnavailable),
        (errors.AutoReconnect("connection reset"), StorageUnavailable),
        (errors.NetworkTimeout("timed out"), StorageTimeout),
        (errors.ExecutionTimeout("operation exceeded time limit", 50), StorageTimeout),
        (errors.WTimeoutError("waiting for replication timed out", 64), StorageTimeout),
        (errors.NotPrimaryError("not primary", {"code": 10107}), StorageUnavailable),
        (errors.OperationFailure("not primary", 10107), StorageUnavailable),
        (errors.OperationFailure("shutdown", 91), StorageUnavailable),
        (errors.OperationFailure("auth failed", 18), StorageUnavailable),
        (errors.OperationFailure("write conflict", 112), StorageTimeout),
        (errors.OperationFailure("bad value", 2), StorageRejected),
        (errors.OperationFailure("index options conflict", 85), StorageRejected),
        (errors.DocumentTooLarge("too large"), StorageRejected),
        (errors.InvalidDocument("cannot encode"), StorageRejected),
        (_bulk([], [{"code": 64, "errmsg": "waiting for replication timed out"}]), StorageTimeout),
        (_bulk([], [{"code": 100, "errmsg": "not enough data-bearing nodes"}]), StorageUnavailable),
        (_bulk([{"index": 0, "code": 17419, "errmsg": "too large"}], []), StorageRejected),
        (
            _bulk(
                [
                    {"index": 1, "code": 10334, "errmsg": "BSONObj size too large"},
                    {"index": 0, "code": 11000, "errmsg": "duplicate key"},
                ],
                [],
            ),
            StorageRejected,
        ),
        (_bulk([{"index": 0, "code": 10107, "errmsg": "not primary"}], []), StorageUnavailable),
        (ConnectionRefusedError(111, "refused"), StorageUnavailable),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_driver_errors_are_translated(exc: BaseException, expected: type[Exception]) -> None:
    error = translate(exc, "write")
    assert type(error) is expected
    assert str(error).startswith("write: ")


async def test_a_refused_item_beside_conflicts_is_rejected_not_retried(
    mongodb_standin: MongoStandin, database: str
) -> None:
    # A batch with a conflict (duplicate key) and an item the server refuses for another reason
    # must be StorageRejected, so the flusher splits it, not a timeout retried forever. The
    # refusal here is the stand-in's own (it cannot store a DBRef-shaped subdocument, which the
    # connector never sends: such data goes to data_json); genuine MongoDB refuses e.g. a
    # document over 16 MB the same way, as one item's write error.
    from bson import Int64
    from pymongo import AsyncMongoClient, ReplaceOne

    from connectors.mongodb.writes import _bulk

    async with MongoConnector(mongodb_standin.url(database)) as mongo:
        await mongo.write([Put("r/1", 5, {})])
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_standin.url())
        try:
            raw = client[database]["records"]
            requests: list[Any] = [
                ReplaceOne({"_id": "r/1", "version": {"$lt": 1}},
                           {"_id": "r/1", "version": Int64(1), "data": {}}, upsert=True),
                ReplaceOne({"_id": "r/2", "version": {"$lt": 1}},
                           {"_id": "r/2", "version": Int64(1),
                            "data": {"ref": {"$ref": "x", "$id": 1}}}, upsert=True),
            ]  # fmt: skip
            with pytest.raises(StorageRejected, match="1 write errors, first code 8"):
                await _bulk(raw, requests)
            refused, _ = await _bulk(raw, requests[:1])
            assert refused == [0]  # a duplicate key alone is a conflict to read back
        finally:
            await client.close()


def test_bulk_error_messages_do_not_carry_record_data() -> None:
    exc = _bulk([{"index": 0, "code": 2, "errmsg": "bad", "op": {"u": {"data": "SECRET"}}}], [])
    assert "SECRET" not in str(translate(exc, "write"))


def test_other_exceptions_are_not_translated() -> None:
    assert translate(KeyError("x"), "write") is None
