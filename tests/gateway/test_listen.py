"""Listening over a real WebSocket, for records and events: offers, accept/reject, timeouts,
providers coming and going; and the listen pattern guard."""

from __future__ import annotations

import asyncio

import pytest

from gateway.exceptions import InvalidData
from gateway.listen import MAX_PATTERN_LENGTH, compile_pattern
from gateway.protocol import EventAction, Message, RecordAction, Topic
from gateway.server import Server
from tests.conftest import ServerFactory
from tests.wire import WireClient

R, E = Topic.RECORD, Topic.EVENT


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    return await make_server({"listen": {"response_timeout": 0.2}})


@pytest.fixture
def no_shuffle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offer listeners in the order they listened, so a test knows who is asked first."""
    monkeypatch.setattr("gateway.listen.random.shuffle", lambda offers: None)


async def listen(peer: WireClient, pattern: str, topic: int = R) -> None:
    action = RecordAction.LISTEN if topic == R else EventAction.LISTEN
    await peer.send(Message(topic, action, name=pattern))
    ack = await peer.recv()
    assert (ack.action, ack.name, ack.is_ack) == (action, pattern, True), ack


async def subscribe(peer: WireClient, name: str, topic: int = R, cid: str = "s") -> None:
    action = RecordAction.SUBSCRIBE if topic == R else EventAction.SUBSCRIBE
    await peer.send(Message(topic, action, names=[name], correlation_id=cid))
    ack = await peer.recv_until(topic, action)
    assert ack.is_ack and ack.correlation_id == cid, ack


async def unsubscribe(peer: WireClient, name: str, topic: int = R) -> None:
    action = RecordAction.UNSUBSCRIBE if topic == R else EventAction.UNSUBSCRIBE
    await peer.send(Message(topic, action, names=[name], correlation_id="u"))
    assert (await peer.recv_until(topic, action)).is_ack


async def expect_offer(peer: WireClient, pattern: str, name: str, topic: int = R) -> None:
    found = await peer.recv()
    action = (
        RecordAction.SUBSCRIPTION_FOR_PATTERN_FOUND
        if topic == R
        else EventAction.SUBSCRIPTION_FOR_PATTERN_FOUND
    )
    assert (found.topic, found.action, found.name, found.subscription) == (
        topic,
        action,
        pattern,
        name,
    ), found


async def answer(
    peer: WireClient, pattern: str, name: str, *, accept: bool, topic: int = R
) -> None:
    if topic == R:
        action = RecordAction.LISTEN_ACCEPT if accept else RecordAction.LISTEN_REJECT
    else:
        action = EventAction.LISTEN_ACCEPT if accept else EventAction.LISTEN_REJECT
    await peer.send(Message(topic, action, name=pattern, subscription=name))


async def expect(peer: WireClient, action: int, name: str, topic: int = R) -> None:
    msg = await peer.recv()
    assert (msg.topic, msg.action, msg.name) == (topic, action, name), msg


# -- the pattern guard -------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["^record/[a-z]+$", "user/.*", "(a|b)+", "(a+){1}", "a{2,}", "(ab{2})+", r"(a\+)+", ""],
)
def test_ordinary_patterns_compile(pattern: str) -> None:
    assert compile_pattern(pattern).pattern == pattern


@pytest.mark.parametrize("pattern", ["(", "a)", "[z-a]", r"(a)\1", "a(?=b)", "(?<!a)b"])
def test_invalid_and_unsupported_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidData):
        compile_pattern(pattern)


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|a)*b", "(.*a){12}b", ".*a.*a.*a.*a.*a.*b"])
def test_backtracking_bombs_match_in_linear_time(pattern: str) -> None:
    # With a backtracking engine each of these takes minutes on this name; RE2 does not
    # backtrack, so the test finishing at all (under pytest-timeout) is the assertion.
    assert compile_pattern(pattern).search("a" * 50_000 + "!") is None


def test_pattern_length_is_capped() -> None:
    assert compile_pattern("a" * MAX_PATTERN_LENGTH)
    with pytest.raises(InvalidData, match="longer than"):
        compile_pattern("a" * (MAX_PATTERN_LENGTH + 1))


# -- LISTEN / UNLISTEN -------------------------------------------------------------------


async def test_listen_acks_and_refuses_bad_patterns(connect) -> None:
    peer = await connect()
    await peer.send(Message(E, EventAction.LISTEN, name="ev/.*", correlation_id="1"))
    ack = await peer.recv()
    assert (ack.action, ack.name, ack.correlation_id, ack.is_ack) == (
        EventAction.LISTEN,
        "ev/.*",
        "1",
        True,
    )
    for bad in ["(", "(a)\\1", "a(?=b)", "a" * (MAX_PATTERN_LENGTH + 1)]:
        await peer.send(Message(E, EventAction.LISTEN, name=bad))
        await expect(peer, EventAction.INVALID_LISTEN_REGEX, bad, E)
    await peer.send(Message(R, RecordAction.LISTEN, name="("))
    await expect(peer, RecordAction.INVALID_LISTEN_REGEX, "(")
    await peer.expect_silence(0.1)


async def test_duplicate_listen_is_reported_and_unknown_unlisten_ignored(connect) -> None:
    peer = await connect()
    await listen(peer, "r/.*")
    await peer.send(Message(R, RecordAction.LISTEN, name="r/.*"))
    dup = await peer.recv()
    assert (dup.action, dup.name, dup.original_action) == (
        RecordAction.MULTIPLE_SUBSCRIPTIONS,
        "r/.*",
        RecordAction.LISTEN,
    )
    # As the reference: UNLISTEN of a pattern not listened to gets no answer at all.
    await peer.send(Message(R, RecordAction.UNLISTEN, name="other"))
    await peer.expect_silence(0.1)
    await peer.send(Message(R, RecordAction.UNLISTEN, name="r/.*"))
    ack = await peer.recv()
    assert (ack.action, ack.name, ack.is_ack) == (RecordAction.UNLISTEN, "r/.*", True)


# -- offers and providers ----------------------------------------------------------------


async def test_accepting_listener_becomes_provider_of_a_record(connect) -> None:
    provider, alice, bob = await connect(), await connect(), await connect()
    await listen(provider, "^r/")
    await subscribe(alice, "other")
    await provider.expect_silence(0.1)  # a name the pattern does not match
    await subscribe(alice, "r/1")
    await expect_offer(provider, "^r/", "r/1")
    await alice.expect_silence(0.05)
    await answer(provider, "^r/", "r/1", accept=True)
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_PROVIDER, "r/1")
    # A later subscriber hears about the provider before its subscription ack.
    await bob.send(Message(R, RecordAction.SUBSCRIBE, names=["r/1"], correlation_id="b"))
    await expect(bob, RecordAction.SUBSCRIPTION_HAS_PROVIDER, "r/1")
    assert (await bob.recv()).is_ack
    await provider.expect_silence(0.1)  # a second subscriber is no new offer


async def test_last_subscriber_leaving_tells_the_provider(connect) -> None:
    provider, alice, bob = await connect(), await connect(), await connect()
    await listen(provider, "r/.*")
    await subscribe(alice, "r/1")
    await expect_offer(provider, "r/.*", "r/1")
    await answer(provider, "r/.*", "r/1", accept=True)
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_PROVIDER, "r/1")
    await subscribe(bob, "r/1")
    await unsubscribe(alice, "r/1")
    await provider.expect_silence(0.1)
    await bob.close()  # the last subscriber goes by disconnecting
    removed = await provider.recv()
    assert (removed.action, removed.name, removed.subscription) == (
        RecordAction.SUBSCRIPTION_FOR_PATTERN_REMOVED,
        "r/.*",
        "r/1",
    )
    # The name is up for offers again.
    await subscribe(alice, "r/1")
    await expect_offer(provider, "r/.*", "r/1")


async def test_event_subscribers_are_not_told_about_providers(connect) -> None:
    provider, alice = await connect(), await connect()
    await listen(provider, "ev/.*", E)
    await subscribe(alice, "ev/1", E)
    await expect_offer(provider, "ev/.*", "ev/1", E)
    await answer(provider, "ev/.*", "ev/1", accept=True, topic=E)
    await provider.send(Message(E, EventAction.EMIT, name="ev/1", data='"tick"'))
    emitted = await alice.recv()  # no SUBSCRIPTION_HAS_PROVIDER before it, as the reference
    assert (emitted.action, emitted.data) == (EventAction.EMIT, '"tick"')
    await unsubscribe(alice, "ev/1", E)
    await expect(provider, EventAction.SUBSCRIPTION_FOR_PATTERN_REMOVED, "ev/.*", E)


@pytest.mark.usefixtures("no_shuffle")
async def test_reject_and_timeout_move_to_the_next_listener(connect) -> None:
    first, second, third, alice = await connect(), await connect(), await connect(), await connect()
    await listen(first, "r/.*")
    await listen(second, "r/[0-9]")
    await listen(third, "^r/")
    await subscribe(alice, "r/1")
    await expect_offer(first, "r/.*", "r/1")
    await answer(first, "r/.*", "r/1", accept=False)
    await expect_offer(second, "r/[0-9]", "r/1")
    # second stays silent: after the response timeout (0.2 s here) it is told, third is asked.
    timeout = await second.recv(timeout=1.0)
    assert (timeout.action, timeout.subscription) == (RecordAction.LISTEN_RESPONSE_TIMEOUT, "r/1")
    await expect_offer(third, "^r/", "r/1")
    # A late answer from second, or one from a listener never asked, changes nothing.
    await answer(second, "r/[0-9]", "r/1", accept=True)
    await answer(first, "r/.*", "r/1", accept=True)
    await alice.expect_silence(0.1)
    await answer(third, "^r/", "r/1", accept=False)
    # Nobody left: the name stays unprovided and nobody is asked again.
    for peer in (first, second, third, alice):
        await peer.expect_silence(0.3)


async def test_only_one_of_several_listeners_is_asked_at_a_time(connect) -> None:
    listeners = [await connect() for _ in range(4)]
    alice = await connect()
    for peer in listeners:
        await listen(peer, "r/.*")
    await subscribe(alice, "r/x")

    async def was_asked(peer: WireClient) -> bool:
        try:
            msg = await peer.recv(timeout=0.1)
        except TimeoutError:
            return False
        assert msg.action == RecordAction.SUBSCRIPTION_FOR_PATTERN_FOUND, msg
        return True

    answers = await asyncio.gather(*(was_asked(peer) for peer in listeners))
    asked = [peer for peer, yes in zip(listeners, answers, strict=True) if yes]
    assert len(asked) == 1
    await answer(asked[0], "r/.*", "r/x", accept=True)
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_PROVIDER, "r/x")


@pytest.mark.usefixtures("no_shuffle")
async def test_provider_going_away_restarts_the_search(connect) -> None:
    first, second, alice = await connect(), await connect(), await connect()
    await listen(first, "r/.*")
    await listen(second, "r/.*")
    await subscribe(alice, "r/1")
    await expect_offer(first, "r/.*", "r/1")
    await answer(first, "r/.*", "r/1", accept=True)
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_PROVIDER, "r/1")
    await first.close()
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_NO_PROVIDER, "r/1")
    await expect_offer(second, "r/.*", "r/1")
    await answer(second, "r/.*", "r/1", accept=True)
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_PROVIDER, "r/1")
    # UNLISTEN by the provider: acked, subscribers told, no listener left to ask.
    await second.send(Message(R, RecordAction.UNLISTEN, name="r/.*"))
    assert (await second.recv()).is_ack
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_NO_PROVIDER, "r/1")
    await second.expect_silence(0.1)
    # A listener arriving now is offered the unprovided name.
    third = await connect()
    await listen(third, "r/1")
    await expect_offer(third, "r/1", "r/1")


async def test_new_listener_is_offered_existing_unprovided_names(connect) -> None:
    provider, alice, bob, listener = (
        await connect(),
        await connect(),
        await connect(),
        await connect(),
    )
    await listen(provider, "^a/1$")
    await subscribe(alice, "a/1")
    await expect_offer(provider, "^a/1$", "a/1")
    await answer(provider, "^a/1$", "a/1", accept=True)
    await subscribe(alice, "a/2")
    await subscribe(bob, "a/3")
    await subscribe(bob, "b/1")
    await listen(listener, "^a/")
    offered = {(await listener.recv()).subscription for _ in range(2)}
    assert offered == {"a/2", "a/3"}  # a/1 has a provider, b/1 does not match
    await listener.expect_silence(0.1)


@pytest.mark.usefixtures("no_shuffle")
async def test_listener_leaving_while_asked_passes_the_offer_on(connect) -> None:
    first, second, alice = await connect(), await connect(), await connect()
    await listen(first, "r/.*")
    await listen(second, "r/.*")
    await subscribe(alice, "r/1")
    await expect_offer(first, "r/.*", "r/1")
    await first.close()
    await expect_offer(second, "r/.*", "r/1")  # at once, not after the response timeout


async def test_last_subscriber_leaving_during_an_offer_voids_it(connect) -> None:
    listener, alice = await connect(), await connect()
    await listen(listener, "r/.*")
    await subscribe(alice, "r/1")
    await expect_offer(listener, "r/.*", "r/1")
    await unsubscribe(alice, "r/1")
    await expect(listener, RecordAction.SUBSCRIPTION_FOR_PATTERN_REMOVED, "r/.*")
    await answer(listener, "r/.*", "r/1", accept=True)  # too late: ignored
    await listener.expect_silence(0.3)  # and no response timeout either
    await subscribe(alice, "r/1")
    await expect_offer(listener, "r/.*", "r/1")
    await answer(listener, "r/.*", "r/1", accept=True)
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_PROVIDER, "r/1")


async def test_listen_state_is_forgotten_with_the_connection(server, connect) -> None:
    listener, alice = await connect(), await connect()
    await listen(listener, "r/.*")
    await listen(listener, "ev/.*", E)
    await subscribe(alice, "r/1")
    await expect_offer(listener, "r/.*", "r/1")
    await answer(listener, "r/.*", "r/1", accept=True)
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_PROVIDER, "r/1")
    await listener.close()
    await expect(alice, RecordAction.SUBSCRIPTION_HAS_NO_PROVIDER, "r/1")
    for registry in (server.records.listen, server.events.listen):
        assert not registry._listeners and not registry._patterns
        assert not registry._providers and not registry._provided_by and not registry._searches


# -- listen.shuffle_providers and listen.rematch_interval ------------------------------------


async def offered_first(make_server: ServerFactory, shuffle: bool, names: int) -> list[int]:
    """Which of three listeners (in the order they listened) is offered each of ``names``."""
    server = await make_server(
        {"listen": {"response_timeout": 5, "shuffle_providers": shuffle, "rematch_interval": 0}}
    )
    url = f"ws://127.0.0.1:{server.port}/deepstream"
    listeners = [await WireClient.connect(url, login={}) for _ in range(3)]
    subscriber = await WireClient.connect(url, login={})
    try:
        for peer in listeners:
            await listen(peer, "order/.*")
        firsts = []
        for i in range(names):
            name = f"order/{i}"
            await subscribe(subscriber, name, cid=str(i))
            offered = await asyncio.gather(
                *(p.recv(0.5) for p in listeners), return_exceptions=True
            )
            got = [j for j, msg in enumerate(offered) if isinstance(msg, Message)]
            assert len(got) == 1, offered  # one at a time
            firsts.append(got[0])
            # each rejects in turn: the order of the remaining offers shows too
            for _ in range(2):
                await answer(listeners[got[-1]], "order/.*", name, accept=False)
                nxt = await asyncio.gather(
                    *(p.recv(0.5) for p in listeners), return_exceptions=True
                )
                got.append(next(j for j, msg in enumerate(nxt) if isinstance(msg, Message)))
            if not shuffle:
                assert got == [0, 1, 2]
            assert sorted(got) == [0, 1, 2]
            await answer(listeners[got[-1]], "order/.*", name, accept=False)
        return firsts
    finally:
        for peer in (*listeners, subscriber):
            await peer.close()


async def test_without_shuffle_listeners_are_offered_in_the_order_they_listened(
    make_server: ServerFactory,
) -> None:
    assert await offered_first(make_server, False, 6) == [0] * 6


async def test_providers_are_shuffled_by_default(make_server: ServerFactory) -> None:
    # 12 names all offered to the first listener first: a chance of (1/3)^11 when shuffled
    assert len(set(await offered_first(make_server, True, 12))) > 1


async def test_unprovided_names_are_offered_again_every_rematch_interval(
    make_server: ServerFactory,
) -> None:
    server = await make_server({"listen": {"response_timeout": 5, "rematch_interval": 0.3}})
    url = f"ws://127.0.0.1:{server.port}/deepstream"
    async with (
        await WireClient.connect(url, login={}) as listener,
        await WireClient.connect(url, login={}) as subscriber,
    ):
        await listen(listener, "re/.*")
        await subscribe(subscriber, "re/1")
        await expect_offer(listener, "re/.*", "re/1")
        await answer(listener, "re/.*", "re/1", accept=False)  # not now
        started = asyncio.get_running_loop().time()
        await expect_offer(listener, "re/.*", "re/1")  # offered again
        assert asyncio.get_running_loop().time() - started >= 0.2
        await answer(listener, "re/.*", "re/1", accept=True)
        has = await subscriber.recv_until(R, RecordAction.SUBSCRIPTION_HAS_PROVIDER)
        assert has.name == "re/1"
        await listener.expect_silence(0.8)  # provided: never offered again


async def test_rematch_can_be_turned_off(make_server: ServerFactory) -> None:
    server = await make_server({"listen": {"response_timeout": 5, "rematch_interval": 0}})
    url = f"ws://127.0.0.1:{server.port}/deepstream"
    async with (
        await WireClient.connect(url, login={}) as listener,
        await WireClient.connect(url, login={}) as subscriber,
    ):
        await listen(listener, "re/.*")
        await subscribe(subscriber, "re/1")
        await expect_offer(listener, "re/.*", "re/1")
        await answer(listener, "re/.*", "re/1", accept=False)
        await listener.expect_silence(1.0)
