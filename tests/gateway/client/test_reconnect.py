"""Dropped connections: the client reconnects, logs in again and replays what it held."""

from __future__ import annotations

import asyncio

import pytest

from gateway.client import ConnectionState
from gateway.exceptions import NotConnected
from tests.conftest import url_of

from .conftest import Gate, Inbox, drop, reconnect, settle


async def test_event_subscriptions_survive_a_reconnect(server, make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    inbox = Inbox()
    await alice.event.subscribe("news", inbox)
    await reconnect(server, alice, "alice")
    bob.event.emit("news", "after")
    assert await inbox.get() == "after"


async def test_rpc_providers_survive_a_reconnect(server, make_client) -> None:
    provider, caller = await make_client("provider"), await make_client("caller")
    await provider.rpc.provide("double", lambda n: 2 * n)
    await reconnect(server, provider, "provider")
    assert await caller.rpc.make("double", 21) == 42


async def test_presence_subscriptions_survive_a_reconnect(server, make_client) -> None:
    watcher = await make_client("watcher")
    everyone, only_carol = Inbox(), Inbox()
    await watcher.presence.subscribe(everyone)
    await watcher.presence.subscribe(only_carol, "carol")
    await reconnect(server, watcher, "watcher")
    await make_client("carol")
    assert await everyone.get() == ("carol", True)
    assert await only_carol.get() == ("carol", True)


async def test_listens_survive_a_reconnect(server, make_client) -> None:
    provider, consumer = await make_client("provider"), await make_client("consumer")
    found, removed = Inbox(), Inbox()
    await provider.event.listen("feed/.*", lambda name: found(name) or True, removed)
    await consumer.event.subscribe("feed/1", lambda data: None)
    assert await found.get() == "feed/1"
    await reconnect(server, provider, "provider")
    # Losing the connection ends what the provider provided; the server offers it again.
    assert await removed.get() == "feed/1"
    assert await found.get() == "feed/1"


async def test_records_are_resubscribed_and_read_again(make_server, make_client) -> None:
    gate = Gate()
    server = await make_server(authenticator=gate)
    alice = await make_client("alice", to=url_of(server))
    bob = await make_client("bob", to=url_of(server))
    mine, theirs = await alice.record.get("doc"), await bob.record.get("doc")
    seen = Inbox()
    theirs.subscribe(seen, "n")
    await mine.set({"n": 1})
    assert await seen.get() == 1
    states = Inbox()
    bob.on_state_change(states)
    gate.open.clear()  # bob cannot log in again until the gate opens
    drop(server, "bob")
    assert await states.get() is ConnectionState.RECONNECTING
    await mine.set({"n": 2})  # missed by bob while away
    await mine.set({"n": 3})
    gate.open.set()
    assert await states.get() is ConnectionState.OPEN
    assert await seen.get() == 3  # read again because its version moved
    assert (theirs.version, theirs.data) == (3, {"n": 3})
    await mine.set({"n": 4})  # and subscribed again
    assert await seen.get() == 4


async def test_an_unchanged_record_is_not_read_again(server, make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    mine, theirs = await alice.record.get("doc"), await bob.record.get("doc")
    seen = Inbox()
    theirs.subscribe(seen)
    await mine.set({"n": 1})
    assert await seen.get() == {"n": 1}
    await reconnect(server, bob, "bob")
    await seen.silent(0.1)
    await mine.set({"n": 2})
    assert await seen.get() == {"n": 2}
    assert theirs.version == 2


async def test_a_record_deleted_while_away_is_marked_deleted(make_server, make_client) -> None:
    gate = Gate()
    server = await make_server(authenticator=gate)
    alice = await make_client("alice", to=url_of(server))
    bob = await make_client("bob", to=url_of(server))
    mine, theirs = await alice.record.get("doc"), await bob.record.get("doc")
    deleted = Inbox()
    theirs.on_delete(deleted)
    states = Inbox()
    bob.on_state_change(states)
    gate.open.clear()
    drop(server, "bob")
    assert await states.get() is ConnectionState.RECONNECTING
    await mine.delete()
    gate.open.set()
    assert await deleted.get() == "doc"
    assert theirs.deleted


async def test_writes_while_disconnected_raise_and_change_nothing(make_server, make_client) -> None:
    gate = Gate()
    server = await make_server(authenticator=gate)
    alice = await make_client("alice", to=url_of(server))
    record = await alice.record.get("doc")
    states = Inbox()
    alice.on_state_change(states)
    gate.open.clear()
    drop(server)
    assert await states.get() is ConnectionState.RECONNECTING
    with pytest.raises(NotConnected):
        await record.set("a", 1)
    with pytest.raises(NotConnected):
        alice.event.emit("e")
    assert (record.version, record.data) == (0, {})
    gate.open.set()
    assert await states.get() is ConnectionState.OPEN
    await record.set("a", 1)
    assert record.version == 1


async def test_requests_in_flight_fail_when_the_connection_drops(server, make_client) -> None:
    provider, caller = await make_client("provider"), await make_client("caller")
    await provider.rpc.provide("slow", lambda data: asyncio.sleep(5))
    call = asyncio.create_task(caller.rpc.make("slow"))
    await asyncio.sleep(0.1)
    drop(server, "caller")
    with pytest.raises(NotConnected, match="lost"):
        await call


async def test_reconnects_after_a_server_restart_on_the_same_port(make_server, make_client) -> None:
    first = await make_server()
    port = first.port
    client = await make_client("alice", to=url_of(first), reconnect_delay=0.05)
    inbox = Inbox()
    await client.event.subscribe("e", inbox)
    states = Inbox()
    client.on_state_change(states)
    await first.close()
    assert await states.get() is ConnectionState.RECONNECTING
    await asyncio.sleep(0.2)  # a few refused attempts, backing off
    second = await make_server({"server": {"port": port}})
    assert await states.get(3) is ConnectionState.OPEN
    await settle(client)
    other = await make_client("bob", to=url_of(second))
    other.event.emit("e", "back")
    assert await inbox.get() == "back"


async def test_gives_up_after_max_attempts(make_server, make_client) -> None:
    server = await make_server()
    client = await make_client(to=url_of(server), max_reconnect_attempts=2, reconnect_delay=0.01)
    errors, states = Inbox(), Inbox()
    client.on_error(errors)
    client.on_state_change(states)
    await server.close()
    assert await states.get() is ConnectionState.RECONNECTING
    assert await states.get() is ConnectionState.CLOSED
    error = await errors.get()
    assert isinstance(error, NotConnected) and "2 attempts" in str(error)


async def test_a_refused_relogin_closes_the_client(make_server, make_client) -> None:
    gate = Gate()
    server = await make_server(authenticator=gate)
    client = await make_client("alice", to=url_of(server))
    states = Inbox()
    client.on_state_change(states)
    gate.refuse.add("alice")
    drop(server)
    assert await states.get() is ConnectionState.RECONNECTING
    assert await states.get() is ConnectionState.CLOSED


async def test_without_reconnect_a_drop_closes(server, make_client) -> None:
    client = await make_client(reconnect=False)
    states = Inbox()
    client.on_state_change(states)
    drop(server)
    assert await states.get() is ConnectionState.CLOSED


async def test_reopening_after_close_replays_what_the_client_holds(make_client) -> None:
    alice, bob = await make_client("alice"), await make_client("bob")
    events, values = Inbox(), Inbox()
    await alice.event.subscribe("e", events)
    record = await alice.record.get("doc")
    record.subscribe(values, "n")
    await alice.close()
    await bob.record.set_data("doc", {"n": 1})
    await alice.connect()
    assert await values.get() == 1  # re-read: it changed while the client was closed
    await settle(alice)
    bob.event.emit("e", "again")
    assert await events.get() == "again"
