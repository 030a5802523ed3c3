"""The handshake and login state machine, driven with bytes and no I/O."""

from __future__ import annotations

import json

import pytest

from gateway.protocol import (
    AuthAction,
    ConnectionAction,
    EventAction,
    Message,
    ParserAction,
    Topic,
    encode,
)
from gateway.protocol.session import AuthRequest, Session, State

CHALLENGE = encode(
    Message(Topic.CONNECTION, ConnectionAction.CHALLENGE, url="u", protocol_version="0.1a")
)
PING = encode(Message(Topic.CONNECTION, ConnectionAction.PING))
CLOSING = encode(Message(Topic.CONNECTION, ConnectionAction.CLOSING))
EMIT = encode(Message(Topic.EVENT, EventAction.EMIT, name="n", data='"d"'))
GARBAGE = b"\xff\xff\xff"


def login(data: str | None = "{}") -> bytes:
    return encode(Message(Topic.AUTH, AuthAction.REQUEST, data=data))


def replies(session: Session) -> list[tuple[int, int]]:
    return [(m.topic, m.action) for m in session.take_outbox()]


def challenged() -> Session:
    session = Session()
    session.receive(CHALLENGE)
    session.take_outbox()
    return session


def opened() -> Session:
    session = challenged()
    assert isinstance(session.receive(login()), AuthRequest)
    session.auth_succeeded()
    session.take_outbox()
    return session


def test_the_happy_path() -> None:
    session = Session()
    assert session.receive(CHALLENGE) is None
    assert replies(session) == [(Topic.CONNECTION, ConnectionAction.ACCEPT)]
    request = session.receive(login('{"username": "ann", "password": "x"}'))
    assert request == AuthRequest({"username": "ann", "password": "x"})
    assert session.state is State.AUTHENTICATING
    session.auth_succeeded({"role": "admin"})
    [reply] = session.take_outbox()
    assert (reply.action, json.loads(reply.data or "")) == (
        AuthAction.AUTH_SUCCESSFUL,
        {"role": "admin"},
    )
    assert session.state is State.OPEN
    assert session.receive(EMIT) == Message(Topic.EVENT, EventAction.EMIT, name="n", data='"d"')
    assert session.outbox == []


def test_successful_login_without_client_data_has_no_data() -> None:
    session = challenged()
    session.receive(login())
    session.auth_succeeded()
    [reply] = session.take_outbox()
    assert reply.data is None


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (EMIT, [(Topic.CONNECTION, ConnectionAction.INVALID_MESSAGE)]),
        (GARBAGE, [(Topic.CONNECTION, ConnectionAction.INVALID_MESSAGE)]),
        (login(), [(Topic.CONNECTION, ConnectionAction.INVALID_MESSAGE)]),
        (
            encode(Message(Topic.CONNECTION, ConnectionAction.PONG)),
            [(Topic.CONNECTION, ConnectionAction.INVALID_MESSAGE)],
        ),
        (PING, []),
    ],
    ids=["event", "garbage", "auth", "pong", "ping"],
)
def test_before_the_challenge(frame: bytes, expected: list[tuple[int, int]]) -> None:
    session = Session()
    assert session.receive(frame) is None
    assert replies(session) == expected
    assert session.state is State.AWAITING_CHALLENGE and not session.closing


@pytest.mark.parametrize(
    "frame",
    [EMIT, GARBAGE, CHALLENGE, encode(Message(Topic.CONNECTION, 99))],
    ids=["event", "garbage", "second challenge", "unknown connection action"],
)
def test_before_login_anything_but_auth_is_an_invalid_auth_message(frame: bytes) -> None:
    session = challenged()
    assert session.receive(frame) is None
    assert replies(session) == [(Topic.AUTH, AuthAction.INVALID_MESSAGE)]
    assert session.state is State.AWAITING_AUTH and not session.closing


def test_ping_before_login_is_ignored() -> None:
    session = challenged()
    assert session.receive(PING) is None
    assert replies(session) == []


@pytest.mark.parametrize(
    "frame",
    [
        login("{nope"),
        login("[1, 2]"),
        login('"text"'),
        login("null"),
        login(None),
        encode(Message(Topic.AUTH, AuthAction.AUTH_SUCCESSFUL, data="{}")),
        encode(Message(Topic.AUTH, 99, data="{}")),
    ],
    ids=["not json", "array", "string", "null", "absent", "wrong action", "unknown action"],
)
def test_bad_auth_messages_are_invalid_data_and_close(frame: bytes) -> None:
    session = challenged()
    assert session.receive(frame) is None
    assert replies(session) == [(Topic.AUTH, AuthAction.INVALID_MESSAGE_DATA)]
    assert session.closing and session.state is State.CLOSED
    assert session.receive(EMIT) is None and session.outbox == []


def test_failed_logins_up_to_the_limit_then_too_many() -> None:
    session = Session(max_auth_attempts=2)
    session.receive(CHALLENGE)
    session.take_outbox()
    session.receive(login())
    session.auth_failed({"why": "nope"})
    [reply] = session.take_outbox()
    assert (reply.action, reply.data) == (AuthAction.AUTH_UNSUCCESSFUL, '{"why":"nope"}')
    assert session.state is State.AWAITING_AUTH and not session.closing
    assert isinstance(session.receive(login()), AuthRequest)
    session.auth_failed()
    assert replies(session) == [
        (Topic.AUTH, AuthAction.AUTH_UNSUCCESSFUL),
        (Topic.AUTH, AuthAction.TOO_MANY_AUTH_ATTEMPTS),
    ]
    assert session.closing


def test_frames_during_authentication_are_refused_not_queued() -> None:
    session = challenged()
    session.receive(login())
    assert session.receive(EMIT) is None
    assert replies(session) == [(Topic.AUTH, AuthAction.INVALID_MESSAGE)]
    assert session.state is State.AUTHENTICATING


def test_timeout_closes_an_unauthenticated_session_only() -> None:
    session = challenged()
    session.auth_timed_out()
    assert replies(session) == [(Topic.CONNECTION, ConnectionAction.AUTHENTICATION_TIMEOUT)]
    assert session.closing
    session = opened()
    session.auth_timed_out()
    assert replies(session) == [] and not session.closing


def test_a_login_answer_after_the_timeout_is_dropped() -> None:
    session = challenged()
    session.receive(login())
    session.auth_timed_out()
    session.take_outbox()
    session.auth_succeeded()
    session.auth_failed()
    assert session.outbox == [] and session.state is State.CLOSED


def test_ping_after_login_is_ponged() -> None:
    session = opened()
    assert session.receive(PING) is None
    assert replies(session) == [(Topic.CONNECTION, ConnectionAction.PONG)]


@pytest.mark.parametrize("session_of", [Session, challenged, opened])
def test_closing_is_answered_with_closed_in_every_state(session_of) -> None:  # type: ignore[no-untyped-def]
    session = session_of()
    assert session.receive(CLOSING) is None
    assert replies(session) == [(Topic.CONNECTION, ConnectionAction.CLOSED)]
    assert session.closing and session.close_code == 1000


@pytest.mark.parametrize(
    ("frame", "original_topic"),
    [
        (GARBAGE, Topic.PARSER),
        (b"", Topic.PARSER),
        (CHALLENGE, Topic.CONNECTION),
        (encode(Message(Topic.CONNECTION, ConnectionAction.PONG)), Topic.CONNECTION),
        (login(), Topic.AUTH),
        (encode(Message(Topic.AUTH, 99)), Topic.AUTH),
    ],
    ids=["garbage", "empty", "challenge", "pong", "auth", "unknown auth action"],
)
def test_after_login_undecodable_and_handshake_topics_are_unknown_topics(
    frame: bytes, original_topic: int
) -> None:
    session = opened()
    assert session.receive(frame) is None
    [reply] = session.take_outbox()
    assert reply == Message(Topic.PARSER, ParserAction.UNKNOWN_TOPIC, original_topic=original_topic)


def test_after_login_topics_without_a_schema_reach_the_server() -> None:
    session = opened()
    body = bytes.fromhex("100a1a020802")  # LOCK, action 2
    assert session.receive(bytes([len(body)]) + body) == Message(Topic.LOCK, 0)
    assert session.outbox == []


def test_after_login_unknown_actions_are_reported() -> None:
    session = opened()
    assert session.receive(encode(Message(Topic.RECORD, 99, name="r"))) is None
    [reply] = session.take_outbox()
    assert reply == Message(
        Topic.PARSER, ParserAction.UNKNOWN_ACTION, original_topic=Topic.RECORD, original_action=99
    )


def test_text_frames_close_with_unsupported_data_in_every_state() -> None:
    for session in (Session(), challenged(), opened()):
        assert session.receive("hello") is None
        assert session.outbox == []
        assert session.closing and session.close_code == 1003


def test_oversized_frames_are_answered_and_the_session_stays() -> None:
    session = Session(max_message_size=10)
    session.receive(CHALLENGE)  # bigger than 10 bytes
    [reply] = session.take_outbox()
    assert reply.action == ParserAction.MAXIMUM_MESSAGE_SIZE_EXCEEDED
    assert "limit of 10" in json.loads(reply.data or "")
    assert session.state is State.AWAITING_CHALLENGE and not session.closing


def test_closed_sessions_ignore_everything() -> None:
    session = opened()
    session.close(1001, "bye")
    session.close()  # the first reason stands
    assert (session.close_code, session.close_reason) == (1001, "bye")
    for frame in (PING, EMIT, GARBAGE, CHALLENGE):
        assert session.receive(frame) is None
    assert session.outbox == []
