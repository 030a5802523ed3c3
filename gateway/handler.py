"""The interface every topic handler implements, and small helpers they share."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from .connection import Connection
from .protocol import Message

__all__ = ["Handler", "Peer", "unknown_action"]


class Peer(Protocol):
    """Where a handler's messages go: a client's connection, or another node of a cluster
    (``gateway.cluster``) standing in for its clients."""

    def send(self, msg: Message) -> None: ...


class Handler(Protocol):
    def handle(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        """Act on one message of the handler's topic.

        Returns ``None`` when done synchronously (the fast path), or an awaitable the
        connection awaits before it reads its next message, which keeps per-client order.
        """

    def on_disconnect(self, conn: Connection) -> None:
        """Forget everything ``conn`` held: subscriptions, providers, pending requests."""


def unknown_action(msg: Message, error: int) -> Message:
    """The answer to an action the topic does not handle: ``error`` naming it and ``msg``'s name."""
    return Message(msg.topic, error, name=msg.name, original_action=msg.action, is_error=True)
