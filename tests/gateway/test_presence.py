"""Presence over a real WebSocket: who is online, and join/leave notices."""

from __future__ import annotations

import asyncio
import json

from gateway.protocol import Message, PresenceAction, Topic
from tests.wire import WireClient

P = Topic.PRESENCE


async def subscribe_all(peer: WireClient) -> None:
    await peer.send(Message(P, PresenceAction.SUBSCRIBE_ALL))
    ack = await peer.recv()
    assert (ack.action, ack.is_ack, ack.correlation_id) == (
        PresenceAction.SUBSCRIBE_ALL,
        True,
        None,
    ), ack


async def follow(peer: WireClient, *users: str, cid: str = "s") -> None:
    await peer.send(Message(P, PresenceAction.SUBSCRIBE, names=list(users), correlation_id=cid))
    ack = await peer.recv()
    assert (ack.action, ack.is_ack, ack.correlation_id) == (PresenceAction.SUBSCRIBE, True, cid)


async def expect(peer: WireClient, action: int, name: str) -> None:
    msg = await peer.recv()
    assert (msg.topic, msg.action, msg.name) == (P, action, name), msg


async def test_first_login_and_last_logout_are_announced(connect) -> None:
    watcher = await connect({"username": "watcher"})
    await subscribe_all(watcher)
    await follow(watcher, "bob")
    bob = await connect({"username": "bob"})
    await expect(watcher, PresenceAction.PRESENCE_JOIN_ALL, "bob")
    await expect(watcher, PresenceAction.PRESENCE_JOIN, "bob")
    carol = await connect({"username": "carol"})
    await expect(watcher, PresenceAction.PRESENCE_JOIN_ALL, "carol")  # not followed singly
    bob_again = await connect({"username": "bob"})
    await watcher.expect_silence(0.1)  # a second connection of bob is no news
    await bob.close()
    await watcher.expect_silence(0.1)  # bob is still online through bob_again
    await bob_again.close()
    await expect(watcher, PresenceAction.PRESENCE_LEAVE_ALL, "bob")
    await expect(watcher, PresenceAction.PRESENCE_LEAVE, "bob")
    await carol.close()
    await expect(watcher, PresenceAction.PRESENCE_LEAVE_ALL, "carol")
    await watcher.expect_silence(0.1)


async def test_anonymous_logins_are_not_users(connect) -> None:
    watcher = await connect({"username": "watcher"})
    await subscribe_all(watcher)
    anonymous = await connect()
    await watcher.expect_silence(0.1)
    await anonymous.close()
    await watcher.expect_silence(0.1)
    await watcher.send(Message(P, PresenceAction.QUERY_ALL))
    answer = await watcher.recv()
    assert (answer.action, answer.names) == (PresenceAction.QUERY_ALL_RESPONSE, [])


async def test_query_all_and_query(connect) -> None:
    alice = await connect({"username": "alice"})
    await connect({"username": "bob"})
    await connect({"username": "bob"})
    anonymous = await connect()
    await alice.send(Message(P, PresenceAction.QUERY_ALL, correlation_id="q"))
    answer = await alice.recv()
    assert (answer.action, answer.names) == (PresenceAction.QUERY_ALL_RESPONSE, ["bob"])
    await anonymous.send(Message(P, PresenceAction.QUERY_ALL))
    assert (await anonymous.recv()).names == ["alice", "bob"]
    await anonymous.send(
        Message(P, PresenceAction.QUERY, names=["alice", "zed", "open"], correlation_id="q2")
    )
    answer = await anonymous.recv()
    assert (answer.action, answer.correlation_id) == (PresenceAction.QUERY_RESPONSE, "q2")
    assert json.loads(answer.data or "") == {"alice": True, "zed": False, "open": False}
    assert answer.data == '{"alice":true,"zed":false,"open":false}'  # compact, as the reference


async def test_duplicate_subscriptions_are_reported(connect) -> None:
    peer = await connect({"username": "peer"})
    await subscribe_all(peer)
    await peer.send(Message(P, PresenceAction.SUBSCRIBE_ALL))
    dup = await peer.recv()
    # The reference names its internal "everyone" subscription here.
    assert (dup.action, dup.name, dup.original_action) == (
        PresenceAction.MULTIPLE_SUBSCRIPTIONS,
        "%_EVERYONE_%",
        PresenceAction.SUBSCRIBE_ALL,
    )
    assert (await peer.recv()).is_ack
    await follow(peer, "bob")
    await peer.send(Message(P, PresenceAction.SUBSCRIBE, names=["bob", "eve"], correlation_id="2"))
    dup = await peer.recv()
    assert (dup.action, dup.name, dup.original_action) == (
        PresenceAction.MULTIPLE_SUBSCRIPTIONS,
        "bob",
        PresenceAction.SUBSCRIBE,
    )
    ack = await peer.recv()
    assert (ack.action, ack.correlation_id, ack.is_ack) == (PresenceAction.SUBSCRIBE, "2", True)


async def test_unsubscribing_stops_the_notices(connect) -> None:
    watcher = await connect({"username": "watcher"})
    await subscribe_all(watcher)
    await follow(watcher, "bob")
    await watcher.send(
        Message(P, PresenceAction.UNSUBSCRIBE, names=["bob", "never"], correlation_id="u")
    )
    ack = await watcher.recv()  # not following "never" is silent, as the reference
    assert (ack.action, ack.correlation_id, ack.is_ack) == (PresenceAction.UNSUBSCRIBE, "u", True)
    bob = await connect({"username": "bob"})
    await expect(watcher, PresenceAction.PRESENCE_JOIN_ALL, "bob")
    await watcher.expect_silence(0.1)
    for _ in range(2):  # repeating UNSUBSCRIBE_ALL is acked too
        await watcher.send(Message(P, PresenceAction.UNSUBSCRIBE_ALL))
        ack = await watcher.recv()
        assert (ack.action, ack.is_ack) == (PresenceAction.UNSUBSCRIBE_ALL, True)
    await bob.close()
    await watcher.expect_silence(0.2)


async def test_a_departed_watcher_is_forgotten(server, connect) -> None:
    watcher = await connect({"username": "watcher"})
    await subscribe_all(watcher)
    await follow(watcher, "bob")
    await watcher.close()
    bob = await connect({"username": "bob"})
    await bob.close()
    for _ in range(200):  # the server notices closed sockets on its own time
        if not (server.presence._everyone or server.presence._online):
            break
        await asyncio.sleep(0.01)
    assert not server.presence._everyone and not server.presence._online
    assert not server.presence.subscriptions.has_subscribers("bob")
    observer = await connect()
    await observer.send(Message(P, PresenceAction.QUERY_ALL))
    assert (await observer.recv()).names == []


async def test_unknown_action_is_an_error(connect) -> None:
    peer = await connect()
    await peer.send(Message(P, PresenceAction.PRESENCE_JOIN, name="x"))
    err = await peer.recv()
    assert (err.action, err.original_action, err.is_error) == (
        PresenceAction.ERROR,
        PresenceAction.PRESENCE_JOIN,
        True,
    )
