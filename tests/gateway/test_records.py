"""Records over a real WebSocket: reads, subscriptions, writes, versions, acks, delete, notify."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.protocol import Message, RecordAction, Topic
from gateway.server import Server
from gateway.store import Record
from tests.conftest import ServerFactory, url_of
from tests.wire import WireClient, write

R = RecordAction


def rec(action: int, **fields: Any) -> Message:
    return Message(Topic.RECORD, action, **fields)


async def get_record(peer: WireClient, name: str, cid: str = "c") -> Message:
    """SUBSCRIBECREATEANDREAD one name, as ``client.record.getRecord`` does; its READ_RESPONSE."""
    await peer.send(rec(R.SUBSCRIBECREATEANDREAD, names=[name], correlation_id=cid))
    ack = await peer.recv()
    assert (ack.action, ack.is_ack, ack.names, ack.correlation_id) == (
        R.SUBSCRIBECREATEANDREAD,
        True,
        [name],
        cid,
    )
    got = await peer.recv()
    assert (got.action, got.name) == (R.READ_RESPONSE, name), got
    return got


async def read(peer: WireClient, name: str) -> tuple[int | None, Any]:
    await peer.send(rec(R.READ, name=name))
    got = await peer.recv()
    assert (got.action, got.name) == (R.READ_RESPONSE, name), got
    return got.version, json.loads(got.data or "null")


async def test_subscribe_create_and_read_creates_version_zero(connect) -> None:
    alice = await connect()
    got = await get_record(alice, "users/1")
    assert (got.version, got.data) == (0, "{}")
    assert await read(alice, "users/1") == (0, {})


async def test_subscribe_and_read_does_not_create(connect) -> None:
    alice = await connect()
    await alice.send(rec(R.SUBSCRIBEANDREAD, names=["ghost"], correlation_id="1"))
    assert (await alice.recv()).is_ack
    got = await alice.recv()
    assert (got.action, got.name, got.version, got.data) == (R.READ_RESPONSE, "ghost", -1, "{}")
    await alice.send(rec(R.HEAD, name="ghost"))
    head = await alice.recv()
    assert (head.action, head.version) == (R.HEAD_RESPONSE, -1)


async def test_bulk_subscribe_create_and_read(connect) -> None:
    alice = await connect()
    await alice.send(rec(R.SUBSCRIBECREATEANDREAD, names=["b1", "b2"], correlation_id="9"))
    ack = await alice.recv()
    assert ack.is_ack and ack.names == ["b1", "b2"] and ack.correlation_id == "9"
    got = [await alice.recv(), await alice.recv()]
    assert sorted((m.name, m.version) for m in got) == [("b1", 0), ("b2", 0)]


async def test_update_is_broadcast_to_others_not_the_writer(connect) -> None:
    alice, bob, carol = await connect(), await connect(), await connect()
    await get_record(alice, "doc")
    await get_record(bob, "doc")
    text = '{ "title" : "Hi",  "n": [1, 2.5, null] }'  # forwarded exactly as sent
    await alice.send(rec(R.UPDATE, name="doc", version=1, data=text))
    got = await bob.recv()
    assert (got.action, got.name, got.version, got.data) == (R.UPDATE, "doc", 1, text)
    assert got.correlation_id is None and got.is_write_ack is None
    await alice.expect_silence()
    await carol.expect_silence()
    assert await read(carol, "doc") == (1, {"title": "Hi", "n": [1, 2.5, None]})


async def test_patch_and_erase_are_broadcast_as_patch(connect) -> None:
    alice, bob = await connect(), await connect()
    await get_record(alice, "p")
    await get_record(bob, "p")
    await alice.send(rec(R.PATCH, name="p", version=1, path="a.b[1]", data='"x"'))
    got = await bob.recv()
    assert (got.action, got.version, got.path, got.data) == (R.PATCH, 1, "a.b[1]", '"x"')
    await alice.send(rec(R.PATCH, name="p", version=2, path="keep", data="true"))
    await bob.recv()
    await alice.send(rec(R.ERASE, name="p", version=3, path="a"))
    got = await bob.recv()
    assert (got.action, got.version, got.path, got.data) == (R.PATCH, 3, "a", None)
    assert await read(bob, "p") == (3, {"keep": True})


async def test_patch_multi_applies_atomically_with_one_version(connect) -> None:
    alice, bob = await connect(), await connect()
    await get_record(alice, "pm")
    await get_record(bob, "pm")
    steps = [{"path": "a", "data": 1}, {"path": "b[1]", "data": "x"}, {"path": "a"}]
    await alice.send(rec(R.PATCH_MULTI, name="pm", version=1, data=json.dumps(steps)))
    got = await bob.recv()
    # JS clients have no PATCH_MULTI: subscribers get the whole result as one UPDATE.
    assert (got.action, got.version, json.loads(got.data or "")) == (
        R.UPDATE,
        1,
        {"b": [None, "x"]},
    )
    assert await read(alice, "pm") == (1, {"b": [None, "x"]})


async def test_records_can_hold_arrays(connect) -> None:
    alice, bob = await connect(), await connect()
    await get_record(alice, "list")
    await get_record(bob, "list")
    await alice.send(rec(R.UPDATE, name="list", version=1, data='["a","b"]'))
    assert (await bob.recv()).data == '["a","b"]'
    await alice.send(rec(R.PATCH, name="list", version=2, path="1", data='"B"'))
    await alice.send(rec(R.PATCH, name="list", version=3, path="3", data='"D"'))
    await bob.recv()
    await bob.recv()
    assert await read(bob, "list") == (3, ["a", "B", None, "D"])


async def test_racing_writers_exactly_one_wins(connect) -> None:
    alice, bob, watcher = await connect(), await connect(), await connect()
    for peer in (alice, bob, watcher):
        await get_record(peer, "race")
    await asyncio.gather(
        alice.send(rec(R.UPDATE, name="race", version=1, data='{"by":"alice"}')),
        bob.send(
            rec(
                R.UPDATE,
                name="race",
                version=1,
                data='{"by":"bob"}',
                is_write_ack=True,
                correlation_id="b1",
            )
        ),
    )
    applied = await watcher.recv()
    assert (applied.action, applied.version) == (R.UPDATE, 1)
    await watcher.expect_silence()
    winner, loser = (alice, bob) if applied.data == '{"by":"alice"}' else (bob, alice)
    got = await loser.recv()
    if got.action == R.UPDATE:  # the winner's broadcast may come first
        got = await loser.recv()
    assert (got.action, got.name, got.version, got.data) == (
        R.VERSION_EXISTS,
        "race",
        1,
        applied.data,
    )
    assert got.original_action == R.UPDATE
    if loser is bob:
        assert (got.correlation_id, got.is_write_ack) == ("b1", True)
    else:
        assert (got.correlation_id, got.is_write_ack) == (None, None)
        assert (await winner.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    assert await read(watcher, "race") == (1, json.loads(applied.data or ""))


async def test_version_rules(connect) -> None:
    alice, bob = await connect(), await connect()
    await get_record(alice, "v")
    await get_record(bob, "v")
    await alice.send(rec(R.UPDATE, name="v", version=1, data='{"n":1}'))
    await bob.recv()
    # Too far ahead: INVALID_VERSION echoing the write with the current version.
    await alice.send(
        rec(R.PATCH, name="v", version=5, path="x", data="1", correlation_id="w", is_write_ack=True)
    )
    got = await alice.recv()
    assert (got.action, got.name, got.version, got.path, got.data) == (
        R.INVALID_VERSION,
        "v",
        1,
        "x",
        "1",
    )
    assert (got.original_action, got.correlation_id, got.is_write_ack, got.is_error) == (
        R.PATCH,
        "w",
        True,
        True,
    )
    # Behind: VERSION_EXISTS with the current version and data.
    await alice.send(rec(R.ERASE, name="v", version=1, path="n"))
    got = await alice.recv()
    assert (got.action, got.version, got.data, got.original_action) == (
        R.VERSION_EXISTS,
        1,
        '{"n":1}',
        R.PATCH,
    )
    # The record stays writable after both refusals; -1 forces the next version.
    await alice.send(rec(R.UPDATE, name="v", version=-1, data='{"n":2}'))
    got = await bob.recv()
    assert (got.version, got.data) == (2, '{"n":2}')
    await bob.expect_silence()
    assert await read(alice, "v") == (2, {"n": 2})


async def test_write_to_a_missing_record_is_an_update_error(connect) -> None:
    alice = await connect()
    await alice.send(
        rec(R.UPDATE, name="nope", version=1, data="{}", correlation_id="7", is_write_ack=True)
    )
    got = await alice.recv()
    assert (got.action, got.name, got.is_error, got.correlation_id, got.is_write_ack) == (
        R.RECORD_UPDATE_ERROR,
        "nope",
        True,
        "7",
        True,
    )
    await alice.send(rec(R.HEAD, name="nope"))
    assert (await alice.recv()).version == -1


async def test_create_and_update_and_create_and_patch(connect) -> None:
    alice, bob = await connect(), await connect()
    await alice.send(
        rec(
            R.CREATEANDUPDATE,
            name="cu",
            version=-1,
            data='{"a":1}',
            correlation_id="1",
            is_write_ack=True,
        )
    )
    ack = await alice.recv()
    assert (ack.action, ack.name, ack.correlation_id, ack.is_write_ack) == (
        R.WRITE_ACKNOWLEDGEMENT,
        "cu",
        "1",
        True,
    )
    assert await read(alice, "cu") == (1, {"a": 1})
    await get_record(bob, "cu")
    await alice.send(rec(R.CREATEANDPATCH, name="cu", version=-1, path="b.c", data="2"))
    got = await bob.recv()
    assert (got.action, got.version, got.path, got.data) == (R.PATCH, 2, "b.c", "2")
    await alice.send(rec(R.CREATEANDPATCH, name="cp", version=-1, path="x[1]", data="3"))
    await alice.expect_silence()
    assert await read(alice, "cp") == (1, {"x": [None, 3]})


async def test_write_ack_is_sent_and_plain_writes_get_none(connect) -> None:
    alice = await connect()
    await get_record(alice, "acked")
    await alice.send(rec(R.UPDATE, name="acked", version=1, data="{}"))
    await alice.send(
        rec(
            R.PATCH,
            name="acked",
            version=2,
            path="a",
            data="1",
            correlation_id="42",
            is_write_ack=True,
        )
    )
    got = await alice.recv()
    assert (got.action, got.name, got.correlation_id, got.is_write_ack) == (
        R.WRITE_ACKNOWLEDGEMENT,
        "acked",
        "42",
        True,
    )
    await alice.expect_silence()


async def test_read_and_head(connect) -> None:
    alice = await connect()
    await alice.send(rec(R.READ, name="missing"))
    got = await alice.recv()
    assert (got.action, got.name, got.is_error, got.original_action) == (
        R.RECORD_NOT_FOUND,
        "missing",
        True,
        R.READ,
    )
    await get_record(alice, "h")
    await alice.send(rec(R.UPDATE, name="h", version=1, data='{"z":1}'))
    await alice.send(rec(R.HEAD, name="h"))
    got = await alice.recv()
    assert (got.action, got.name, got.version) == (R.HEAD_RESPONSE, "h", 1)


async def test_subscribe_and_head_and_head_bulk(connect) -> None:
    alice, bob = await connect(), await connect()
    await get_record(alice, "h1")
    await bob.send(rec(R.SUBSCRIBEANDHEAD, names=["h1", "h2"], correlation_id="s"))
    got = await bob.recv()
    assert (got.action, got.versions) == (R.HEAD_RESPONSE_BULK, {"h1": 0, "h2": -1})
    ack = await bob.recv()
    assert (ack.action, ack.is_ack, ack.correlation_id) == (R.SUBSCRIBEANDHEAD, True, "s")
    await alice.send(rec(R.UPDATE, name="h1", version=1, data="{}"))
    assert (await bob.recv()).action == R.UPDATE  # subscribed by SUBSCRIBEANDHEAD
    await bob.send(rec(R.HEAD_BULK, names=["h1", "h3"]))
    got = await bob.recv()
    assert (got.action, got.versions) == (R.HEAD_RESPONSE_BULK, {"h1": 1, "h3": -1})


async def test_subscribe_unsubscribe_bulk(connect) -> None:
    alice, bob = await connect(), await connect()
    await get_record(alice, "s")
    sub = rec(R.SUBSCRIBE, names=["s"], correlation_id="1")
    await bob.send(sub)
    ack = await bob.recv()
    assert (ack.action, ack.is_ack, ack.correlation_id, ack.names) == (R.SUBSCRIBE, True, "1", [])
    await bob.send(sub)
    dup = await bob.recv()
    assert (dup.action, dup.name, dup.original_action) == (
        R.MULTIPLE_SUBSCRIPTIONS,
        "s",
        R.SUBSCRIBE,
    )
    assert (await bob.recv()).is_ack
    await alice.send(rec(R.UPDATE, name="s", version=1, data="{}"))
    assert (await bob.recv()).action == R.UPDATE
    await bob.send(rec(R.UNSUBSCRIBE, names=["s", "never"], correlation_id="2"))
    ack = await bob.recv()  # not-held names are silent, as in the reference
    assert (ack.action, ack.is_ack, ack.correlation_id) == (R.UNSUBSCRIBE, True, "2")
    await alice.send(rec(R.UPDATE, name="s", version=2, data="{}"))
    await bob.expect_silence()


async def test_disconnect_drops_subscriptions(server: Server, connect) -> None:
    alice, bob = await connect(), await connect()
    await get_record(alice, "d")
    await get_record(bob, "d")
    await bob.close()
    for _ in range(50):
        if len(server.records.subscriptions.subscribers("d")) == 1:
            break
        await asyncio.sleep(0.01)
    assert len(server.records.subscriptions.subscribers("d")) == 1
    await alice.send(rec(R.UPDATE, name="d", version=1, data="{}"))
    await alice.expect_silence()


async def test_delete_tells_others_unsubscribes_and_allows_recreation(
    server: Server, connect
) -> None:
    alice, bob = await connect(), await connect()
    await get_record(alice, "del")
    await get_record(bob, "del")
    await alice.send(rec(R.UPDATE, name="del", version=1, data='{"a":1}'))
    await bob.recv()
    await alice.send(rec(R.DELETE, name="del"))
    got = await alice.recv()
    assert (got.action, got.name) == (R.DELETE_SUCCESS, "del")
    got = await bob.recv()
    assert (got.action, got.name) == (R.DELETED, "del")
    assert not server.records.subscriptions.has_subscribers("del")
    await alice.expect_silence()
    await alice.send(rec(R.HEAD, name="del"))
    assert (await alice.recv()).version == -1
    assert (await get_record(bob, "del")).version == 0  # starts over
    await alice.send(rec(R.CREATEANDUPDATE, name="del", version=-1, data='{"b":2}'))
    assert (await bob.recv()).version == 1


async def test_delete_of_a_missing_record_succeeds(connect) -> None:
    alice = await connect()
    await alice.send(rec(R.DELETE, name="never-was"))
    assert (await alice.recv()).action == R.DELETE_SUCCESS


async def test_notify_pushes_what_storage_now_holds(server: Server, connect) -> None:
    alice, bob = await connect(), await connect()
    await get_record(bob, "n1")
    await get_record(bob, "n2")
    await get_record(bob, "n3")
    # Storage changes behind the server's back (MemoryStore is its own storage).
    server.store.put(Record("n1", 7, {"outside": True}))
    await server.store.delete("n2")
    await alice.send(rec(R.NOTIFY, names=["n1", "n2", "n3", "unwatched"], correlation_id="x"))
    ack = await alice.recv()
    assert (ack.action, ack.is_ack, ack.correlation_id) == (R.NOTIFY, True, "x")
    pushed = {m.name: m for m in [await bob.recv(), await bob.recv(), await bob.recv()]}
    assert (pushed["n1"].action, pushed["n1"].version, pushed["n1"].data) == (
        R.UPDATE,
        7,
        '{"outside":true}',
    )
    assert pushed["n2"].action == R.DELETED
    assert (pushed["n3"].action, pushed["n3"].version) == (R.UPDATE, 0)
    assert not server.records.subscriptions.has_subscribers("n2")
    assert server.records.subscriptions.has_subscribers("n1")


async def test_external_change_reaches_subscribers(server: Server, connect) -> None:
    alice = await connect()
    await get_record(alice, "ext")
    assert server.store.on_external_change is not None
    server.store.put(Record("ext", 3, {"merged": 1}))
    server.store.on_external_change("ext", Record("ext", 3, {"merged": 1}))
    got = await alice.recv()
    assert (got.action, got.version, got.data) == (R.UPDATE, 3, '{"merged":1}')
    await alice.send(
        rec(R.UPDATE, name="ext", version=4, data="{}", correlation_id="a", is_write_ack=True)
    )
    assert (await alice.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    server.store.on_external_change("ext", None)
    assert (await alice.recv()).action == R.DELETED


async def test_long_names_work(connect) -> None:
    alice = await connect()
    name = "n/" + "é" * 249  # 500 bytes of UTF-8
    assert len(name.encode()) == 500
    assert (await get_record(alice, name)).version == 0
    await alice.send(rec(R.UPDATE, name=name, version=1, data='{"ok":1}'))
    assert await read(alice, name) == (1, {"ok": 1})


async def test_listening_on_records(connect) -> None:
    provider, alice = await connect(), await connect()
    await provider.send(rec(R.LISTEN, name="prov/.*", correlation_id="l"))
    ack = await provider.recv()
    assert (ack.action, ack.is_ack) == (R.LISTEN, True)
    await get_record(alice, "prov/1")
    found = await provider.recv()
    assert (found.action, found.name, found.subscription) == (
        R.SUBSCRIPTION_FOR_PATTERN_FOUND,
        "prov/.*",
        "prov/1",
    )
    await provider.send(rec(R.LISTEN_ACCEPT, name="prov/.*", subscription="prov/1"))
    got = await alice.recv()
    assert (got.action, got.name) == (R.SUBSCRIPTION_HAS_PROVIDER, "prov/1")
    # Deleting the record drops its last subscriber: the provider is told.
    await alice.send(rec(R.DELETE, name="prov/1"))
    assert (await alice.recv()).action == R.DELETE_SUCCESS
    removed = await provider.recv()
    assert (removed.action, removed.subscription) == (R.SUBSCRIPTION_FOR_PATTERN_REMOVED, "prov/1")


async def test_erasing_the_only_keys_of_objects_cannot_let_a_record_pass_its_limit(
    make_server: ServerFactory,
) -> None:
    """The record limit is checked on an estimate of the record's JSON length, measured only
    once the estimate passes it; the estimate once counted a comma too many for each erased
    only key of an object, so after a hundred such erases a record grew a hundred bytes past
    ``limits.max_record_size``."""
    limit = 2000
    server = await make_server({"limits": {"max_record_size": limit}})
    peer = await WireClient.connect(url_of(server), login={})
    whole = write("r", {f"k{i:02}": {"x": 1} for i in range(100)}, ack="whole")
    whole.data = json.dumps(json.loads(whole.data or ""), separators=(",", ":"))  # exact size
    await peer.send(whole)
    assert (await peer.recv()).action == R.WRITE_ACKNOWLEDGEMENT
    for i in range(100):
        await peer.send(rec(R.ERASE, name="r", version=-1, path=f"k{i:02}.x"))
    version, data = await read(peer, "r")
    assert version == 101 and data == {f"k{i:02}": {} for i in range(100)}
    refused = None
    for i in range(200):  # each adds 15 bytes ("pNNN":"yyyyy" and a comma), counted exactly
        await peer.send(rec(R.PATCH, name="r", version=-1, path=f"p{i:03}", data='"yyyyy"'))
        await peer.send(rec(R.READ, name="r"))
        reply = await peer.recv()
        if reply.action == R.INVALID_MESSAGE_DATA:
            refused = reply
            await peer.recv()  # the READ_RESPONSE
            break
    assert refused is not None and server.trips["limits.max_record_size"] == 1, refused
    _, data = await read(peer, "r")
    assert len(json.dumps(data, separators=(",", ":"))) <= limit
    await peer.close()
