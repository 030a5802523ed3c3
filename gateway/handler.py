"""The interface every topic handler implements, and small helpers they share."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, Protocol

from .connection import Connection
from .exceptions import InvalidData
from .protocol import Message

__all__ = ["Handler", "parse_json", "unknown_action"]


class Handler(Protocol):
    def handle(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        """Act on one message of the handler's topic.

        Returns ``None`` when done synchronously (the fast path), or an awaitable the
        connection awaits before it reads its next message, which keeps per-client order.
        """

    def on_disconnect(self, conn: Connection) -> None:
        """Forget everything ``conn`` held: subscriptions, providers, pending requests."""


def parse_json(text: str | None) -> Any:
    """Parse a message's ``data``; raises ``InvalidData`` for absent or malformed JSON."""
    if text is None:
        raise InvalidData("data is missing")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidData(f"data is not valid JSON: {exc}") from exc


def unknown_action(msg: Message, error: int) -> Message:
    """The answer to an action the topic does not handle: ``error`` naming it and ``msg``'s name."""
    return Message(msg.topic, error, name=msg.name, original_action=msg.action, is_error=True)
