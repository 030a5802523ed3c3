"""Events through the client: subscribe, emit, unsubscribe, listen."""

from __future__ import annotations

import asyncio

import pytest

from gateway.exceptions import ClientError
from tests.conftest import url_of

from .conftest import Inbox, settle


async def test_emit_reaches_other_clients_and_local_subscribers(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    at_alice, at_bob = Inbox(), Inbox()
    await alice.event.subscribe("news", at_alice)
    await bob.event.subscribe("news", at_bob)
    alice.event.emit("news", {"headline": "hi", "n": [1, 2]})
    assert await at_bob.get() == {"headline": "hi", "n": [1, 2]}
    # The server never echoes to the sender; the client delivers locally, as the JS client does.
    assert await at_alice.get() == {"headline": "hi", "n": [1, 2]}
    await at_alice.silent()


async def test_emit_without_data_and_scalar_data(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    inbox = Inbox()
    await bob.event.subscribe("e", inbox)
    alice.event.emit("e")
    alice.event.emit("e", "text")
    alice.event.emit("e", 0)
    assert [await inbox.get() for _ in range(3)] == [None, "text", 0]


async def test_unsubscribe_stops_delivery_only_for_that_callback(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    first, second = Inbox(), Inbox()
    unsubscribe_first = await bob.event.subscribe("e", first)
    unsubscribe_second = await bob.event.subscribe("e", second)
    await unsubscribe_first()
    alice.event.emit("e", 1)
    assert await second.get() == 1
    await first.silent(0.1)
    await unsubscribe_second()
    assert bob.event.names() == []
    alice.event.emit("e", 2)
    await second.silent()


async def test_a_failing_callback_does_not_stop_the_others(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    inbox = Inbox()

    def broken(data: object) -> None:
        raise RuntimeError("callback bug")

    async def async_callback(data: object) -> None:
        await asyncio.sleep(0)
        inbox(("async", data))

    await bob.event.subscribe("e", broken)
    await bob.event.subscribe("e", async_callback)
    await bob.event.subscribe("e", inbox)
    alice.event.emit("e", 1)
    assert {await inbox.get(), await inbox.get()} == {1, ("async", 1)}


async def test_event_listen_accepts_and_is_told_when_interest_ends(make_client) -> None:
    provider, consumer = await make_client("provider"), await make_client("consumer")
    found, removed = Inbox(), Inbox()

    async def on_found(name: str) -> bool:
        found(name)
        return name.endswith("/yes")

    await provider.event.listen("prices/.*", on_found, removed)
    unsubscribe = await consumer.event.subscribe("prices/yes", lambda data: None)
    await consumer.event.subscribe("prices/no", lambda data: None)
    assert {await found.get(), await found.get()} == {"prices/yes", "prices/no"}
    await unsubscribe()
    assert await removed.get() == "prices/yes"
    await removed.silent(0.1)


async def test_an_accept_the_server_no_longer_waits_for_ends_with_on_removed(
    make_server, make_client
) -> None:
    """The server voids an offer while ``on_found`` decides: it gave up waiting (response
    timeout, 0.2 s here) or the last subscriber left (REMOVED). The server ignores the accept
    that follows, so the client provides nothing: ``on_removed`` tells the application to stop
    (before: it went on believing it provided, and a later offer of the name was a second
    FOUND without a REMOVED between)."""
    server = await make_server({"listen": {"response_timeout": 0.2, "rematch_interval": 0}})
    provider = await make_client("provider", to=url_of(server))
    consumer = await make_client("consumer", to=url_of(server))
    found, removed = Inbox(), Inbox()
    release = asyncio.Event()

    async def on_found(name: str) -> bool:
        found(name)
        if name == "slow/timeout":
            await asyncio.sleep(0.6)  # past the server's response timeout
        else:
            await release.wait()
        return True

    await provider.event.listen("slow/.*", on_found, removed)
    await consumer.event.subscribe("slow/timeout", lambda data: None)
    assert await found.get() == "slow/timeout"
    assert await removed.get() == "slow/timeout"
    unsubscribe = await consumer.event.subscribe("slow/removed", lambda data: None)
    assert await found.get() == "slow/removed"
    await unsubscribe()  # REMOVED while it decides
    await settle(consumer)  # the server has sent REMOVED ...
    await settle(provider)  # ... and the provider's client has read it
    release.set()
    assert await removed.get() == "slow/removed"
    # and an offer it answers in time is provided until the last subscriber leaves
    unsubscribe = await consumer.event.subscribe("slow/removed", lambda data: None)
    assert await found.get() == "slow/removed"
    await removed.silent(0.4)
    await unsubscribe()
    assert await removed.get() == "slow/removed"
    await removed.silent(0.1)


async def test_invalid_listen_pattern_raises(make_client) -> None:
    client = await make_client()
    with pytest.raises(ClientError, match="INVALID_LISTEN_REGEX"):
        await client.event.listen("((", lambda name: True)
    # The pattern is not remembered: listening to it again asks the server again.
    with pytest.raises(ClientError, match="INVALID_LISTEN_REGEX"):
        await client.event.listen("((", lambda name: True)


async def test_listening_twice_to_one_pattern_is_refused(make_client) -> None:
    client = await make_client()
    unlisten = await client.event.listen("a/.*", lambda name: True)
    with pytest.raises(ClientError, match="already listening"):
        await client.event.listen("a/.*", lambda name: True)
    await unlisten()
    await client.event.listen("a/.*", lambda name: True)


async def test_empty_names_are_rejected_locally(make_client) -> None:
    client = await make_client()
    with pytest.raises(ValueError):
        await client.event.subscribe("", print)
    with pytest.raises(ValueError):
        client.event.emit("", 1)
