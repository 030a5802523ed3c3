"""The per-connection handshake and login state machine, without I/O.

States run strictly forward: AWAITING_CHALLENGE -> AWAITING_AUTH -> (AUTHENTICATING ->
AWAITING_AUTH)* -> OPEN -> CLOSED. The I/O layer feeds frames to :meth:`Session.receive`,
sends whatever lands in ``outbox`` (in order), closes the socket once ``closing`` is set, and
passes the messages that ``receive`` returns to the topic handlers (only ever in state OPEN).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

from ..exceptions import MessageParseError, MessageTooLarge, UnknownAction, UnknownTopic
from .codec import decode
from .constants import AuthAction, ConnectionAction, ParserAction, Topic
from .message import Message

__all__ = ["AuthRequest", "Session", "State"]


class State(Enum):
    AWAITING_CHALLENGE = auto()
    AWAITING_AUTH = auto()
    AUTHENTICATING = auto()
    OPEN = auto()
    CLOSED = auto()


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """The client asked to log in with ``auth_data``; answer with ``auth_succeeded/failed``."""

    auth_data: dict[str, Any]


class Session:
    def __init__(self, *, max_message_size: int = 1 << 20, max_auth_attempts: int = 3) -> None:
        self.state = State.AWAITING_CHALLENGE
        self.outbox: list[Message] = []
        self.closing = False
        self.max_message_size = max_message_size
        self.max_auth_attempts = max_auth_attempts
        self.auth_attempts = 0

    # -- input -------------------------------------------------------------------------

    def receive(self, frame: bytes | str) -> Message | AuthRequest | None:
        """Take one WebSocket message; return what the server must act on, if anything."""
        if self.state is State.CLOSED:
            return None
        msg = self._decode(frame)
        if msg is None:
            return None
        if msg.topic == Topic.CONNECTION:
            return self._connection(msg)
        if self.state is State.OPEN:
            return msg
        if self.state is State.AWAITING_CHALLENGE:
            self._send(
                Message(
                    Topic.CONNECTION,
                    ConnectionAction.INVALID_MESSAGE,
                    original_topic=msg.topic,
                    original_action=msg.action,
                )
            )
            return None
        if self.state is State.AUTHENTICATING:
            # The official client never sends before the login answer; refuse, don't queue.
            self._send(Message(Topic.AUTH, AuthAction.INVALID_MESSAGE, original_topic=msg.topic))
            return None
        return self._auth(msg)

    def _decode(self, frame: bytes | str) -> Message | None:
        if isinstance(frame, str):  # text frames are not part of the binary protocol
            self._parser_error(ParserAction.INVALID_MESSAGE, "text frames are not supported")
            return None
        try:
            return decode(frame, self.max_message_size)
        except MessageTooLarge as exc:
            self._parser_error(ParserAction.MAXIMUM_MESSAGE_SIZE_EXCEEDED, str(exc))
        except UnknownTopic as exc:
            self._parser_error(ParserAction.UNKNOWN_TOPIC, str(exc), topic=exc.topic)
        except UnknownAction as exc:
            self._parser_error(
                ParserAction.UNKNOWN_ACTION, str(exc), topic=exc.topic, action_no=exc.action
            )
        except MessageParseError as exc:
            self._parser_error(ParserAction.MESSAGE_PARSE_ERROR, str(exc))
        return None

    def _connection(self, msg: Message) -> None:
        if msg.action == ConnectionAction.PING:
            if self.state is State.OPEN:
                self._send(Message(Topic.CONNECTION, ConnectionAction.PONG))
        elif msg.action == ConnectionAction.PONG:
            pass
        elif msg.action == ConnectionAction.CHALLENGE and self.state is State.AWAITING_CHALLENGE:
            self.state = State.AWAITING_AUTH
            self._send(Message(Topic.CONNECTION, ConnectionAction.ACCEPT))
        elif msg.action == ConnectionAction.CLOSING:
            self._send(Message(Topic.CONNECTION, ConnectionAction.CLOSED))
            self.close()
        else:
            self._send(
                Message(
                    Topic.CONNECTION,
                    ConnectionAction.INVALID_MESSAGE,
                    original_topic=msg.topic,
                    original_action=msg.action,
                )
            )
        return None

    def _auth(self, msg: Message) -> AuthRequest | None:
        if msg.topic != Topic.AUTH:
            self._send(
                Message(
                    Topic.AUTH,
                    AuthAction.INVALID_MESSAGE,
                    original_topic=msg.topic,
                    original_action=msg.action,
                )
            )
            return None
        data: Any = None
        if msg.action == AuthAction.REQUEST and msg.data is not None:
            try:
                data = json.loads(msg.data)
            except ValueError:
                data = None
        if not isinstance(data, dict):
            self._send(
                Message(Topic.AUTH, AuthAction.INVALID_MESSAGE_DATA, original_action=msg.action)
            )
            self.close()
            return None
        self.state = State.AUTHENTICATING
        return AuthRequest(data)

    # -- answers from the server ----------------------------------------------------------

    def auth_succeeded(self, client_data: Any = None) -> None:
        self.state = State.OPEN
        reply = Message(Topic.AUTH, AuthAction.AUTH_SUCCESSFUL)
        if client_data is not None:
            reply.data = json.dumps(client_data)
        self._send(reply)

    def auth_failed(self, client_data: Any = None) -> None:
        self.auth_attempts += 1
        reply = Message(Topic.AUTH, AuthAction.AUTH_UNSUCCESSFUL)
        if client_data is not None:
            reply.data = json.dumps(client_data)
        self._send(reply)
        if self.auth_attempts >= self.max_auth_attempts:
            self._send(Message(Topic.AUTH, AuthAction.TOO_MANY_AUTH_ATTEMPTS))
            self.close()
        else:
            self.state = State.AWAITING_AUTH

    def auth_timed_out(self) -> None:
        """The unauthenticated-client timeout ran out before a successful login."""
        if self.state in (State.OPEN, State.CLOSED):
            return
        self._send(Message(Topic.CONNECTION, ConnectionAction.AUTHENTICATION_TIMEOUT))
        self.close()

    def close(self) -> None:
        self.closing = True
        self.state = State.CLOSED

    # -- helpers --------------------------------------------------------------------------

    def _send(self, msg: Message) -> None:
        self.outbox.append(msg)

    def _parser_error(
        self, action: ParserAction, detail: str, topic: int | None = None, action_no: int | None = None
    ) -> None:
        self._send(
            Message(Topic.PARSER, action, data=json.dumps(detail), original_topic=topic,
                    original_action=action_no)
        )

    def take_outbox(self) -> list[Message]:
        out, self.outbox = self.outbox, []
        return out
