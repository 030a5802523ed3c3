"""The write rule, pure: validation up front, versions, the new snapshot and its broadcast."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.exceptions import InvalidData, LimitExceeded
from gateway.protocol import Message, RecordAction, Topic, encode
from gateway.records import writes
from gateway.records.writes import apply, broadcast, broadcast_frame, parse_change
from gateway.store import Record

R = RecordAction


def write(action: int, **fields: Any) -> Message:
    return Message(Topic.RECORD, action, name="doc", **fields)


def applied(msg: Message, record: Record | None) -> Record | Message:
    return apply(msg, "doc", parse_change(msg), record)


CURRENT = Record("doc", 3, {"a": 1, "keep": {"deep": [1, 2]}})


@pytest.mark.parametrize(("sent", "version"), [(4, 4), (-1, 4)])
def test_the_next_version_or_a_forced_one_applies(sent: int, version: int) -> None:
    new = applied(write(R.UPDATE, version=sent, data='{"b":2}'), CURRENT)
    assert new == Record("doc", version, {"b": 2})


@pytest.mark.parametrize("sent", [3, 2, 0, None])  # None: proto3 leaves a 0 version absent
def test_a_taken_version_gets_version_exists_with_the_current_snapshot(sent: int | None) -> None:
    msg = write(R.PATCH, version=sent, path="a", data="5", correlation_id="c", is_write_ack=True)
    reply = applied(msg, CURRENT)
    assert reply == Message(
        Topic.RECORD,
        R.VERSION_EXISTS,
        name="doc",
        version=3,
        data='{"a":1,"keep":{"deep":[1,2]}}',
        original_action=R.PATCH,
        correlation_id="c",
        is_write_ack=True,
    )


def test_a_version_from_the_future_gets_invalid_version_echoing_the_write() -> None:
    msg = write(R.ERASE, version=5, path="a", correlation_id="c")
    reply = applied(msg, CURRENT)
    assert reply == Message(
        Topic.RECORD,
        R.INVALID_VERSION,
        name="doc",
        version=3,
        path="a",
        original_action=R.PATCH,  # an erase is reported as the PATCH it is on the wire
        correlation_id="c",
        is_error=True,
    )


@pytest.mark.parametrize(
    ("action", "path", "reported"),
    [
        (R.UPDATE, None, R.UPDATE),
        (R.CREATEANDUPDATE, None, R.UPDATE),
        (R.PATCH, "a", R.PATCH),
        (R.CREATEANDPATCH, "a", R.PATCH),
        (R.PATCH_MULTI, None, R.PATCH_MULTI),
    ],
)
def test_refusals_report_the_write_as_sent(action: int, path: str | None, reported: int) -> None:
    data = '[{"path":"a","data":1}]' if action == R.PATCH_MULTI else "{}"
    reply = applied(write(action, version=9, path=path, data=data), CURRENT)
    assert isinstance(reply, Message) and reply.original_action == reported


@pytest.mark.parametrize("is_write_ack", [True, None])
def test_a_plain_write_to_a_missing_record_is_refused(is_write_ack: bool | None) -> None:
    msg = write(R.UPDATE, version=1, data="{}", correlation_id="c", is_write_ack=is_write_ack)
    assert applied(msg, None) == Message(
        Topic.RECORD,
        R.RECORD_UPDATE_ERROR,
        name="doc",
        original_action=R.UPDATE,
        correlation_id="c",
        is_write_ack=is_write_ack,
        is_error=True,
    )


def test_create_and_write_applies_on_an_empty_version_zero() -> None:
    assert applied(write(R.CREATEANDPATCH, version=1, path="x", data="1"), None) == Record(
        "doc", 1, {"x": 1}
    )
    assert applied(write(R.CREATEANDUPDATE, version=-1, data="[1]"), None) == Record("doc", 1, [1])
    reply = applied(write(R.CREATEANDUPDATE, version=0, data="[1]"), None)
    assert isinstance(reply, Message)
    assert (reply.action, reply.version, reply.data) == (R.VERSION_EXISTS, 0, "{}")


def test_a_patch_copies_only_its_path_and_leaves_the_old_snapshot_intact() -> None:
    before = json.dumps(CURRENT.data)
    new = applied(write(R.PATCH, version=4, path="a", data='{"x":[true]}'), CURRENT)
    assert isinstance(new, Record)
    assert new.data == {"a": {"x": [True]}, "keep": {"deep": [1, 2]}}
    assert json.dumps(CURRENT.data) == before
    assert new.data["keep"] is CURRENT.data["keep"]


def test_a_change_that_cannot_apply_raises_invalid_data() -> None:
    record = Record("doc", 1, {"list": [1]})
    with pytest.raises(InvalidData):
        applied(write(R.PATCH, version=2, path="list.key", data="1"), record)


def test_patch_multi_applies_its_steps_in_order_and_erases_without_data() -> None:
    steps = [{"path": "a", "data": {"b": 1}}, {"path": "a.c", "data": 2}, {"path": "keep"}]
    new = applied(write(R.PATCH_MULTI, version=4, data=json.dumps(steps)), CURRENT)
    assert new == Record("doc", 4, {"a": {"b": 1, "c": 2}})


@pytest.mark.parametrize(
    "msg",
    [
        write(R.UPDATE, version=1),  # no data
        write(R.UPDATE, version=1, data="{"),
        write(R.UPDATE, version=1, data="3"),
        write(R.UPDATE, version=1, data='"text"'),
        write(R.UPDATE, version=1, data='{"n":NaN}'),
        write(R.UPDATE, version=1, data='{"n":Infinity}'),
        write(R.UPDATE, version=1, data="{}", path="a"),
        write(R.CREATEANDUPDATE, version=1, data="[]", path="a"),
        write(R.PATCH, version=1, data="1"),  # no path
        write(R.PATCH, version=1, data="1", path="a..b"),
        write(R.PATCH, version=1, data="1", path="__proto__.x"),
        write(R.PATCH, version=1, path="a"),  # no data
        write(R.ERASE, version=1),
        write(R.PATCH_MULTI, version=1, data="[]"),
        write(R.PATCH_MULTI, version=1, data='{"path":"a"}'),
        write(R.PATCH_MULTI, version=1, data='[{"path":1,"data":1}]'),
        write(R.PATCH_MULTI, version=1, data='[{"path":"a","data":1,"x":0}]'),
        write(R.PATCH_MULTI, version=1, data='[{"path":"a."}]'),
        write(R.PATCH_MULTI, version=1, data="[1]"),
        write(R.PATCH_MULTI, version=1, data='[{"path":"a"}]', path="a"),
    ],
    ids=repr,
)
def test_bad_writes_are_refused_before_they_touch_a_record(msg: Message) -> None:
    with pytest.raises(InvalidData):
        parse_change(msg)


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        (
            write(R.UPDATE, version=4, data='{ "b" : 2 }'),
            Message(Topic.RECORD, R.UPDATE, name="doc", version=4, data='{ "b" : 2 }'),
        ),
        (
            write(R.CREATEANDUPDATE, version=4, data='{ "b" : 2 }'),
            Message(Topic.RECORD, R.UPDATE, name="doc", version=4, data='{ "b" : 2 }'),
        ),
        (
            write(R.PATCH, version=4, path="b", data=" 2 "),
            Message(Topic.RECORD, R.PATCH, name="doc", version=4, path="b", data=" 2 "),
        ),
        (
            write(R.CREATEANDPATCH, version=4, path="b", data="2"),
            Message(Topic.RECORD, R.PATCH, name="doc", version=4, path="b", data="2"),
        ),
        (
            write(R.ERASE, version=4, path="a", data="null"),  # an erase broadcasts no data
            Message(Topic.RECORD, R.PATCH, name="doc", version=4, path="a"),
        ),
        (
            write(R.PATCH_MULTI, version=4, data='[{"path":"a","data":"é"}]'),
            Message(Topic.RECORD, R.UPDATE, name="doc", version=4, data='{"a":"é","b":2}'),
        ),
    ],
    ids=repr,
)
def test_subscribers_get_the_write_as_sent_and_patch_multi_as_the_whole_result(
    msg: Message, expected: Message
) -> None:
    msg.correlation_id, msg.is_write_ack = "c", True  # the writer's own, never broadcast
    new = Record("doc", 4, {"a": "é", "b": 2})
    assert broadcast(msg, new) == expected
    assert broadcast_frame(msg, new) == encode(expected)


def test_a_parsed_path_is_reused_only_under_the_limits_it_was_checked_against() -> None:
    deep = write(R.PATCH, version=4, path="a.b.c.d", data="1")
    parse_change(deep)  # allowed, and remembered, under the default limits
    with pytest.raises(LimitExceeded):
        parse_change(deep, writes.WriteLimits(max_path_depth=3))
    wide = write(R.PATCH, version=4, path="a[900]", data="1")
    parse_change(wide)
    with pytest.raises(LimitExceeded):
        parse_change(wide, writes.WriteLimits(max_array_index=899))
    for bad in ("", "a..b", "__proto__"):  # refused every time, never remembered
        for _ in range(2):
            with pytest.raises(InvalidData):
                parse_change(write(R.PATCH, version=4, path=bad, data="1"))


def test_remembered_paths_stay_bounded() -> None:
    for i in range(writes.MAX_PATHS_CACHED * 3):
        parse_change(write(R.PATCH, version=4, path=f"p{i}", data="1"))
        assert len(writes._PATHS) <= writes.MAX_PATHS_CACHED
    change = parse_change(write(R.PATCH, version=4, path="x.y", data="1"))
    assert change({"x": {"z": 0}}, 12)[0] == {"x": {"z": 0, "y": 1}}
