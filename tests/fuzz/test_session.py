"""Fuzzing the session state machine: any sequence of frames (valid handshake and login
messages, every topic with hostile values, garbage, text, oversized frames) interleaved with
the server's answers to logins never raises, and the state machine's invariants hold after
every step (``check_step``)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.exceptions import LoneSurrogateText
from gateway.protocol import AuthAction, ConnectionAction, Message, Topic, decode, encode
from gateway.protocol.codec import SCHEMAS
from gateway.protocol.session import CLOSE_UNSUPPORTED_DATA, AuthRequest, Session, State
from tests.fuzz import budget
from tests.fuzz.strategies import (
    ACTION_NUMBERS,
    auth_data,
    garbage,
    json_values,
    messages,
    mutations,
    wire_frames,
)

MAX_MESSAGE_SIZE = 16384
MAX_AUTH_ATTEMPTS = 3
STEPS = 40
VARIANTS = 15
"""Replays of each drawn sequence with some frames mutated or dropped (cheap next to drawing)."""
FED_PER_RUN = 7
"""Frames a run feeds before its session closes, on average (measured): sizes the budget."""

FORWARD = {
    (State.AWAITING_CHALLENGE, State.AWAITING_AUTH),
    (State.AWAITING_AUTH, State.AUTHENTICATING),
    (State.AUTHENTICATING, State.AWAITING_AUTH),
    (State.AUTHENTICATING, State.OPEN),
    *((state, State.CLOSED) for state in State),
}
"""Every transition the module docstring allows (and staying put)."""
BEFORE_LOGIN_TOPICS = {Topic.CONNECTION, Topic.AUTH, Topic.PARSER}

CHALLENGE = Message(Topic.CONNECTION, ConnectionAction.CHALLENGE, url="u", protocol_version="0.1a")
PING = Message(Topic.CONNECTION, ConnectionAction.PING)
CLOSING = Message(Topic.CONNECTION, ConnectionAction.CLOSING)


@dataclass(frozen=True)
class Answer:
    """The server's answer to a login: ``ok`` True/False, or None for the auth timeout."""

    ok: bool | None
    client_data: Any = None


def oversized(size: int) -> bytes:
    """An EMIT frame of ``size`` bytes, around the session's size limit."""
    frame = encode(Message(Topic.EVENT, 2, name="n", data=""))
    return encode(Message(Topic.EVENT, 2, name="n", data="x" * (size - len(frame) - 2)))


def steps() -> st.SearchStrategy[list[bytes | str | Answer]]:
    login = auth_data().map(lambda d: encode(Message(Topic.AUTH, AuthAction.REQUEST, data=d)))
    frame: st.SearchStrategy[bytes | str | Answer] = st.one_of(
        st.just(encode(CHALLENGE)),
        login,
        login,
        st.sampled_from([encode(PING), encode(CLOSING)]),
        messages().map(encode),
        messages().map(encode),
        messages().map(encode),
        wire_frames().map(lambda case: case.frame),
        garbage,
        st.integers(MAX_MESSAGE_SIZE - 8, MAX_MESSAGE_SIZE + 8).map(oversized),
        st.text(max_size=10),
        st.builds(Answer, st.sampled_from([True, True, False, None]), st.none() | json_values),
    )
    return st.lists(frame, min_size=STEPS // 2, max_size=STEPS)


def variants(events: list[bytes | str | Answer], rnd: random.Random) -> list[bytes | str | Answer]:
    """``events`` with some frames mutated and some dropped: the paths next to the drawn one,
    without the cost of drawing anew."""
    out: list[bytes | str | Answer] = []
    for event in events:
        roll = rnd.random()
        if roll < 0.1:
            continue
        if isinstance(event, bytes) and roll < 0.35:
            event = mutations(event, rnd, 1)[0]
        out.append(event)
    return out


def run(events: list[bytes | str | Answer]) -> int:
    """Feed ``events`` to a fresh session, checking every step; the frames fed."""
    session = Session(max_message_size=MAX_MESSAGE_SIZE, max_auth_attempts=MAX_AUTH_ATTEMPTS)
    fed = 0
    for event in events:
        before = session.state
        if isinstance(event, Answer):
            if before not in (State.AUTHENTICATING, State.CLOSED):
                continue  # the server answers only a login it was asked to check
            if event.ok is None:
                session.auth_timed_out()
            elif event.ok:
                session.auth_succeeded(event.client_data)
            else:
                session.auth_failed(event.client_data)
            check_step(session, before, None, None)
            continue
        fed += before is not State.CLOSED  # frames a closed session drops are not counted
        result = session.receive(event)
        check_step(session, before, event, result)
    return fed


def check_step(
    session: Session,
    before: State,
    frame: bytes | str | None,
    result: Message | AuthRequest | None,
) -> None:
    after = session.state
    assert (before, after) in FORWARD or before is after, (before, after)
    assert session.closing == (after is State.CLOSED)
    assert session.auth_attempts <= MAX_AUTH_ATTEMPTS
    out = session.take_outbox()
    for msg in out:
        wire = encode(msg)  # every reply encodes, and reads back to the same bytes
        try:
            assert encode(decode(wire)) == wire
        except LoneSurrogateText as exc:  # a refusal echoing the client's own lone surrogate
            assert isinstance(exc.message, Message) and exc.message.is_error
            assert encode(exc.message) == wire
        if msg.data is not None:
            json.loads(msg.data)
    if before is State.CLOSED:
        assert result is None and out == []
        return
    if before is not State.OPEN:
        assert all(msg.topic in BEFORE_LOGIN_TOPICS for msg in out), out
    if isinstance(result, Message):
        # Only in OPEN, never a topic the session answers itself, and only known actions.
        assert before is State.OPEN and after is State.OPEN
        assert result.topic not in BEFORE_LOGIN_TOPICS
        if result.topic in SCHEMAS:
            assert result.action in ACTION_NUMBERS[result.topic]
            assert isinstance(frame, bytes) and decode(frame, MAX_MESSAGE_SIZE) == result
    elif isinstance(result, AuthRequest):
        assert (before, after) == (State.AWAITING_AUTH, State.AUTHENTICATING)
        assert isinstance(result.auth_data, dict)
    if isinstance(frame, str):
        assert after is State.CLOSED and session.close_code == CLOSE_UNSUPPORTED_DATA
    if before is State.OPEN and frame == encode(PING):
        assert [(m.topic, m.action) for m in out] == [(Topic.CONNECTION, ConnectionAction.PONG)]


@budget.fuzz_settings(budget.frames_for("session") // FED_PER_RUN // (1 + VARIANTS))
@given(steps(), st.randoms(use_true_random=False))
def test_any_sequence_keeps_the_invariants(
    events: list[bytes | str | Answer], rnd: random.Random
) -> None:
    fed = run(events)
    for _ in range(VARIANTS):
        fed += run(variants(events, rnd))
    budget.count("session", fed)
