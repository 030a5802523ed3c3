"""Messages whose permission verdicts wait on storage (a rule reading ``oldData`` or ``_()``),
on a real server over real PostgreSQL, the wait being a real table lock: the subscription
limit still holds exactly, and a verdict that raises leaves no other verdict of its bulk
message unawaited and no name of it unanswered."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, ClassVar

import asyncpg  # type: ignore[import-untyped]
import pytest
import yaml

from connectors.base import Snapshot
from connectors.sql import SQLConnector
from gateway.protocol import EventAction, Message, RecordAction, Topic
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.gateway.test_server import http_get
from tests.servers import require_postgres
from tests.wire import WireClient

R, E = RecordAction, EventAction
LIMIT_KEY = "limits.max_subscriptions_per_connection"


@pytest.fixture
async def table() -> AsyncIterator[tuple[str, str]]:
    url = require_postgres()
    connector = SQLConnector(url, table=f"pending_{uuid.uuid4().hex[:12]}")
    await connector.open()
    yield url, connector.table_name
    await connector.drop()
    await connector.close()


class _Locked:
    """An ACCESS EXCLUSIVE lock on the table: every storage read waits until ``release``."""

    def __init__(self, url: str, table: str) -> None:
        self.url, self.table = url.replace("+asyncpg", ""), table

    async def __aenter__(self) -> _Locked:
        self.conn = await asyncpg.connect(self.url)
        self.transaction = self.conn.transaction()
        await self.transaction.start()
        await self.conn.execute(f'LOCK TABLE "{self.table}" IN ACCESS EXCLUSIVE MODE')
        self.held = True
        return self

    async def release(self) -> None:
        if self.held:
            self.held = False
            await self.transaction.commit()

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.release()
        finally:
            await self.conn.close()


async def _serve(
    make_server: ServerFactory,
    tmp_path: Path,
    table: tuple[str, str],
    rules: dict[str, Any],
    *,
    storage_type: str = "sql",
    limits: dict[str, Any] | None = None,
) -> Server:
    (tmp_path / "perms.yml").write_text(yaml.safe_dump(rules))
    url, name = table
    return await make_server(
        {
            "storage": {"type": storage_type, "url": url, "table": name, "timeout": 30},
            "permissions": str(tmp_path / "perms.yml"),
            "limits": limits or {},
        }
    )


async def _limit_trips(server: Server) -> int:
    status, body = await http_get(server.port, "/metrics")
    assert status == 200
    found = re.search(
        rf'^recordgate_limit_trips_total{{limit="{LIMIT_KEY}"}} (\d+)$', body.decode(), re.M
    )
    return 0 if found is None else int(found.group(1))


# -- the subscription limit while verdicts wait ----------------------------------------------


async def test_subscribes_queued_behind_a_pending_verdict_cannot_pass_the_limit(
    make_server: ServerFactory, tmp_path: Path, table: tuple[str, str]
) -> None:
    """Limit 3. A bulk SUBSCRIBE of 3 names waits on its verdicts (the rule reads each record,
    behind the lock); bulk SUBSCRIBEs sent meanwhile must not be counted against what is held
    before that one is subscribed. They wait behind it (a client's messages are handled in
    order, ``connection``), so once it holds 3 each is refused whole, as the limit answers,
    and counted in /metrics: the connection ends holding exactly 3, never 3 + what queued."""
    rules = {"record": {"*": {"read": "oldData === null || oldData.open === true"}}}
    server = await _serve(
        make_server, tmp_path, table, rules, limits={"max_subscriptions_per_connection": 3}
    )
    client = await WireClient.connect(url_of(server), login={})
    try:
        async with _Locked(*table) as lock:
            await client.send(
                Message(Topic.RECORD, R.SUBSCRIBE, names=["r/1", "r/2", "r/3"], correlation_id="a")
            )
            await client.send(Message(Topic.RECORD, R.SUBSCRIBE, names=["r/4"], correlation_id="b"))
            await client.send(
                Message(Topic.RECORD, R.SUBSCRIBE, names=["r/5", "r/6"], correlation_id="c")
            )
            await client.expect_silence(0.5)  # every verdict of "a" waits on the lock
            await lock.release()
            first = await client.recv(timeout=10)
            assert (first.is_ack, first.action, first.correlation_id) == (True, R.SUBSCRIBE, "a"), (
                first
            )
            for cid in ("b", "c"):
                refused = await client.recv(timeout=10)
                assert (refused.action, refused.original_action, refused.correlation_id) == (
                    R.INVALID_MESSAGE_DATA,
                    R.SUBSCRIBE,
                    cid,
                ), refused
                assert LIMIT_KEY in (refused.data or ""), refused
            await client.expect_silence()
        registry = server.records.subscriptions
        assert {
            n for n in ("r/1", "r/2", "r/3", "r/4", "r/5", "r/6") if registry.has_subscribers(n)
        } == {
            "r/1",
            "r/2",
            "r/3",
        }
        assert await _limit_trips(server) == 2
    finally:
        await client.close()


# -- a verdict that raises among verdicts that wait -------------------------------------------


class BuggyReadSQLConnector(SQLConnector):
    """The real SQL connector, except that reading a ``bug/`` record raises an error that is
    not a storage error, as a connector bug would."""

    name: ClassVar[str] = "buggy-read-sql"

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        wanted = list(names)
        if any(n.startswith("bug/") for n in wanted):
            raise RuntimeError("connector bug")
        return await super().get_many(wanted)


_BUGGY = f"{__name__}:BuggyReadSQLConnector"
_EVENT_RULES = {
    "event": {
        "*": {"publish": True, "subscribe": "_('closed/' + name) === null"},
        "bad/*": {"subscribe": "_('bug/' + name) === null"},
    }
}


@pytest.mark.parametrize(
    "names", [["bad/x", "chat/a"], ["chat/a", "bad/x"]], ids=["raises first", "raises last"]
)
async def test_a_verdict_that_raises_leaves_the_others_of_its_message_decided(
    make_server: ServerFactory, tmp_path: Path, table: tuple[str, str], names: list[str]
) -> None:
    """A bulk event SUBSCRIBE: the verdict of ``bad/x`` raises (not a storage error), that of
    ``chat/a`` waits on PostgreSQL. ``bad/x`` is answered MESSAGE_PERMISSION_ERROR like any
    failed rule, ``chat/a`` is still decided (its read completes once the lock goes), allowed
    and subscribed, and the message acked; no verdict is left unawaited. Before, the error
    escaped the gathering: the verdicts after it were never awaited ("coroutine was never
    awaited"), and the client got no answer at all, for any of the names."""
    server = await _serve(make_server, tmp_path, table, _EVENT_RULES, storage_type=_BUGGY)
    client = await WireClient.connect(url_of(server), login={})
    publisher = await WireClient.connect(url_of(server), login={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            async with _Locked(*table) as lock:
                await client.send(
                    Message(Topic.EVENT, E.SUBSCRIBE, names=names, correlation_id="s")
                )
                await client.expect_silence(0.5)  # chat/a's read waits on the lock
                await lock.release()
                failed = await client.recv(timeout=10)
                assert (
                    failed.action,
                    failed.name,
                    failed.original_action,
                    failed.correlation_id,
                ) == (
                    E.MESSAGE_PERMISSION_ERROR,
                    "bad/x",
                    E.SUBSCRIBE,
                    "s",
                ), failed
                ack = await client.recv(timeout=10)
                assert (ack.is_ack, ack.action, ack.correlation_id) == (True, E.SUBSCRIBE, "s"), ack
            await publisher.send(Message(Topic.EVENT, E.EMIT, name="chat/a", data="1"))
            got = await client.recv()
            assert (got.action, got.name, got.data) == (E.EMIT, "chat/a", "1"), got
            assert not server.events.subscriptions.has_subscribers("bad/x")
            await client.expect_silence()
        finally:
            await client.close()
            await publisher.close()
        gc.collect()
    unawaited = [
        w
        for w in caught
        if "never awaited" in str(w.message) or "never retrieved" in str(w.message)
    ]
    assert not unawaited, unawaited


async def test_a_check_cancelled_while_waiting_leaves_no_verdict_unawaited(
    make_server: ServerFactory, tmp_path: Path, table: tuple[str, str]
) -> None:
    """The checks of a bulk message, cancelled while the first name's read waits on the lock
    (as a loop shutting down cancels the tasks handling messages): the verdicts not started are
    closed, so none is reported "never awaited". The real server's gate and connection, called
    as ``Server.dispatch`` calls it."""
    server = await _serve(make_server, tmp_path, table, _EVENT_RULES)
    assert server.gate is not None
    client = await WireClient.connect(url_of(server), login={})
    try:
        (conn,) = server.connections
        msg = Message(Topic.EVENT, E.SUBSCRIBE, names=["chat/a", "chat/b"], correlation_id="s")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with _Locked(*table):
                pending = server.gate.filter(conn, msg)
                assert pending is not None and not isinstance(pending, Message)
                checking = asyncio.ensure_future(pending)
                await asyncio.sleep(0.3)
                assert not checking.done()  # chat/a's read waits on the lock
                checking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checking
            del pending, checking
            gc.collect()
        unawaited = [w for w in caught if "never awaited" in str(w.message)]
        assert not unawaited, unawaited
    finally:
        await client.close()
