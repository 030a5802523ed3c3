"""Events over a real WebSocket: subscribe, emit, unsubscribe, and their errors."""

from __future__ import annotations

from gateway.protocol import EventAction, Message, Topic


async def test_emit_reaches_subscribers_but_not_sender(connect) -> None:
    alice, bob, carol = await connect(), await connect(), await connect()
    for peer in (alice, bob):
        await peer.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["news"], correlation_id="1")
        )
        ack = await peer.recv()
        assert ack.is_ack and ack.correlation_id == "1"
    await alice.send(Message(Topic.EVENT, EventAction.EMIT, name="news", data='{"a":1}'))
    got = await bob.recv()
    assert (got.action, got.name, got.data) == (EventAction.EMIT, "news", '{"a":1}')
    await alice.expect_silence()
    await carol.expect_silence()


async def test_duplicate_and_missing_subscriptions_are_reported(connect) -> None:
    peer = await connect()
    sub = Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["x"], correlation_id="1")
    await peer.send(sub)
    assert (await peer.recv()).is_ack
    await peer.send(sub)
    err = await peer.recv()
    assert (err.action, err.name) == (EventAction.MULTIPLE_SUBSCRIPTIONS, "x")
    assert (await peer.recv()).is_ack
    # A bulk unsubscribe of a name not held is acked silently, as the reference does.
    await peer.send(Message(Topic.EVENT, EventAction.UNSUBSCRIBE, names=["y"], correlation_id="2"))
    ack = await peer.recv()
    assert ack.is_ack and ack.correlation_id == "2"


async def test_unsubscribed_and_disconnected_peers_get_nothing(connect) -> None:
    alice, bob, carol = await connect(), await connect(), await connect()
    for peer in (bob, carol):
        await peer.send(
            Message(Topic.EVENT, EventAction.SUBSCRIBE, names=["n"], correlation_id="1")
        )
        await peer.recv()
    await bob.send(Message(Topic.EVENT, EventAction.UNSUBSCRIBE, names=["n"], correlation_id="2"))
    assert (await bob.recv()).is_ack
    await carol.close()
    await alice.send(Message(Topic.EVENT, EventAction.EMIT, name="n", data='"x"'))
    await bob.expect_silence()
