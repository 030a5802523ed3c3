"""Who is subscribed to which name, for one topic, with the fan-out send and the answer to a
bulk (UN)SUBSCRIBE that every topic gives alike.

Invariant: ``_subscribers[name]`` contains ``conn`` iff ``_names[conn]`` contains ``name``;
neither map holds empty sets. Both directions are kept so that a disconnect costs the
connection's own subscriptions, not the total number of names or connections.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from .connection import Connection
from .protocol import Message

__all__ = ["SubscriptionRegistry", "duplicate"]

Hook = Callable[[str, Connection], None]


def duplicate(msg: Message, action: int, name: str) -> Message:
    """The notice that ``msg`` asked for ``name`` again: ``action`` is MULTIPLE_SUBSCRIPTIONS
    (or MULTIPLE_PROVIDERS), naming ``msg``'s action."""
    return Message(msg.topic, action, name=name, original_action=msg.action)


class SubscriptionRegistry:
    def __len__(self) -> int:
        """Names with at least one subscriber."""
        return len(self._subscribers)

    def __init__(
        self,
        *,
        duplicate_action: int,
        on_first: Callable[[str], None] | None = None,
        on_last: Callable[[str], None] | None = None,
        on_added: Hook | None = None,
    ) -> None:
        self._subscribers: dict[str, set[Connection]] = {}
        self._names: dict[Connection, set[str]] = {}
        self.duplicate_action = duplicate_action
        """What ``bulk`` answers for a name subscribed again (MULTIPLE_SUBSCRIPTIONS, ...)."""
        self.on_first = on_first
        """Called after a name gets its first subscriber."""
        self.on_last = on_last
        """Called after a name loses its last subscriber."""
        self.on_added = on_added
        """Called after any subscriber is added (also the first)."""

    def subscribe(self, name: str, conn: Connection) -> bool:
        """Add ``conn``; False if it was already subscribed."""
        subs = self._subscribers.get(name)
        if subs is None:
            subs = self._subscribers[name] = set()
        elif conn in subs:
            return False
        subs.add(conn)
        self._names.setdefault(conn, set()).add(name)
        if len(subs) == 1 and self.on_first is not None:
            self.on_first(name)
        if self.on_added is not None:
            self.on_added(name, conn)
        return True

    def unsubscribe(self, name: str, conn: Connection) -> bool:
        """Remove ``conn``; False if it was not subscribed."""
        subs = self._subscribers.get(name)
        if subs is None or conn not in subs:
            return False
        subs.discard(conn)
        names = self._names[conn]
        names.discard(name)
        if not names:
            del self._names[conn]
        if not subs:
            del self._subscribers[name]
            if self.on_last is not None:
                self.on_last(name)
        return True

    def bulk(
        self, conn: Connection, msg: Message, names: Iterable[str], *, subscribe: bool
    ) -> None:
        """Subscribe (or unsubscribe) ``conn`` to each of ``names`` for ``msg``, then ack it.

        As the reference does: a name already held gets a ``duplicate_action`` notice on the
        way, unsubscribing from a name not held is silent, and the ack carries only topic,
        action and correlation id.
        """
        if subscribe:
            for name in names:
                if not self.subscribe(name, conn):
                    conn.send(duplicate(msg, self.duplicate_action, name))
        else:
            for name in names:
                self.unsubscribe(name, conn)
        conn.send(Message(msg.topic, msg.action, correlation_id=msg.correlation_id, is_ack=True))

    def remove_connection(self, conn: Connection) -> list[str]:
        """Unsubscribe ``conn`` from everything; returns the names it held."""
        names = list(self._names.get(conn, ()))
        for name in names:
            self.unsubscribe(name, conn)
        return names

    def new_for(self, conn: Connection, names: Collection[str]) -> int:
        """How many subscriptions ``conn`` would hold after subscribing to ``names``."""
        held = self._names.get(conn)
        if held is None:
            return len(set(names))
        return len(held) + len(set(names).difference(held))

    def subscribers(self, name: str) -> Collection[Connection]:
        return self._subscribers.get(name, ())

    def has_subscribers(self, name: str) -> bool:
        return name in self._subscribers

    def names(self) -> Iterable[str]:
        return self._subscribers.keys()

    def send(self, name: str, frame: bytes, exclude: Connection | None = None) -> None:
        """Write one encoded frame to every subscriber of ``name`` but ``exclude``."""
        subs = self._subscribers.get(name)
        if subs is None:
            return
        for conn in subs:
            if conn is not exclude:
                conn.send_frame(frame)
