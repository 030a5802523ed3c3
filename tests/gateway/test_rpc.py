"""RPC over a real WebSocket: providing, routing, answers, rerouting, timeouts, lost peers."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from gateway import rpc
from gateway.protocol import Message, RpcAction, Topic, encode
from gateway.protocol.codec import encode_field
from gateway.server import Server
from tests.conftest import ServerFactory, url_of
from tests.wire import WireClient

RPC = Topic.RPC


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    return await make_server({"rpc": {"ack_timeout": 0.2, "response_timeout": 0.5}})


async def provide(peer: WireClient, *names: str) -> None:
    await peer.send(Message(RPC, RpcAction.PROVIDE, names=list(names), correlation_id="p"))
    ack = await peer.recv()
    assert (ack.action, ack.correlation_id, ack.is_ack) == (RpcAction.PROVIDE, "p", True), ack


async def request(peer: WireClient, name: str, cid: str, data: str | None = '"in"') -> None:
    await peer.send(Message(RPC, RpcAction.REQUEST, name=name, correlation_id=cid, data=data))


async def incoming(
    provider: WireClient, name: str, data: str | None = '"in"', timeout: float = 2.0
) -> str:
    """Receive a forwarded REQUEST; returns the correlation id the provider must answer with."""
    msg = await provider.recv(timeout)
    assert (msg.action, msg.name, msg.data) == (RpcAction.REQUEST, name, data), msg
    assert msg.correlation_id
    return msg.correlation_id


async def reply(
    provider: WireClient, action: int, name: str, cid: str, data: str | None = None
) -> None:
    await provider.send(Message(RPC, action, name=name, correlation_id=cid, data=data))


async def who_got_it(*providers: WireClient) -> tuple[WireClient, str]:
    """The one provider a request was forwarded to, and its correlation id."""

    async def got(peer: WireClient) -> str | None:
        try:
            return await incoming(peer, "f", '"in"', timeout=0.1)
        except TimeoutError:
            return None

    ids = await asyncio.gather(*(got(peer) for peer in providers))
    chosen = [(peer, cid) for peer, cid in zip(providers, ids, strict=True) if cid is not None]
    assert len(chosen) == 1, ids
    return chosen[0]


async def expect(
    peer: WireClient, action: int, name: str, cid: str, data: str | None = None
) -> None:
    msg = await peer.recv()
    assert (msg.topic, msg.action, msg.name, msg.correlation_id, msg.data) == (
        RPC,
        action,
        name,
        cid,
        data,
    ), msg


async def test_provide_and_unprovide_are_acked(connect) -> None:
    peer = await connect()
    await provide(peer, "f", "g")
    await peer.send(Message(RPC, RpcAction.PROVIDE, names=["f"], correlation_id="2"))
    dup = await peer.recv()
    assert (dup.action, dup.name, dup.original_action) == (
        RpcAction.MULTIPLE_PROVIDERS,
        "f",
        RpcAction.PROVIDE,
    )
    assert (await peer.recv()).is_ack
    # Unproviding a name not provided is acked silently, as the reference does.
    await peer.send(Message(RPC, RpcAction.UNPROVIDE, names=["f", "nope"], correlation_id="3"))
    ack = await peer.recv()
    assert (ack.action, ack.correlation_id, ack.is_ack) == (RpcAction.UNPROVIDE, "3", True)
    caller = await connect()
    await request(caller, "f", "r1")
    await expect(caller, RpcAction.NO_RPC_PROVIDER, "f", "r1")
    await request(caller, "g", "r2")
    await incoming(peer, "g")


async def test_request_accept_response_round_trip(connect) -> None:
    provider, caller = await connect(), await connect()
    await provide(provider, "add")
    await request(caller, "add", "r1", '{"a":1}')
    cid = await incoming(provider, "add", '{"a":1}')
    await reply(provider, RpcAction.ACCEPT, "add", cid)
    await expect(caller, RpcAction.ACCEPT, "add", "r1")
    await reply(provider, RpcAction.ACCEPT, "add", cid)
    multiple = await provider.recv()
    assert (multiple.action, multiple.name, multiple.correlation_id) == (
        RpcAction.MULTIPLE_ACCEPT,
        "add",
        cid,
    )
    await reply(provider, RpcAction.RESPONSE, "add", cid, "2")
    await expect(caller, RpcAction.RESPONSE, "add", "r1", "2")
    # The request is over: another answer is an unknown correlation id.
    await reply(provider, RpcAction.RESPONSE, "add", cid, "3")
    bad = await provider.recv()
    assert (bad.action, bad.name, bad.correlation_id, bad.original_action, bad.is_error) == (
        RpcAction.INVALID_RPC_CORRELATION_ID,
        "add",
        cid,
        RpcAction.RESPONSE,
        True,
    )
    await caller.expect_silence(0.1)


# Names, ids and data whose lengths need a two-byte varint, and text that is not ASCII: the
# handler encodes its messages from parts (rpc._frame), not through codec.encode.
LONG_NAME = "rpc/" + "名前" * 70
LONG_DATA = '{"text":"' + "é" * 100 + '"}'


@pytest.mark.parametrize(
    ("action", "cid", "data"),
    [
        (RpcAction.ACCEPT, "r1", None),
        (RpcAction.RESPONSE, "r1", '"ok"'),
        (RpcAction.RESPONSE, "ü" * 130, LONG_DATA),
        (RpcAction.REQUEST_ERROR, None, '"boom"'),
        (RpcAction.RESPONSE_TIMEOUT, "r1", None),
        (RpcAction.NO_RPC_PROVIDER, None, None),
    ],
)
@pytest.mark.parametrize("name", ["f", LONG_NAME])
def test_encoded_messages_are_what_the_codec_gives(
    action: int, name: str, cid: str | None, data: str | None
) -> None:
    """Byte for byte what ``encode`` gives for the same message, to the requester (its
    correlation id) and to the provider (the server's id)."""
    field = rpc._data_field(data)
    request = rpc._Request("12345", name, cid, field, cast(Any, None), cast(Any, None))
    assert rpc._frame(action, request.to_requester, field) == encode(
        Message(RPC, action, name=name, correlation_id=cid, data=data)
    )
    to_provider = encode_field(3, request.id) + request.name_field
    assert rpc._frame(RpcAction.REQUEST, to_provider, request.data_field) == encode(
        Message(RPC, RpcAction.REQUEST, name=name, correlation_id="12345", data=data)
    )


async def test_long_and_non_ascii_names_ids_and_data_round_trip(connect) -> None:
    provider, caller = await connect(), await connect()
    await provide(provider, LONG_NAME)
    cid = "ü" * 130
    await request(caller, LONG_NAME, cid, LONG_DATA)
    server_cid = await incoming(provider, LONG_NAME, LONG_DATA)
    await reply(provider, RpcAction.ACCEPT, LONG_NAME, server_cid)
    await expect(caller, RpcAction.ACCEPT, LONG_NAME, cid)
    await reply(provider, RpcAction.RESPONSE, LONG_NAME, server_cid, LONG_DATA)
    await expect(caller, RpcAction.RESPONSE, LONG_NAME, cid, LONG_DATA)


async def test_names_past_the_name_field_cache_keep_their_own_names(
    connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request's messages end with its name's field, kept for the names asked lately
    (``rpc._NAME_FIELDS``, cleared when full): requests to more names than it holds, each
    name asked twice, still reach the provider and come back with their own names."""
    monkeypatch.setattr(rpc, "MAX_NAME_FIELDS", 3)
    monkeypatch.setattr(rpc, "_NAME_FIELDS", {})
    names = [f"cache/{i}" for i in range(8)]
    provider, caller = await connect(), await connect()
    await provide(provider, *names)
    for turn in range(2):
        for name in names:
            cid = f"{name}#{turn}"
            await request(caller, name, cid)
            server_cid = await incoming(provider, name)
            await reply(provider, RpcAction.ACCEPT, name, server_cid)
            await expect(caller, RpcAction.ACCEPT, name, cid)
            await reply(provider, RpcAction.RESPONSE, name, server_cid, f'"{name}"')
            await expect(caller, RpcAction.RESPONSE, name, cid, f'"{name}"')
    assert len(rpc._NAME_FIELDS) <= 3


async def test_the_name_field_cache_holds_no_long_name(make_server: ServerFactory) -> None:
    """The cache keeps up to ``MAX_NAME_FIELDS`` names: long ones (as long as an operator's
    ``limits.max_name_length`` allows) are encoded per request, or 1,024 names of 64 kB would
    hold 128 MB (a name and its field each)."""
    server = await make_server({"limits": {"max_name_length": 4 * 65536}})
    provider = await WireClient.connect(url_of(server), login={})
    caller = await WireClient.connect(url_of(server), login={})
    long_names = [f"long/{i}/" + "n" * 65536 for i in range(2)]
    await provide(provider, "short", *long_names)
    for turn, name in enumerate(["short", *long_names, *long_names]):
        cid = str(turn)
        await request(caller, name, cid)
        server_cid = await incoming(provider, name)
        await reply(provider, RpcAction.RESPONSE, name, server_cid, "1")
        await expect(caller, RpcAction.RESPONSE, name, cid, "1")
    assert "short" in rpc._NAME_FIELDS
    assert rpc._NAME_FIELDS.keys().isdisjoint(long_names)
    await provider.close()
    await caller.close()


async def test_request_error_reaches_the_requester(connect) -> None:
    provider, caller = await connect(), await connect()
    await provide(provider, "f")
    await request(caller, "f", "r1", None)
    cid = await incoming(provider, "f", None)  # a request without data is forwarded as is
    await reply(provider, RpcAction.REQUEST_ERROR, "f", cid, '"boom"')
    await expect(caller, RpcAction.REQUEST_ERROR, "f", "r1", '"boom"')


async def test_no_provider(connect) -> None:
    caller = await connect()
    await request(caller, "nobody", "r1")
    await expect(caller, RpcAction.NO_RPC_PROVIDER, "nobody", "r1")


async def test_reject_reroutes_to_an_untried_provider_then_gives_up(connect) -> None:
    first, second, caller = await connect(), await connect(), await connect()
    await provide(first, "f")
    await provide(second, "f")
    await request(caller, "f", "r1")
    # Whichever provider gets the request rejects it; then the other one must get it.
    chosen, cid = await who_got_it(first, second)
    await reply(chosen, RpcAction.REJECT, "f", cid)
    other = second if chosen is first else first
    cid = await incoming(other, "f")
    await reply(other, RpcAction.REJECT, "f", cid)
    await expect(caller, RpcAction.NO_RPC_PROVIDER, "f", "r1")
    await first.expect_silence(0.1)
    await second.expect_silence(0.1)


async def test_accept_timeout(connect) -> None:
    provider, caller = await connect(), await connect()
    await provide(provider, "slow")
    await request(caller, "slow", "r1")
    cid = await incoming(provider, "slow")
    await expect(caller, RpcAction.ACCEPT_TIMEOUT, "slow", "r1")
    await reply(provider, RpcAction.RESPONSE, "slow", cid, "1")  # too late
    assert (await provider.recv()).action == RpcAction.INVALID_RPC_CORRELATION_ID
    await caller.expect_silence(0.1)


async def test_response_timeout(connect) -> None:
    provider, caller = await connect(), await connect()
    await provide(provider, "slow")
    await request(caller, "slow", "r1")
    cid = await incoming(provider, "slow")
    await reply(provider, RpcAction.ACCEPT, "slow", cid)
    await expect(caller, RpcAction.ACCEPT, "slow", "r1")
    await expect(caller, RpcAction.RESPONSE_TIMEOUT, "slow", "r1")
    await caller.expect_silence(0.3)  # the accept timer was cancelled by the accept


async def test_same_correlation_id_from_two_requesters_does_not_collide(connect) -> None:
    provider, alice, bob = await connect(), await connect(), await connect()
    await provide(provider, "echo")
    await request(alice, "echo", "same", '"alice"')
    alice_cid = await incoming(provider, "echo", '"alice"')
    await request(bob, "echo", "same", '"bob"')
    bob_cid = await incoming(provider, "echo", '"bob"')
    assert alice_cid != bob_cid
    await reply(provider, RpcAction.RESPONSE, "echo", bob_cid, '"to bob"')
    await reply(provider, RpcAction.RESPONSE, "echo", alice_cid, '"to alice"')
    await expect(bob, RpcAction.RESPONSE, "echo", "same", '"to bob"')
    await expect(alice, RpcAction.RESPONSE, "echo", "same", '"to alice"')


async def test_only_the_provider_asked_can_answer(connect) -> None:
    provider, intruder, caller = await connect(), await connect(), await connect()
    await provide(provider, "f")
    await request(caller, "f", "r1")
    cid = await incoming(provider, "f")
    await reply(intruder, RpcAction.RESPONSE, "f", cid, '"forged"')
    bad = await intruder.recv()
    assert (bad.action, bad.correlation_id) == (RpcAction.INVALID_RPC_CORRELATION_ID, cid)
    await caller.expect_silence(0.05)
    await reply(provider, RpcAction.RESPONSE, "f", cid, '"real"')
    await expect(caller, RpcAction.RESPONSE, "f", "r1", '"real"')


async def test_unknown_correlation_id_and_unknown_action(connect) -> None:
    peer = await connect()
    for action in (RpcAction.ACCEPT, RpcAction.REJECT, RpcAction.RESPONSE, RpcAction.REQUEST_ERROR):
        await reply(peer, action, "f", "nope")
        bad = await peer.recv()
        assert (bad.action, bad.name, bad.correlation_id, bad.original_action, bad.is_error) == (
            RpcAction.INVALID_RPC_CORRELATION_ID,
            "f",
            "nope",
            action,
            True,
        )
    await peer.send(Message(RPC, RpcAction.MULTIPLE_ACCEPT, name="f"))
    err = await peer.recv()
    assert (err.action, err.original_action, err.is_error) == (
        RpcAction.ERROR,
        RpcAction.MULTIPLE_ACCEPT,
        True,
    )


async def test_provider_lost_before_accept_reroutes(connect) -> None:
    first, second, caller = await connect(), await connect(), await connect()
    await provide(first, "f")
    await request(caller, "f", "r1")
    await incoming(first, "f")
    await provide(second, "f")
    await first.close()
    cid = await incoming(second, "f")
    await reply(second, RpcAction.RESPONSE, "f", cid, '"ok"')
    await expect(caller, RpcAction.RESPONSE, "f", "r1", '"ok"')
    # With no other provider, the requester hears NO_RPC_PROVIDER at once.
    await request(caller, "f", "r2")
    await incoming(second, "f")
    await second.close()
    await expect(caller, RpcAction.NO_RPC_PROVIDER, "f", "r2")


async def test_provider_lost_after_accept_fails_at_once(make_server, connect) -> None:
    slow: Server = await make_server({"rpc": {"ack_timeout": 30, "response_timeout": 30}})
    provider = await connect(to=url_of(slow))
    caller = await connect(to=url_of(slow))
    await provide(provider, "f")
    await request(caller, "f", "r1")
    cid = await incoming(provider, "f")
    await reply(provider, RpcAction.ACCEPT, "f", cid)
    await expect(caller, RpcAction.ACCEPT, "f", "r1")
    await provider.close()
    # Long before the 30 s response timeout: nobody is left who could answer.
    await expect(caller, RpcAction.RESPONSE_TIMEOUT, "f", "r1")
    assert not slow.rpc._requests and not slow.rpc._assigned


async def test_requester_lost_mid_request_drops_the_answer_quietly(server, connect) -> None:
    provider, caller = await connect(), await connect()
    await provide(provider, "f")
    await request(caller, "f", "r1")
    cid = await incoming(provider, "f")
    await caller.close()
    await reply(provider, RpcAction.ACCEPT, "f", cid)
    await reply(provider, RpcAction.RESPONSE, "f", cid, '"late"')
    await provider.expect_silence(0.2)
    assert not server.rpc._requests and not server.rpc._assigned


async def test_provider_may_serve_its_own_request(connect) -> None:
    peer = await connect()
    await provide(peer, "self")
    await request(peer, "self", "r1")
    cid = await incoming(peer, "self")
    await reply(peer, RpcAction.RESPONSE, "self", cid, '"me"')
    await expect(peer, RpcAction.RESPONSE, "self", "r1", '"me"')


async def test_each_request_keeps_its_own_deadlines_behind_others(server: Server, connect) -> None:
    """One timer serves every request's deadlines: an accepted request ahead of an unaccepted
    one neither hides the later one's accept timeout nor takes its response timeout early,
    and a request answered in time leaves the others' deadlines as they were."""
    provider, caller = await connect(), await connect()
    await provide(provider, "f")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await request(caller, "f", "accepted")
    first = await incoming(provider, "f")
    await reply(provider, RpcAction.ACCEPT, "f", first)
    await expect(caller, RpcAction.ACCEPT, "f", "accepted")
    await asyncio.sleep(0.1)
    await request(caller, "f", "answered")
    answered = await incoming(provider, "f")
    await request(caller, "f", "ignored")
    await incoming(provider, "f")
    await reply(provider, RpcAction.RESPONSE, "f", answered, '"ok"')
    await expect(caller, RpcAction.RESPONSE, "f", "answered", '"ok"')
    await expect(caller, RpcAction.ACCEPT_TIMEOUT, "f", "ignored")
    # uvloop's clock counts whole milliseconds: a deadline met to the millisecond can read
    # 0.29999..., hence the 1 ms allowance (the wrong deadline would be 0.1 s earlier)
    assert loop.time() - start >= 0.3 - 0.001  # 0.1 + ack_timeout 0.2, not the first's
    await expect(caller, RpcAction.RESPONSE_TIMEOUT, "f", "accepted")
    assert loop.time() - start >= 0.5 - 0.001  # response_timeout from its own send
    await caller.expect_silence(0.6)  # nothing else was open
    assert not server.rpc._requests and not server.rpc._unaccepted


# -- deadlines at their boundaries (one timer serves every request: gateway/rpc.py) ----------

# uvloop's clock counts whole milliseconds: a deadline met to the millisecond can read 1 ms early
CLOCK = 0.001
LATE = 0.3
"""How late a timeout may arrive (the loop's latency on a busy machine); a timer armed for the
wrong kind of deadline would be later: the many-requests test's timeouts are 0.6 s apart."""


async def arrivals(peer: WireClient, count: int) -> list[tuple[Message, float]]:
    """The next ``count`` messages ``peer`` gets, each with the loop time it arrived at."""
    loop = asyncio.get_running_loop()
    return [(await peer.recv(timeout=5), loop.time()) for _ in range(count)]


async def test_answers_around_the_deadline_end_each_request_exactly_once(
    make_server, connect
) -> None:
    """RESPONSEs sent from 15 ms before to 15 ms after their request's response deadline:
    each request ends once, as RESPONSE or as RESPONSE_TIMEOUT (then the late answer is refused
    to the provider), a timeout never before the deadline, and nothing is left open."""
    server: Server = await make_server({"rpc": {"ack_timeout": 5, "response_timeout": 1.0}})
    provider = await connect(to=url_of(server))
    caller = await connect(to=url_of(server))
    await provide(provider, "f")
    loop = asyncio.get_running_loop()
    deadlines: dict[str, float] = {}  # requester's correlation id -> response deadline
    to_server: dict[str, str] = {}
    for i in range(31):
        await request(caller, "f", f"r{i}")
        cid = await incoming(provider, "f")
        await reply(provider, RpcAction.ACCEPT, "f", cid)
        await expect(caller, RpcAction.ACCEPT, "f", f"r{i}")
        deadlines[f"r{i}"] = server.rpc._requests[cid].sent + server.rpc.response_timeout
        to_server[f"r{i}"] = cid
    answers = []
    for i, (rid, deadline) in enumerate(deadlines.items()):
        at = deadline + (i - 15) / 1000  # -15 ms .. +15 ms around this request's deadline
        answers.append(
            loop.call_at(
                at,
                lambda cid=to_server[rid]: asyncio.ensure_future(
                    reply(provider, RpcAction.RESPONSE, "f", cid, '"ok"')
                ),
            )
        )
    outcome: dict[str, int] = {}
    while len(outcome) < len(deadlines):
        msg = await caller.recv(timeout=3)
        rid = msg.correlation_id
        assert rid in deadlines and rid not in outcome, msg  # one final message each
        assert msg.action in (RpcAction.RESPONSE, RpcAction.RESPONSE_TIMEOUT), msg
        if msg.action == RpcAction.RESPONSE_TIMEOUT:
            assert loop.time() >= deadlines[rid] - CLOCK, (rid, loop.time() - deadlines[rid])
        else:
            assert msg.data == '"ok"'
        outcome[rid] = msg.action
    timed_out = {to_server[r] for r, action in outcome.items() if action != RpcAction.RESPONSE}
    refused = set()
    while len(refused) < len(timed_out):
        bad = await provider.recv(timeout=3)
        assert bad.action == RpcAction.INVALID_RPC_CORRELATION_ID, bad
        refused.add(bad.correlation_id)
    assert refused == timed_out
    await caller.expect_silence(0.2)
    await provider.expect_silence(0.05)
    assert not server.rpc._requests and not server.rpc._unaccepted and not server.rpc._assigned


async def test_many_requests_each_time_out_at_their_own_deadline(make_server, connect) -> None:
    """30 requests sent 15 ms apart, every other one accepted: the unaccepted get
    ACCEPT_TIMEOUT at their send + ack_timeout, the accepted RESPONSE_TIMEOUT at their send +
    response_timeout (the two kinds' deadlines interleave), never before nor much later, each
    once; three answered in time are not disturbed; the timer disarms when none is left."""
    server: Server = await make_server({"rpc": {"ack_timeout": 0.3, "response_timeout": 0.9}})
    provider = await connect(to=url_of(server))
    caller = await connect(to=url_of(server))
    await provide(provider, "f")
    rpc = server.rpc
    expected: dict[str, tuple[int, float]] = {}  # rid -> (timeout action, its deadline)
    answered = {"r3", "r8", "r13"}
    accepted = range(1, 30, 2)
    # read as they come: the first timeouts are due while requests are still being sent
    received = asyncio.ensure_future(arrivals(caller, 30 + len(accepted)))
    for i in range(30):
        rid = f"r{i}"
        await request(caller, "f", rid)
        cid = await incoming(provider, "f")
        sent = rpc._requests[cid].sent
        if i % 2:
            await reply(provider, RpcAction.ACCEPT, "f", cid)
            expected[rid] = (RpcAction.RESPONSE_TIMEOUT, sent + rpc.response_timeout)
        else:
            expected[rid] = (RpcAction.ACCEPT_TIMEOUT, sent + rpc.ack_timeout)
        if rid in answered:
            await reply(provider, RpcAction.RESPONSE, "f", cid, f'"{rid}"')
        await asyncio.sleep(0.015)
    seen: dict[str, int] = {}
    for msg, at in await received:
        rid = msg.correlation_id
        assert rid is not None and rid not in seen, msg
        seen[rid] = msg.action
        if msg.action == RpcAction.ACCEPT:
            del seen[rid]  # the accepts of the odd ones; their end comes later
            continue
        if rid in answered:
            assert (msg.action, msg.data) == (RpcAction.RESPONSE, f'"{rid}"'), msg
            continue
        action, deadline = expected[rid]
        assert msg.action == action, msg
        assert -CLOCK <= at - deadline < LATE, (rid, at - deadline)
    assert len(seen) == len(expected)
    await caller.expect_silence(0.2)
    assert not rpc._requests and not rpc._unaccepted and not rpc._assigned
    assert rpc._timer is None


async def test_a_provider_closing_with_requests_pending_ends_them_at_once(
    make_server, connect
) -> None:
    """A provider holding accepted and unaccepted requests closes, no other provider left:
    the accepted ones get RESPONSE_TIMEOUT and the others NO_RPC_PROVIDER at once (not at
    their 30 s deadlines), each once, and no timer is left armed for them."""
    slow: Server = await make_server({"rpc": {"ack_timeout": 30, "response_timeout": 30}})
    provider = await connect(to=url_of(slow))
    caller = await connect(to=url_of(slow))
    await provide(provider, "f")
    for i in range(10):
        await request(caller, "f", f"r{i}")
        cid = await incoming(provider, "f")
        if i % 2:
            await reply(provider, RpcAction.ACCEPT, "f", cid)
            await expect(caller, RpcAction.ACCEPT, "f", f"r{i}")
    assert slow.rpc._timer is not None
    await provider.close()
    ends = {}
    for _ in range(10):
        msg = await caller.recv(timeout=3)
        assert msg.correlation_id not in ends, msg
        ends[msg.correlation_id] = msg.action
    assert ends == {
        f"r{i}": RpcAction.RESPONSE_TIMEOUT if i % 2 else RpcAction.NO_RPC_PROVIDER
        for i in range(10)
    }
    assert not slow.rpc._requests and not slow.rpc._unaccepted and not slow.rpc._assigned
    await caller.expect_silence(0.2)


async def test_a_requester_closing_with_requests_pending_leaves_them_to_time_out(
    server: Server, connect
) -> None:
    """The requester goes with accepted and unaccepted requests open: each still ends at its
    own deadline (the provider's late answers are refused as for any ended request), and
    then nothing is left open and the timer is disarmed."""
    provider, caller = await connect(), await connect()
    await provide(provider, "f")
    cids = []
    for i in range(6):
        await request(caller, "f", f"r{i}")
        cids.append(await incoming(provider, "f"))
        if i % 2:
            await reply(provider, RpcAction.ACCEPT, "f", cids[-1])
    await caller.close()
    await asyncio.sleep(0.1)
    assert len(server.rpc._requests) == 6  # still open, its deadlines still run
    await asyncio.sleep(server.rpc.response_timeout)
    assert not server.rpc._requests and not server.rpc._unaccepted and not server.rpc._assigned
    assert server.rpc._timer is None
    await reply(provider, RpcAction.RESPONSE, "f", cids[1], '"late"')
    bad = await provider.recv()
    assert (bad.action, bad.correlation_id) == (RpcAction.INVALID_RPC_CORRELATION_ID, cids[1])


async def test_short_messages_read_without_a_message_keep_limits_and_counts(
    make_server: ServerFactory,
) -> None:
    """Short REQUEST, ACCEPT and RESPONSE frames reach the handler without a ``Message``
    (``codec.decode_rpc``) when their name cannot pass ``limits.max_name_length`` (a quarter
    of it in characters): a longer one still meets the limit, and ``/metrics`` still counts
    each message."""
    server = await make_server({"limits": {"max_name_length": 40}})
    provider = await WireClient.connect(url_of(server), login={})
    caller = await WireClient.connect(url_of(server), login={})
    name = "0123456789"  # 10 characters: read without a Message
    try:
        await provide(provider, name)
        before = server.messages_received[RPC]
        await request(caller, "é" * 21, "r1")  # 42 bytes: a short frame, over the limit
        refused = await caller.recv()
        assert (refused.action, refused.correlation_id, refused.is_error) == (
            RpcAction.INVALID_MESSAGE_DATA,
            "r1",
            True,
        ), refused
        assert server.trips["limits.max_name_length"] == 1
        await request(caller, name, "r2")
        cid = await incoming(provider, name)
        await reply(provider, RpcAction.ACCEPT, name, cid)
        await reply(provider, RpcAction.RESPONSE, name, cid, '"out"')
        await expect(caller, RpcAction.ACCEPT, name, "r2")
        await expect(caller, RpcAction.RESPONSE, name, "r2", '"out"')
        assert server.messages_received[RPC] == before + 4
    finally:
        await provider.close()
        await caller.close()
