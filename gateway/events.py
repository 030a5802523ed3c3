"""Events: publish/subscribe by name; listening is delegated to the listen registry."""

from __future__ import annotations

from collections.abc import Awaitable

from .connection import Connection
from .listen import ListenRegistry
from .protocol import EventAction, Message, Topic, encode
from .subscriptions import SubscriptionRegistry

__all__ = ["EventHandler"]

_LISTEN_ACTIONS = frozenset(
    {EventAction.LISTEN, EventAction.UNLISTEN, EventAction.LISTEN_ACCEPT, EventAction.LISTEN_REJECT}
)


class EventHandler:
    def __init__(self, *, listen_timeout: float = 0.5) -> None:
        self.subscriptions = SubscriptionRegistry()
        self.listen = ListenRegistry(Topic.EVENT, self.subscriptions, timeout=listen_timeout)

    def handle(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        action = msg.action
        if action == EventAction.EMIT:
            self.emit(conn, msg)
        elif action == EventAction.SUBSCRIBE:
            self._bulk(conn, msg, subscribe=True)
        elif action == EventAction.UNSUBSCRIBE:
            self._bulk(conn, msg, subscribe=False)
        elif action in _LISTEN_ACTIONS:
            self.listen.handle(conn, msg)
        else:
            conn.send(
                Message(
                    Topic.EVENT,
                    EventAction.ERROR,
                    name=msg.name,
                    original_action=msg.action,
                    is_error=True,
                )
            )
        return None

    def emit(self, sender: Connection | None, msg: Message) -> None:
        """Forward ``msg`` (EMIT) to every subscriber but its sender; encoded once."""
        if msg.name is None or not self.subscriptions.has_subscribers(msg.name):
            return
        out = Message(Topic.EVENT, EventAction.EMIT, name=msg.name, data=msg.data)
        self.subscriptions.send(msg.name, encode(out), exclude=sender)

    def _bulk(self, conn: Connection, msg: Message, *, subscribe: bool) -> None:
        names = msg.names or ([msg.name] if msg.name else [])
        for name in names:
            if subscribe:
                if not self.subscriptions.subscribe(name, conn):
                    conn.send(
                        Message(
                            Topic.EVENT,
                            EventAction.MULTIPLE_SUBSCRIPTIONS,
                            name=name,
                            original_action=msg.action,
                        )
                    )
            else:
                # As the reference does: a bulk unsubscribe of a name not held is silent.
                self.subscriptions.unsubscribe(name, conn)
        conn.send(Message(Topic.EVENT, msg.action, correlation_id=msg.correlation_id, is_ack=True))

    def on_disconnect(self, conn: Connection) -> None:
        self.subscriptions.remove_connection(conn)
        self.listen.on_disconnect(conn)
