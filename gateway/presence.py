"""Presence: which users are online, and notices when one comes or goes.

A user is online while at least one of its connections is logged in; anonymous logins
(``OPEN_USER``) are not users here. Only the first login and the last logout of a user are
announced: PRESENCE_JOIN_ALL / PRESENCE_LEAVE_ALL to connections subscribed to everyone, then
PRESENCE_JOIN / PRESENCE_LEAVE to those subscribed to that user.

Invariant: ``_online[user]`` is the number of logged-in connections of ``user``, never zero.
"""

from __future__ import annotations

import json

from .auth import OPEN_USER
from .connection import Connection
from .protocol import Message, PresenceAction, Topic, encode
from .subscriptions import SubscriptionRegistry, duplicate

__all__ = ["PresenceHandler"]

EVERYONE = "%_EVERYONE_%"
"""The name the reference reports in MULTIPLE_SUBSCRIPTIONS for a repeated SUBSCRIBE_ALL."""


class PresenceHandler:
    def __init__(self) -> None:
        self.subscriptions = SubscriptionRegistry(
            duplicate_action=PresenceAction.MULTIPLE_SUBSCRIPTIONS
        )
        """Who follows which user."""
        self._everyone: set[Connection] = set()
        self._online: dict[str, int] = {}

    def handle(self, conn: Connection, msg: Message) -> None:
        action = msg.action
        if action == PresenceAction.QUERY_ALL:
            names = [user for user in self._online if user != conn.user_id]
            conn.send(Message(Topic.PRESENCE, PresenceAction.QUERY_ALL_RESPONSE, names=names))
        elif action == PresenceAction.QUERY:
            result = {user: user in self._online for user in msg.names}
            conn.send(
                Message(
                    Topic.PRESENCE,
                    PresenceAction.QUERY_RESPONSE,
                    correlation_id=msg.correlation_id,
                    data=json.dumps(result, separators=(",", ":")),
                )
            )
        elif action == PresenceAction.SUBSCRIBE_ALL:
            if conn in self._everyone:
                conn.send(duplicate(msg, PresenceAction.MULTIPLE_SUBSCRIPTIONS, EVERYONE))
            self._everyone.add(conn)
            conn.send(Message(Topic.PRESENCE, action, is_ack=True))
        elif action == PresenceAction.UNSUBSCRIBE_ALL:
            self._everyone.discard(conn)
            conn.send(Message(Topic.PRESENCE, action, is_ack=True))
        elif action in (PresenceAction.SUBSCRIBE, PresenceAction.UNSUBSCRIBE):
            self.subscriptions.bulk(
                conn, msg, msg.names, subscribe=action == PresenceAction.SUBSCRIBE
            )
        else:
            conn.send(
                Message(Topic.PRESENCE, PresenceAction.ERROR, original_action=action, is_error=True)
            )

    def on_login(self, conn: Connection) -> None:
        user = conn.user_id
        if user == OPEN_USER:
            return
        count = self._online.get(user, 0)
        self._online[user] = count + 1
        if count == 0:
            self._announce(user, PresenceAction.PRESENCE_JOIN_ALL, PresenceAction.PRESENCE_JOIN)

    def on_disconnect(self, conn: Connection) -> None:
        self._everyone.discard(conn)
        self.subscriptions.remove_connection(conn)
        user = conn.user_id
        count = self._online.get(user)
        if count is None:  # anonymous, or never announced
            return
        if count > 1:
            self._online[user] = count - 1
            return
        del self._online[user]
        self._announce(user, PresenceAction.PRESENCE_LEAVE_ALL, PresenceAction.PRESENCE_LEAVE)

    def _announce(self, user: str, to_everyone: int, to_followers: int) -> None:
        if self._everyone:
            frame = encode(Message(Topic.PRESENCE, to_everyone, name=user))
            for conn in self._everyone:
                conn.send_frame(frame)
        if self.subscriptions.has_subscribers(user):
            frame = encode(Message(Topic.PRESENCE, to_followers, name=user))
            self.subscriptions.send(user, frame)
