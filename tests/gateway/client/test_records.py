"""Records through the client: live records, writes with and without acks, one-off calls."""

from __future__ import annotations

import asyncio

import pytest

from gateway.exceptions import RecordError

from .conftest import Inbox, settle


async def test_get_creates_an_empty_record_at_version_zero(make_client) -> None:
    client = await make_client()
    record = await client.record.get("user/1")
    assert (record.name, record.version, record.data) == ("user/1", 0, {})
    assert await client.record.has("user/1")
    assert client.record.names() == ["user/1"]


async def test_writes_reach_other_subscribers_with_versions(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    mine, theirs = await alice.record.get("doc"), await bob.record.get("doc")
    whole, leaf = Inbox(), Inbox()
    theirs.subscribe(whole)
    theirs.subscribe(leaf, "a.b")
    await mine.set({"a": {"b": 1}, "keep": True})
    assert await whole.get() == {"a": {"b": 1}, "keep": True}
    assert await leaf.get() == 1
    await mine.set("a.b", 2)
    assert await leaf.get() == 2
    assert (await whole.get())["a"] == {"b": 2}
    await mine.erase("a")
    assert await leaf.get() is None
    assert await whole.get() == {"keep": True}
    assert mine.version == theirs.version == 3
    assert theirs.get() == {"keep": True}
    assert await bob.record.head("doc") == 3


async def test_a_path_subscriber_is_not_called_for_other_paths(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    mine, theirs = await alice.record.get("doc"), await bob.record.get("doc")
    leaf = Inbox()
    theirs.subscribe(leaf, "x", trigger_now=True)
    assert await leaf.get() is None
    await mine.set("y", 1)
    await leaf.silent(0.1)
    assert theirs.get("y") == 1


async def test_setting_equal_data_sends_nothing(make_client) -> None:
    client, other = await make_client("alice"), await make_client("bob")
    record = await client.record.get("doc")
    await record.set({"a": 1})
    await record.set("a", 1)
    await record.set({"a": 1})
    await record.erase("missing")
    assert record.version == 1
    assert await other.record.head("doc") == 1


async def test_fire_and_forget_writes_arrive_in_order(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    mine, theirs = await alice.record.get("counter"), await bob.record.get("counter")
    values = Inbox()
    theirs.subscribe(values, "n")
    for n in range(1, 6):
        await mine.set("n", n, ack=False)
    assert [await values.get() for _ in range(5)] == [1, 2, 3, 4, 5]
    assert theirs.version == 5


async def test_values_handed_out_are_copies(make_client) -> None:
    client = await make_client()
    record = await client.record.get("doc")
    value = {"list": [1]}
    await record.set(value)
    value["list"].append(2)  # the caller's object is not the record's
    record.data["list"].append(3)
    record.get("list").append(4)
    assert record.get() == {"list": [1]}


async def test_two_gets_share_state_but_discard_separately(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    first, second = await asyncio.gather(alice.record.get("doc"), alice.record.get("doc"))
    seen_first, seen_second = Inbox(), Inbox()
    first.subscribe(seen_first)
    second.subscribe(seen_second)
    await first.discard()
    with pytest.raises(RecordError, match="DISCARDED"):
        await first.set("a", 1)
    await bob.record.set_data("doc", {"a": 2})
    assert await seen_second.get() == {"a": 2}
    await seen_first.silent(0.1)
    async with second:
        pass
    assert alice.record.names() == []
    await bob.record.set_data("doc", {"a": 3})
    await seen_second.silent(0.1)  # unsubscribed from the server with the last handle


async def test_snapshot_head_and_has(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    await alice.record.set_data("doc", {"a": [1, 2]})
    assert await bob.record.snapshot("doc") == {"a": [1, 2]}
    assert await bob.record.head("doc") == 1
    assert await bob.record.has("doc")
    assert await bob.record.head("missing") == -1
    assert not await bob.record.has("missing")
    with pytest.raises(RecordError, match="RECORD_NOT_FOUND") as caught:
        await bob.record.snapshot("missing")
    assert (caught.value.code, caught.value.name) == ("RECORD_NOT_FOUND", "missing")


async def test_set_data_creates_patches_and_updates_without_subscribing(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    theirs = await bob.record.get("cfg")
    seen = Inbox()
    theirs.subscribe(seen)
    await alice.record.set_data("cfg", "limits.max", 10)
    assert await seen.get() == {"limits": {"max": 10}}
    await alice.record.set_data("cfg", {"fresh": True}, ack=False)
    assert await seen.get() == {"fresh": True}
    assert alice.record.names() == []
    await alice.record.set_data("list", [1, 2])
    assert await alice.record.snapshot("list") == [1, 2]


async def test_set_data_on_a_live_record_goes_through_it(make_client) -> None:
    client = await make_client()
    record = await client.record.get("doc")
    await client.record.set_data("doc", "a", 1)
    assert (record.version, record.data) == (1, {"a": 1})


async def test_delete_notifies_every_holder(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    mine, theirs = await alice.record.get("doc"), await bob.record.get("doc")
    await mine.set({"a": 1})
    deleted = Inbox()
    theirs.on_delete(deleted)
    mine.on_delete(deleted)
    await mine.delete()
    assert {await deleted.get(), await deleted.get()} == {"doc"}
    assert mine.deleted and theirs.deleted
    with pytest.raises(RecordError, match="DELETED"):
        await theirs.set("a", 2)
    assert not await bob.record.has("doc")
    again = await bob.record.get("doc")  # recreating starts over
    assert (again.version, again.data) == (0, {})


async def test_bad_arguments_are_rejected_locally(make_client) -> None:
    client = await make_client()
    record = await client.record.get("doc")
    with pytest.raises(TypeError):
        await record.set("scalar")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        await record.set("", 1)
    with pytest.raises(TypeError):
        await client.record.set_data("doc", 5)
    with pytest.raises(ValueError):
        await client.record.get("")
    with pytest.raises(ValueError):
        await record.erase("")
    assert record.version == 0


async def test_server_errors_on_writes_raise_record_error(make_client) -> None:
    client = await make_client()
    with pytest.raises(RecordError) as caught:
        await client.record.set_data("doc", "__proto__.x", 1)  # the server refuses such paths
    assert caught.value.code == "INVALID_MESSAGE_DATA"
    await settle(client)


async def test_record_listen_gives_subscribers_a_provider(make_client) -> None:
    provider, consumer = await make_client("provider"), await make_client("consumer")
    found, removed = Inbox(), Inbox()

    def on_found(name: str) -> bool:
        found(name)
        return True

    unlisten = await provider.record.listen("stock/.*", on_found, removed)
    record = await consumer.record.get("stock/ACME")
    assert await found.get() == "stock/ACME"
    for _ in range(50):
        if record.has_provider:
            break
        await asyncio.sleep(0.02)
    assert record.has_provider
    await record.discard()
    assert await removed.get() == "stock/ACME"
    await unlisten()
    await consumer.record.get("stock/OTHER")
    await found.silent(0.2)


async def test_invalid_record_listen_pattern_raises_record_error(make_client) -> None:
    client = await make_client()
    with pytest.raises(RecordError, match="INVALID_LISTEN_REGEX"):
        await client.record.listen("[", lambda name: True)
