"""JSON the server cannot give back faithfully is refused at the edge, over real sockets.

Lone UTF-16 surrogates, numbers beyond a double's range (and NaN/Infinity literals), and
nesting deeper than ``server.max_json_depth`` (a PATCH counting its path) get
INVALID_MESSAGE_DATA, leave the record as it was, never reach storage, and are counted in
``/metrics``; AUTH data that deep is refused like any bad auth data, never a crash.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.exceptions import LoneSurrogateText
from gateway.protocol import (
    AuthAction,
    ConnectionAction,
    EventAction,
    Message,
    ParserAction,
    PresenceAction,
    RecordAction,
    RpcAction,
    Topic,
    decode,
    encode,
)
from gateway.protocol.payload import REFUSED
from tests.conftest import ServerFactory, url_of
from tests.gateway.test_bad_input import Check, expect_closed, still_served  # noqa: F401 (fixture)
from tests.gateway.test_metrics import parse
from tests.gateway.test_server import http_get
from tests.wire import WireClient

R = RecordAction

# Raw JSON texts, exactly as a client may put them in ``data`` (never produced by json.dumps).
LONE_SURROGATES = [
    '{"a":"\\ud800"}',  # what JSON.stringify writes for a string cut inside an emoji
    '{"a":"x\\udfff"}',  # a low half alone
    '{"\\udc00":1}',  # in a key
    '{"a":["ok","\\ud83d"]}',  # a high half with no low half after it
    '{"a":"\\ude00\\ud83d"}',  # both halves, in the wrong order
]
NON_FINITE = ['{"a":1e400}', '{"a":-1e400}', '{"a":[1.5e309]}', '{"a":NaN}', '{"a":Infinity}']
NON_FINITE += ['{"a":-Infinity}', '{"a":' + "9" * 400 + ".5}"]


def deep(levels: int, inner: str = "1") -> str:
    """``levels`` nested arrays around ``inner``."""
    return "[" * levels + inner + "]" * levels


def write(action: int, name: str, data: str | None, *, path: str | None = None) -> Message:
    return Message(
        Topic.RECORD,
        action,
        name=name,
        version=-1,
        data=data,
        path=path,
        correlation_id="w1",
        is_write_ack=True,
    )


async def read(peer: WireClient, name: str) -> tuple[int, Any]:
    await peer.send(Message(Topic.RECORD, R.READ, name=name))
    reply = await peer.recv_until(Topic.RECORD, R.READ_RESPONSE)
    assert reply.data is not None and reply.version is not None
    return reply.version, json.loads(reply.data)


async def refused(peer: WireClient, msg: Message) -> None:
    await peer.send(msg)
    reply = await peer.recv()
    assert reply == Message(
        Topic.RECORD,
        R.INVALID_MESSAGE_DATA,
        name=msg.name,
        original_action=msg.action,
        version=msg.version,
        path=msg.path,
        correlation_id="w1",
        is_write_ack=True,
        is_error=True,
    )


@pytest.fixture
async def sqlite_server(make_server: ServerFactory, tmp_path: Path) -> Any:
    """A server that really persists (SQLite, the default backend), flushing often."""
    return await make_server(
        {
            "storage": {"type": "sql", "url": f"sqlite+aiosqlite:///{tmp_path}/r.db"},
            "write_behind": {"interval": 0.05},
        }
    )


def bad_writes(data: str) -> list[Message]:
    """``data`` as every kind of write: whole record, patch, create-and-*, patch-multi."""
    return [
        write(R.UPDATE, "doc", data),
        write(R.CREATEANDUPDATE, "doc", data),
        write(R.PATCH, "doc", data, path="p.q"),
        write(R.CREATEANDPATCH, "doc", data, path="p"),
        write(R.PATCH_MULTI, "doc", f'[{{"path":"ok","data":1}},{{"path":"p","data":{data}}}]'),
    ]


@pytest.mark.parametrize("data", LONE_SURROGATES + NON_FINITE)
async def test_unstorable_json_is_refused_and_changes_nothing(
    sqlite_server: Any, data: str
) -> None:
    url = url_of(sqlite_server)
    writer = await WireClient.connect(url, login={})
    subscriber = await WireClient.connect(url, login={})
    await writer.send(write(R.CREATEANDUPDATE, "doc", '{"v":1}'))
    assert (await writer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    await subscriber.send(Message(Topic.RECORD, R.SUBSCRIBE, names=["doc"], correlation_id="s"))
    assert (await subscriber.recv()).is_ack
    for msg in bad_writes(data):
        await refused(writer, msg)
    await subscriber.expect_silence(0.1)  # nothing was applied, nothing broadcast
    assert await read(writer, "doc") == (1, {"v": 1})
    # ...and persistence goes on: the next acknowledged write is stored.
    await writer.send(write(R.UPDATE, "doc", '{"v":2}'))
    assert (await writer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    assert json.loads((await subscriber.recv()).data or "") == {"v": 2}
    assert await read(writer, "doc") == (2, {"v": 2})
    await writer.close()
    await subscriber.close()


async def test_surrogate_pairs_and_big_integers_are_ordinary_data(sqlite_server: Any) -> None:
    peer = await WireClient.connect(url_of(sqlite_server), login={})
    text = '{"emoji":"\\ud83d\\ude00","raw":"😀","big":' + "9" * 300 + ',"tiny":1e-400}'
    await peer.send(write(R.CREATEANDUPDATE, "doc", text))
    assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT  # stored in SQLite
    sqlite_server.store.forget("doc")  # the next read comes from storage
    assert await read(peer, "doc") == (
        1,
        {"emoji": "😀", "raw": "😀", "big": int("9" * 300), "tiny": 0.0},
    )
    await peer.close()


async def test_depth_is_bounded_and_a_patch_counts_its_path(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"max_json_depth": 10}})
    peer = await WireClient.connect(url_of(server), login={})
    await peer.send(write(R.CREATEANDUPDATE, "doc", f'{{"z":{deep(9)}}}'))
    assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    await refused(peer, write(R.UPDATE, "doc", f'{{"z":{deep(10)}}}'))
    path = ".".join("abcdefgh")  # the root and 7 objects hold the value: it sits at depth 8
    await refused(peer, write(R.PATCH, "doc", deep(3), path=path))  # 8 + 3 = 11
    await refused(peer, write(R.PATCH_MULTI, "doc", f'[{{"path":"{path}","data":{deep(3)}}}]'))
    # Braces inside strings are not nesting: the exact depth decides, not a count of brackets.
    await peer.send(write(R.PATCH, "doc", '["[[[[[[[[[[[[{{{{{{{{{{"]', path=path))  # 8 + 1
    assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    await refused(peer, write(R.ERASE, "doc", None, path=path + ".i.j.k"))  # would nest 11
    await peer.send(write(R.PATCH_MULTI, "doc", '[{"path":"a.b.c.d.e.f.g.x.i","data":[]}]'))
    assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT  # 9 + 1: exactly 10
    version, data = await read(peer, "doc")
    assert version == 3 and data["a"]["b"]["c"]["d"]["e"]["f"]["g"]["x"] == {"i": []}
    await peer.close()


async def test_a_record_at_the_default_depth_limit_is_readable(
    sqlite_server: Any,
) -> None:
    """The deepest record the defaults accept: written, stored, read back from storage."""
    peer = await WireClient.connect(url_of(sqlite_server), login={})
    path = ".".join(f"k{i}" for i in range(99))
    await peer.send(write(R.CREATEANDPATCH, "doc", "[1]", path=path))  # 99 + 1 = 100
    assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    await refused(peer, write(R.PATCH, "doc", "[[1]]", path=path))  # 101
    sqlite_server.store.forget("doc")
    version, data = await read(peer, "doc")
    for i in range(99):
        data = data[f"k{i}"]
    assert (version, data) == (1, [1])
    await peer.close()


@pytest.mark.parametrize(
    "data",
    [deep(100_000, "{}"), "{" + '"a":{' * 200 + "}" * 201, '{"u":"\\ud800"}', '{"n":1e400}'],
    ids=["deep-100k", "deep-200", "surrogate", "1e400"],
)
async def test_unusable_auth_data_is_refused_never_a_crash(
    connect,
    still_served: Check,  # noqa: F811 (the fixture imported above)
    data: str,
) -> None:
    peer = await connect(login=None)
    await peer.handshake()
    await peer.send(Message(Topic.AUTH, AuthAction.REQUEST, data=data))
    assert await peer.recv() == Message(Topic.AUTH, AuthAction.INVALID_MESSAGE_DATA)
    await expect_closed(peer, 1000)  # a clean close, not 1006 after a traceback
    await still_served()


async def test_refusals_are_counted_in_metrics(make_server: ServerFactory) -> None:
    server = await make_server({"server": {"max_json_depth": 5}})
    peer = await WireClient.connect(url_of(server), login={})
    before = dict(REFUSED)
    for data in ('{"a":"\\ud800"}', '{"a":1e999}', "{", deep(6), deep(6)):
        await refused(peer, write(R.CREATEANDUPDATE, "doc", data))
    status, body = await http_get(server.port, "/metrics")
    assert status == 200
    values = parse(body)

    def grew(reason: str) -> float:
        return values[f'recordgate_json_refused_total{{reason="{reason}"}}'] - before.get(reason, 0)

    assert [grew(r) for r in ("lone_surrogate", "non_finite_number", "invalid", "too_deep")] == [
        1,
        1,
        1,
        2,
    ]
    await peer.close()


# -- records that cannot be sent as JSON: only storage written behind our back holds them ------


@pytest.mark.parametrize(
    "stored",
    ['{"a":NaN}', '{"a":1e999}', '{"a":"\\ud800"}', deep(5000)],
    ids=["nan", "1e999", "surrogate", "deep-5000"],
)
async def test_reads_of_an_unsendable_stored_record_are_always_answered(
    make_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture, stored: str
) -> None:
    """A data team wrote a row no client could read: every read gets RECORD_LOAD_ERROR (never
    non-JSON, a hang, or a traceback per try), logged once; other records are unaffected.

    A row nested past the driver's own recursion limit cannot even be loaded: NOTIFY reports
    that, and each read is a load failure (one warning line per read, as in an outage)."""
    db = tmp_path / "r.db"
    server = await make_server({"storage": {"type": "sql", "url": f"sqlite+aiosqlite:///{db}"}})
    peer = await WireClient.connect(url_of(server), login={})
    for name in ("bad", "good"):
        await peer.send(write(R.CREATEANDUPDATE, name, '{"a":1}'))
        assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    with sqlite3.connect(db) as sql:  # behind the server's back
        sql.execute("UPDATE records SET data = ?, version = 2 WHERE name = 'bad'", (stored,))
    await peer.send(Message(Topic.RECORD, R.NOTIFY, names=["bad"], correlation_id="n"))
    notified = await peer.recv()
    loadable = stored != deep(5000)
    assert notified.is_ack if loadable else notified.action == R.RECORD_NOTIFY_ERROR
    caplog.clear()
    for _ in range(3):
        await peer.send(Message(Topic.RECORD, R.READ, name="bad"))
        assert await peer.recv() == Message(
            Topic.RECORD,
            R.RECORD_LOAD_ERROR,
            name="bad",
            original_action=R.READ,
            is_error=True,
        )
        await peer.send(
            Message(Topic.RECORD, R.SUBSCRIBECREATEANDREAD, names=["bad"], correlation_id="s")
        )
        assert (await peer.recv()).is_ack
        reply = await peer.recv()
        assert (reply.action, reply.name, reply.is_error) == (R.RECORD_LOAD_ERROR, "bad", True)
    if loadable:
        await peer.send(Message(Topic.RECORD, R.HEAD, name="bad"))  # no data: served as usual
        assert (await peer.recv()).version == 2
    assert await read(peer, "good") == (1, {"a": 1})
    warnings = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    if loadable:
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once, not per read
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    await peer.close()


# -- lone surrogates in the message's own strings (names, paths) ------------------------------


async def recv_as_sent(peer: WireClient) -> Message:
    """The next message, read as protobuf.js reads it (a lone surrogate echoed back is kept)."""
    frame = await asyncio.wait_for(peer.ws.recv(), 2)
    assert isinstance(frame, bytes)
    try:
        return decode(frame)
    except LoneSurrogateText as exc:
        assert isinstance(exc.message, Message)
        return exc.message


CUT = "cut \ud83d"  # a name cut inside an emoji, as protobuf.js encodes it (ED A0 BD: not UTF-8)


@pytest.mark.parametrize(
    ("sent", "refusal"),
    [
        (write(R.CREATEANDUPDATE, CUT, '{"a":1}'), R.INVALID_MESSAGE_DATA),
        (Message(Topic.RECORD, R.READ, name=CUT), R.INVALID_MESSAGE_DATA),
        (
            Message(Topic.RECORD, R.SUBSCRIBECREATEANDREAD, names=["ok", CUT], correlation_id="s"),
            R.INVALID_MESSAGE_DATA,
        ),
        (write(R.PATCH, "doc", "1", path="a.\udc00"), R.INVALID_MESSAGE_DATA),
        (
            Message(Topic.EVENT, EventAction.EMIT, name=CUT, data='"x"'),
            EventAction.INVALID_MESSAGE_DATA,
        ),
        (
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=[CUT], correlation_id="e"),
            EventAction.INVALID_MESSAGE_DATA,
        ),
        (
            Message(Topic.RPC, RpcAction.REQUEST, name=CUT, correlation_id="r", data="1"),
            RpcAction.INVALID_MESSAGE_DATA,
        ),
        (
            Message(Topic.PRESENCE, PresenceAction.QUERY, names=[CUT], correlation_id="p"),
            PresenceAction.INVALID_PRESENCE_USERS,
        ),
    ],
    ids=["write", "read", "bulk-read", "path", "emit", "subscribe", "rpc", "presence"],
)
async def test_lone_surrogates_in_names_and_paths_are_refused_per_topic(
    connect, sent: Message, refusal: int
) -> None:
    peer = await connect()
    before = REFUSED["lone_surrogate"]
    await peer.send(sent)  # our encoder writes the surrogate as protobuf.js does
    reply = await recv_as_sent(peer)
    assert REFUSED["lone_surrogate"] == before + 1  # shown in /metrics
    assert reply == Message(
        sent.topic,
        refusal,
        name=sent.name,
        names=sent.names,
        correlation_id=sent.correlation_id,
        is_write_ack=sent.is_write_ack,
        original_action=sent.action,
        is_error=True,
    )
    await peer.send(Message(Topic.CONNECTION, ConnectionAction.PING))  # still served
    assert (await peer.recv()).action == ConnectionAction.PONG
    await peer.send(Message(Topic.RECORD, R.HEAD, name="ok"))
    assert (await peer.recv()).version == -1  # nothing of the bulk read was applied


async def test_other_bad_utf8_is_still_undecodable(connect) -> None:
    peer = await connect()
    frame = encode(Message(Topic.RECORD, R.READ, name="\ud800"))
    await peer.send_raw(frame.replace(b"\xed\xa0\x80", b"\xff\xfe\xfd"))
    reply = await peer.recv()
    assert (reply.topic, reply.action) == (Topic.PARSER, ParserAction.UNKNOWN_TOPIC)


# -- data forwarded as sent (events, RPC): the official client JSON.parses it unguarded ---------

NOT_JSON = ["NaN", "Infinity", "{", "[1,]", "undefined", "'x'", '{"a":1e400}', deep(101)]


@pytest.mark.parametrize("data", NOT_JSON)
async def test_event_data_no_client_can_parse_is_refused(connect, data: str) -> None:
    subscriber, emitter = await connect(), await connect()
    await subscriber.send(
        Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["news"], correlation_id="s")
    )
    assert (await subscriber.recv()).is_ack
    await emitter.send(Message(Topic.EVENT, EventAction.EMIT, name="news", data=data))
    assert await emitter.recv() == Message(
        Topic.EVENT,
        EventAction.INVALID_MESSAGE_DATA,
        name="news",
        original_action=EventAction.EMIT,
        is_error=True,
    )
    for good in ('"x"', None, '{"a":[1,{"b":null}]}'):
        await emitter.send(Message(Topic.EVENT, EventAction.EMIT, name="news", data=good))
        got = await subscriber.recv()  # the bad one never arrived; the good ones do
        assert (got.action, got.data) == (EventAction.EMIT, good)


@pytest.mark.parametrize("data", NOT_JSON)
async def test_rpc_data_no_client_can_parse_is_refused(connect, data: str) -> None:
    provider, requester = await connect(), await connect()
    await provider.send(Message(Topic.RPC, RpcAction.PROVIDE, names=["add"], correlation_id="p"))
    assert (await provider.recv()).is_ack
    request = Message(Topic.RPC, RpcAction.REQUEST, name="add", correlation_id="r1", data=data)
    await requester.send(request)
    assert await requester.recv() == Message(
        Topic.RPC,
        RpcAction.INVALID_MESSAGE_DATA,
        name="add",
        correlation_id="r1",
        original_action=RpcAction.REQUEST,
        is_error=True,
    )
    await requester.send(
        Message(Topic.RPC, RpcAction.REQUEST, name="add", correlation_id="r2", data="[1,2]")
    )
    forwarded = await provider.recv()  # only the good request reached the provider
    assert (forwarded.action, forwarded.data) == (RpcAction.REQUEST, "[1,2]")
    answer = Message(
        Topic.RPC, RpcAction.RESPONSE, name="add", correlation_id=forwarded.correlation_id
    )
    answer.data = data
    await provider.send(answer)
    refused = await provider.recv()
    assert (refused.action, refused.is_error) == (RpcAction.INVALID_MESSAGE_DATA, True)
    answer.data = "3"  # the request is still open for a good answer
    await provider.send(answer)
    got = await requester.recv()
    assert (got.action, got.correlation_id, got.data) == (RpcAction.RESPONSE, "r2", "3")
