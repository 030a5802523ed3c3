"""The per-connection handshake and login state machine, without I/O.

States run strictly forward: AWAITING_CHALLENGE -> AWAITING_AUTH -> (AUTHENTICATING ->
AWAITING_AUTH)* -> OPEN -> CLOSED. The I/O layer feeds frames to :meth:`Session.receive`,
sends whatever lands in ``outbox`` (in order), closes the socket with ``close_code`` once
``closing`` is set, and passes the messages that ``receive`` returns to the topic handlers (only
ever in state OPEN, and only with an action known for their topic).

Bad input is answered as the reference server (deepstream 7.0.2) answers it, checked side by
side over real sockets: bytes that do not decode become a PARSER ERROR message that runs through
the state machine like any other, so the reply depends on the state:

=========================== ============================ ====================================
input                       before login                 after login
=========================== ============================ ====================================
undecodable, unknown topic  CONNECTION INVALID_MESSAGE   PARSER UNKNOWN_TOPIC
                            before the challenge, else
                            AUTH INVALID_MESSAGE
CONNECTION / AUTH topic     (handshake, login)           PARSER UNKNOWN_TOPIC, but PING ->
                                                         PONG and CLOSING -> CLOSED, close
auth data not a JSON object AUTH INVALID_MESSAGE_DATA,   -
(or refused by ``payload``) close
or action not REQUEST
text frame                  close 1003, no message       close 1003, no message
lone UTF-16 surrogate in a  as undecodable               the topic's INVALID_MESSAGE_DATA
string (name, path, ...)                                 (PRESENCE: INVALID_PRESENCE_USERS)
=========================== ============================ ====================================

A lone surrogate is what protobuf.js writes for a JavaScript string cut inside an emoji; it has
no UTF-8 form, so no backend could store such a name (``payload`` refuses it in JSON data for
the same reason). Deviation: the reference takes it. The reply echoes the message's name,
correlation id and write-ack flag as the client sent them, so the client can route it.

PARSER replies carry ``original_topic``, which the reference means to send but drops (a field
name mismatch). Deliberate deviations, where the reference crashes, stays silent or never
implemented the action, are marked "Deviation" below; the frame size limit is enforced here and
in ``server.py`` (answer up to twice the limit, close 1009 above it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from ..exceptions import (
    InvalidJSON,
    LoneSurrogateText,
    MessageTooLarge,
    ProtocolError,
    UnknownAction,
    UnknownTopic,
)
from ..limits import LimitTrips
from . import payload
from .codec import decode
from .constants import (
    AuthAction,
    ConnectionAction,
    EventAction,
    ParserAction,
    PresenceAction,
    RecordAction,
    RpcAction,
    Topic,
)
from .message import Message

__all__ = ["CLOSE_NORMAL", "CLOSE_UNSUPPORTED_DATA", "AuthRequest", "Session", "State"]

CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
"""RFC 6455: the peer sent a kind of data the endpoint cannot accept (here: a text frame)."""


_NOT_SERVED_AFTER_LOGIN = frozenset({Topic.PARSER, Topic.CONNECTION, Topic.AUTH})


_INVALID_TEXT: dict[int, int] = {
    Topic.RECORD: RecordAction.INVALID_MESSAGE_DATA,
    Topic.EVENT: EventAction.INVALID_MESSAGE_DATA,
    Topic.RPC: RpcAction.INVALID_MESSAGE_DATA,
    Topic.PRESENCE: PresenceAction.INVALID_PRESENCE_USERS,
}


def _invalid_text(msg: Message) -> Message:
    """The refusal of ``msg`` for a lone surrogate: what the client needs to route it."""
    return Message(
        msg.topic,
        _INVALID_TEXT[msg.topic],
        name=msg.name,
        names=msg.names,
        correlation_id=msg.correlation_id,
        is_write_ack=msg.is_write_ack,
        original_action=msg.action,
        is_error=True,
    )


class State(Enum):
    AWAITING_CHALLENGE = auto()
    AWAITING_AUTH = auto()
    AUTHENTICATING = auto()
    OPEN = auto()
    CLOSED = auto()


_OPEN, _CLOSED = State.OPEN, State.CLOSED  # read for every message


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """The client asked to log in with ``auth_data``; answer with ``auth_succeeded/failed``."""

    auth_data: dict[str, Any]


class Session:
    def __init__(
        self,
        *,
        max_message_size: int = 1 << 20,
        max_auth_attempts: int = 3,
        max_json_depth: int = payload.DEFAULT_MAX_DEPTH,
        trips: LimitTrips | None = None,
    ) -> None:
        self.trips = trips if trips is not None else LimitTrips()
        self.state = State.AWAITING_CHALLENGE
        self.outbox: list[Message] = []
        self.closing = False
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""
        self.max_message_size = max_message_size
        self.max_auth_attempts = max_auth_attempts
        self.max_json_depth = max_json_depth
        self.auth_attempts = 0

    # -- input -------------------------------------------------------------------------

    def receive(self, frame: bytes | str) -> Message | AuthRequest | None:
        """Take one WebSocket message; return what the server must act on, if anything."""
        if self.state is _CLOSED:
            return None
        if isinstance(frame, str):
            # Text frames mean another protocol (deepstream's old text one, say), which could
            # not read a binary answer either; the reference closes without a word, too.
            self.close(CLOSE_UNSUPPORTED_DATA, "text frames are not supported")
            return None
        known_action = True
        try:
            msg = decode(frame, self.max_message_size)
        except MessageTooLarge as exc:
            # Deviation: the reference never gets here (its socket layer closes with 1009).
            self.trips.trip("server.max_message_size")
            self._parser_error(ParserAction.MAXIMUM_MESSAGE_SIZE_EXCEEDED, data=str(exc))
            return None
        except UnknownTopic as exc:
            msg = Message(exc.topic, 0)  # a topic nobody serves; answered per state below
        except UnknownAction as exc:
            msg, known_action = Message(exc.topic, exc.action), False
        except LoneSurrogateText as exc:
            refused = exc.message
            assert isinstance(refused, Message)
            if self.state is State.OPEN and refused.topic in _INVALID_TEXT:
                payload.REFUSED["lone_surrogate"] += 1
                self._send(_invalid_text(refused))
                return None
            msg = Message(Topic.PARSER, ParserAction.ERROR)  # as any undecodable frame
        except ProtocolError:
            msg = Message(Topic.PARSER, ParserAction.ERROR)  # what the reference's parser yields
        if self.state is _OPEN:
            if known_action and msg.topic not in _NOT_SERVED_AFTER_LOGIN:
                return msg  # the fast path: a message for the topic handlers
            self._open(msg)
            return None
        if msg.topic == Topic.CONNECTION and msg.action == ConnectionAction.CLOSING:
            self._closing()
            return None
        if msg.topic == Topic.CONNECTION and msg.action == ConnectionAction.PING:
            return None  # no PONG before login, as the reference
        if self.state is State.AWAITING_CHALLENGE:
            if msg.topic == Topic.CONNECTION and msg.action == ConnectionAction.CHALLENGE:
                self.state = State.AWAITING_AUTH
                self._send(Message(Topic.CONNECTION, ConnectionAction.ACCEPT))
            else:
                # Deviation: the reference ignores other CONNECTION actions here; we name them.
                self._send(Message(Topic.CONNECTION, ConnectionAction.INVALID_MESSAGE))
            return None
        if self.state is State.AUTHENTICATING:
            # The server reads nothing while a login is checked; a caller that feeds frames
            # anyway gets them refused, never queued.
            self._send(Message(Topic.AUTH, AuthAction.INVALID_MESSAGE))
            return None
        return self._auth(msg)

    def _open(self, msg: Message) -> None:
        """After login, a message that is not for the topic handlers."""
        topic = msg.topic
        if topic == Topic.CONNECTION and msg.action == ConnectionAction.PING:
            self._send(Message(Topic.CONNECTION, ConnectionAction.PONG))
        elif topic == Topic.CONNECTION and msg.action == ConnectionAction.CLOSING:
            self._closing()
        elif topic in _NOT_SERVED_AFTER_LOGIN:
            # The reference says so in these words (its handlers are gone after login).
            self._parser_error(ParserAction.UNKNOWN_TOPIC, topic=topic)
        else:
            # Deviation: the reference drops unknown actions silently.
            self._parser_error(ParserAction.UNKNOWN_ACTION, topic=topic, action_no=msg.action)

    def _auth(self, msg: Message) -> AuthRequest | None:
        if msg.topic != Topic.AUTH:
            self._send(Message(Topic.AUTH, AuthAction.INVALID_MESSAGE))
            return None
        data: Any = None
        if msg.action == AuthAction.REQUEST and msg.data is not None:
            try:
                data = payload.loads(msg.data, max_depth=self.max_json_depth)
            except InvalidJSON:
                data = None  # Deviation: bad JSON crashes the reference server process
        # Deviation: the reference also lets a JSON array through (typeof [] is 'object').
        if not isinstance(data, dict):
            self._send(
                Message(Topic.AUTH, AuthAction.INVALID_MESSAGE_DATA, original_action=msg.action)
            )
            self.close(reason="invalid authentication message")
            return None
        self.state = State.AUTHENTICATING
        return AuthRequest(data)

    def _closing(self) -> None:
        # Deviation: the reference never implemented CLOSING (its client closes locally).
        self._send(Message(Topic.CONNECTION, ConnectionAction.CLOSED))
        self.close(reason="closed by the client")

    # -- answers from the server ----------------------------------------------------------

    def auth_succeeded(self, client_data: Any = None) -> None:
        if self.state is State.CLOSED:  # timed out or closed while the login was checked
            return
        self.state = State.OPEN
        reply = Message(Topic.AUTH, AuthAction.AUTH_SUCCESSFUL)
        if client_data is not None:
            reply.data = payload.dumps(client_data)
        self._send(reply)

    def auth_failed(self, client_data: Any = None) -> None:
        if self.state is State.CLOSED:
            return
        self.auth_attempts += 1
        reply = Message(Topic.AUTH, AuthAction.AUTH_UNSUCCESSFUL)
        if client_data is not None:
            reply.data = payload.dumps(client_data)
        self._send(reply)
        if self.auth_attempts >= self.max_auth_attempts:
            self._send(Message(Topic.AUTH, AuthAction.TOO_MANY_AUTH_ATTEMPTS))
            self.close(reason="too many authentication attempts")
        else:
            self.state = State.AWAITING_AUTH

    def auth_timed_out(self) -> None:
        """The unauthenticated-client timeout ran out before a successful login.

        Deviation: the reference stops this timer after the first answer, even a failed one,
        so a client that fails once may stay unauthenticated forever; ours keeps running.
        """
        if self.state in (State.OPEN, State.CLOSED):
            return
        self._send(Message(Topic.CONNECTION, ConnectionAction.AUTHENTICATION_TIMEOUT))
        self.close(reason="authentication timeout")

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Refuse further input; the I/O layer closes the socket with ``code`` and ``reason``."""
        if self.state is State.CLOSED:
            return
        self.closing = True
        self.state = State.CLOSED
        self.close_code = code
        self.close_reason = reason

    # -- helpers --------------------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        self.outbox.append(msg)

    def _parser_error(
        self,
        action: ParserAction,
        *,
        topic: int | None = None,
        action_no: int | None = None,
        data: str | None = None,
    ) -> None:
        self._send(
            Message(
                Topic.PARSER,
                action,
                data=None if data is None else payload.dumps(data),
                original_topic=topic,
                original_action=action_no,
            )
        )

    def take_outbox(self) -> list[Message]:
        out, self.outbox = self.outbox, []
        return out
