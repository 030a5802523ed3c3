"""Presence through the client: queries and join/leave subscriptions."""

from __future__ import annotations

from .conftest import Inbox


async def test_get_all_and_get(make_client) -> None:
    alice = await make_client("alice")
    await make_client("bob")
    await make_client(None)  # an open login is not a user
    assert await alice.presence.get_all() == ["bob"]
    assert await alice.presence.get(["bob", "alice", "zed"]) == {
        "bob": True,
        "alice": True,
        "zed": False,
    }


async def test_subscribe_to_everyone_and_to_one_user(make_client) -> None:
    watcher = await make_client("watcher")
    everyone, only_bob = Inbox(), Inbox()
    await watcher.presence.subscribe(everyone)
    unsubscribe_bob = await watcher.presence.subscribe(only_bob, "bob")
    carol = await make_client("carol")
    assert await everyone.get() == ("carol", True)
    bob = await make_client("bob")
    assert await everyone.get() == ("bob", True)
    assert await only_bob.get() == ("bob", True)
    await carol.close()
    assert await everyone.get() == ("carol", False)
    await unsubscribe_bob()
    await bob.close()
    assert await everyone.get() == ("bob", False)
    await only_bob.silent(0.1)


async def test_unsubscribe_from_everyone(make_client) -> None:
    watcher = await make_client("watcher")
    everyone = Inbox()
    unsubscribe = await watcher.presence.subscribe(everyone)
    await unsubscribe()
    await make_client("late")
    await everyone.silent()
