"""Events: publish/subscribe by name; listening is delegated to the listen registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .config import LimitsConfig
from .connection import Connection
from .exceptions import InvalidJSON
from .handler import unknown_action
from .limits import LimitTrips
from .listen import ListenRegistry
from .protocol import EventAction, Message, Topic, encode, payload
from .subscriptions import SubscriptionRegistry

__all__ = ["EventHandler"]

_LISTEN_ACTIONS = frozenset(
    {EventAction.LISTEN, EventAction.UNLISTEN, EventAction.LISTEN_ACCEPT, EventAction.LISTEN_REJECT}
)


class EventHandler:
    def __init__(
        self,
        *,
        listen_timeout: float = 0.5,
        limits: LimitsConfig | None = None,
        trips: LimitTrips | None = None,
        max_json_depth: int = payload.DEFAULT_MAX_DEPTH,
    ) -> None:
        self.max_json_depth = max_json_depth
        self.subscriptions = SubscriptionRegistry(
            duplicate_action=EventAction.MULTIPLE_SUBSCRIPTIONS
        )
        self.listen = ListenRegistry(
            Topic.EVENT, self.subscriptions, timeout=listen_timeout, limits=limits, trips=trips
        )
        self.cluster_publish: Callable[[str, str | None], None] | None = None
        """Set on a cluster node: sends each emit to the other nodes (``gateway.cluster``)."""

    def handle(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        action = msg.action
        if action == EventAction.EMIT:
            try:
                payload.check(msg.data, max_depth=self.max_json_depth)
            except InvalidJSON:
                conn.send(
                    Message(
                        Topic.EVENT,
                        EventAction.INVALID_MESSAGE_DATA,
                        name=msg.name,
                        original_action=msg.action,
                        is_error=True,
                    )
                )
                return None
            self.emit(conn, msg)
        elif action == EventAction.SUBSCRIBE or action == EventAction.UNSUBSCRIBE:
            names = msg.names or ([msg.name] if msg.name else [])
            self.subscriptions.bulk(conn, msg, names, subscribe=action == EventAction.SUBSCRIBE)
        elif action in _LISTEN_ACTIONS:
            self.listen.handle(conn, msg)
        else:
            conn.send(unknown_action(msg, EventAction.ERROR))
        return None

    def emit(self, sender: Connection | None, msg: Message) -> None:
        """Forward ``msg`` (EMIT) to every subscriber but its sender; encoded once."""
        name = msg.name
        if name is None:
            return
        if self.cluster_publish is not None:
            self.cluster_publish(name, msg.data)
        if not self.subscriptions.has_subscribers(name):
            return
        out = Message(Topic.EVENT, EventAction.EMIT, name=name, data=msg.data)
        self.subscriptions.send(name, encode(out), exclude=sender)

    def deliver(self, name: str, data: str | None) -> None:
        """An emit made on another node of the cluster: to every subscriber here."""
        if self.subscriptions.has_subscribers(name):
            out = Message(Topic.EVENT, EventAction.EMIT, name=name, data=data)
            self.subscriptions.send(name, encode(out))

    def on_disconnect(self, conn: Connection) -> None:
        self.subscriptions.remove_connection(conn)
        self.listen.on_disconnect(conn)
