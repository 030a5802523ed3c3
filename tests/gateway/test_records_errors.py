"""Records: every kind of bad input gets its answer, changes nothing, and leaves the link usable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.protocol import Message, RecordAction
from gateway.records import MAX_NAME_BYTES
from tests.gateway.test_records import get_record, read, rec
from tests.wire import WireClient

R = RecordAction


async def expect_invalid(peer: WireClient, msg: Message) -> Message:
    await peer.send(msg)
    got = await peer.recv()
    assert (got.action, got.is_error, got.original_action) == (
        R.INVALID_MESSAGE_DATA,
        True,
        msg.action,
    ), got
    return got


@pytest.fixture
async def pair(connect) -> tuple[WireClient, WireClient]:
    """A writer and a watcher, both subscribed to record ``r`` at version 1 ``{"a":{"b":[1]}}``."""
    writer, watcher = await connect(), await connect()
    await get_record(writer, "r")
    await get_record(watcher, "r")
    await writer.send(rec(R.UPDATE, name="r", version=1, data='{"a":{"b":[1]}}'))
    await watcher.recv()
    return writer, watcher


async def assert_unchanged(writer: WireClient, watcher: WireClient) -> None:
    await watcher.expect_silence(0.05)
    assert await read(writer, "r") == (1, {"a": {"b": [1]}})


@pytest.mark.parametrize(
    "data",
    ["{nope", "", "NaN", '{"a": Infinity}', "[1,]", "{'a':1}", "5", '"text"', "null", "true"],
)
async def test_update_data_must_be_a_json_object_or_array(pair, data: str) -> None:
    writer, watcher = pair
    got = await expect_invalid(
        writer,
        rec(R.UPDATE, name="r", version=2, data=data, correlation_id="c", is_write_ack=True),
    )
    assert (got.name, got.version, got.correlation_id, got.is_write_ack) == ("r", 2, "c", True)
    await assert_unchanged(writer, watcher)


async def test_missing_data(pair) -> None:
    writer, watcher = pair
    await expect_invalid(writer, rec(R.UPDATE, name="r", version=2))
    await expect_invalid(writer, rec(R.PATCH, name="r", version=2, path="a"))
    await expect_invalid(writer, rec(R.CREATEANDUPDATE, name="r", version=-1))
    await assert_unchanged(writer, watcher)


@pytest.mark.parametrize(
    "path",
    [
        "__proto__",
        "__proto__.polluted",
        "a.__proto__",
        "a.constructor.prototype",
        "constructor",
        "a.b[0].prototype",
        " __proto__",
        "a..b",
        "a[x]",
        "a[-1]",
        "a[]",
        "[0]",
        "a.",
        "",
        "   ",
        None,
    ],
)
async def test_bad_paths_are_refused(pair, path: str | None) -> None:
    writer, watcher = pair
    got = await expect_invalid(writer, rec(R.PATCH, name="r", version=2, path=path, data="1"))
    assert (got.name, got.path) == ("r", path)
    await expect_invalid(writer, rec(R.ERASE, name="r", version=2, path=path))
    await expect_invalid(writer, rec(R.CREATEANDPATCH, name="r", version=-1, path=path, data="1"))
    await assert_unchanged(writer, watcher)


MULTI = '[{"path":"x","data":1}]'


async def test_whole_record_writes_take_no_path(pair) -> None:
    writer, watcher = pair
    await expect_invalid(writer, rec(R.UPDATE, name="r", version=2, path="a", data="{}"))
    await expect_invalid(writer, rec(R.CREATEANDUPDATE, name="r", version=-1, path="a", data="{}"))
    await expect_invalid(writer, rec(R.PATCH_MULTI, name="r", version=2, path="a", data=MULTI))
    await assert_unchanged(writer, watcher)


async def test_patch_data_must_be_json(pair) -> None:
    writer, watcher = pair
    await expect_invalid(writer, rec(R.PATCH, name="r", version=2, path="a", data="undefined"))
    await assert_unchanged(writer, watcher)


async def test_key_on_an_array_is_refused_at_apply_time(pair) -> None:
    writer, watcher = pair
    await expect_invalid(writer, rec(R.PATCH, name="r", version=2, path="a.b.name", data="1"))
    await assert_unchanged(writer, watcher)
    # The version was not used up: the next write at 2 applies.
    await writer.send(rec(R.PATCH, name="r", version=2, path="a.b[1]", data="2"))
    assert (await watcher.recv()).version == 2


@pytest.mark.parametrize(
    "data",
    [
        "{}",
        "[]",
        '"a"',
        "[1]",
        '[{"data":1}]',
        '[{"path":1,"data":1}]',
        '[{"path":"a","data":1,"extra":0}]',
        '[{"path":"ok","data":1},{"path":"a..b","data":2}]',
        '[{"path":"ok","data":1},{"path":"__proto__.x","data":2}]',
        "[{",
    ],
)
async def test_patch_multi_shape_is_checked_and_nothing_half_applies(pair, data: str) -> None:
    writer, watcher = pair
    await expect_invalid(writer, rec(R.PATCH_MULTI, name="r", version=2, data=data))
    await assert_unchanged(writer, watcher)


async def test_patch_multi_failing_at_apply_time_changes_nothing(pair) -> None:
    writer, watcher = pair
    steps = [{"path": "ok", "data": 1}, {"path": "a.b.key", "data": 2}]  # key on an array
    await expect_invalid(writer, rec(R.PATCH_MULTI, name="r", version=2, data=json.dumps(steps)))
    await assert_unchanged(writer, watcher)


def too_long() -> str:
    return "x" * (MAX_NAME_BYTES + 1)


@pytest.mark.parametrize(
    "msg",
    [
        rec(R.UPDATE, version=1, data="{}"),
        rec(R.UPDATE, name="", version=1, data="{}"),
        rec(R.UPDATE, name=too_long(), version=1, data="{}"),
        rec(R.UPDATE, name="é" * (MAX_NAME_BYTES // 2 + 1), version=1, data="{}"),  # bytes count
        rec(R.PATCH, name=too_long(), version=1, path="a", data="1"),
        rec(R.READ),
        rec(R.READ, name=too_long()),
        rec(R.HEAD, name=""),
        rec(R.DELETE),
        rec(R.DELETE, name=too_long()),
        rec(R.SUBSCRIBECREATEANDREAD, names=[], correlation_id="1"),
        rec(R.SUBSCRIBECREATEANDREAD, names=["ok", too_long()], correlation_id="1"),
        rec(R.SUBSCRIBEANDREAD, names=[""], correlation_id="1"),
        rec(R.SUBSCRIBE, names=[too_long()], correlation_id="1"),
        rec(R.UNSUBSCRIBE, names=[], correlation_id="1"),
        rec(R.SUBSCRIBEANDHEAD, names=[too_long()], correlation_id="1"),
        rec(R.NOTIFY, names=[""], correlation_id="1"),
    ],
    ids=lambda m: f"{R(m.action).name}-{len(m.name or '') + sum(map(len, m.names))}",
)
async def test_bad_names(connect, msg: Message) -> None:
    peer = await connect()
    got = await expect_invalid(peer, msg)
    assert got.correlation_id == msg.correlation_id
    await peer.expect_silence(0.05)  # no ack, no READ_RESPONSE: the message was refused whole
    await peer.send(rec(R.HEAD, name="ok"))
    assert (await peer.recv()).version == -1  # nothing was created; the link still works


async def test_name_at_the_limit_works(connect) -> None:
    peer = await connect()
    name = "y" * MAX_NAME_BYTES
    assert (await get_record(peer, name)).version == 0


async def test_unsupported_actions_get_an_error(connect) -> None:
    peer = await connect()
    for action in (R.CREATE, R.SUBSCRIBECREATEANDUPDATE, R.DELETE_BULK, R.READ_RESPONSE):
        await peer.send(rec(action, name="x"))
        got = await peer.recv()
        assert (got.action, got.original_action, got.is_error) == (R.ERROR, action, True)
    await peer.send(rec(R.HEAD, name="x"))
    assert (await peer.recv()).action == R.HEAD_RESPONSE


async def test_invalid_write_reports_to_write_ack_callbacks(connect) -> None:
    """The JS client routes an isWriteAck reply to the write callback: isError must be set."""
    peer = await connect()
    await get_record(peer, "w")
    fields: dict[str, Any] = {"correlation_id": "9", "is_write_ack": True}
    for msg in (
        rec(R.UPDATE, name="w", version=1, data="1", **fields),
        rec(R.UPDATE, name="w", version=7, data="{}", **fields),
        rec(R.PATCH, name="w", version=1, path="a..b", data="1", **fields),
    ):
        await peer.send(msg)
        got = await peer.recv()
        assert (got.is_error, got.is_write_ack, got.correlation_id) == (True, True, "9"), got
