"""Presence: which users are online, and notices when one comes or goes.

A user is online while at least one of its connections is logged in; anonymous logins
(``OPEN_USER``) are not users here. Only the first login and the last logout of a user are
announced: PRESENCE_JOIN_ALL / PRESENCE_LEAVE_ALL to connections subscribed to everyone, then
PRESENCE_JOIN / PRESENCE_LEAVE to those subscribed to that user.

Invariant: ``_online[user]`` is the number of logged-in connections of ``user``, never zero.

On a cluster node (``shared`` set) the first login and last logout of a user here go to the
cluster instead, which announces cluster-wide firsts and lasts back through ``announce`` on
every node (this one too); queries are answered from the cluster.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Iterable
from typing import Protocol

from .auth import OPEN_USER
from .connection import Connection
from .protocol import Message, PresenceAction, Topic, encode
from .subscriptions import SubscriptionRegistry, duplicate

__all__ = ["PresenceHandler", "SharedPresence"]

log = logging.getLogger(__name__)

EVERYONE = "%_EVERYONE_%"
"""The name the reference reports in MULTIPLE_SUBSCRIPTIONS for a repeated SUBSCRIBE_ALL."""


class SharedPresence(Protocol):
    """Presence kept across nodes (``gateway.cluster.presence``)."""

    def joined(self, user: str) -> None: ...
    def left(self, user: str) -> None: ...
    async def online(self, users: list[str]) -> dict[str, bool]: ...
    async def everyone(self) -> list[str]: ...


class PresenceHandler:
    def __init__(self) -> None:
        self.subscriptions = SubscriptionRegistry(
            duplicate_action=PresenceAction.MULTIPLE_SUBSCRIPTIONS
        )
        """Who follows which user."""
        self._everyone: set[Connection] = set()
        self._online: dict[str, int] = {}
        self.shared: SharedPresence | None = None
        """Set on a cluster node: presence across all nodes."""

    def handle(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        action = msg.action
        if action == PresenceAction.QUERY_ALL or action == PresenceAction.QUERY:
            if self.shared is not None:
                return self._query_shared(conn, msg, self.shared)
            self._answer(conn, msg, self._online)
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
        return None

    def _answer(self, conn: Connection, msg: Message, online: Iterable[str]) -> None:
        if msg.action == PresenceAction.QUERY_ALL:
            names = [user for user in online if user != conn.user_id]
            conn.send(Message(Topic.PRESENCE, PresenceAction.QUERY_ALL_RESPONSE, names=names))
            return
        users = online if isinstance(online, set | dict) else set(online)
        result = {user: user in users for user in msg.names}
        conn.send(
            Message(
                Topic.PRESENCE,
                PresenceAction.QUERY_RESPONSE,
                correlation_id=msg.correlation_id,
                data=json.dumps(result, separators=(",", ":")),
            )
        )

    async def _query_shared(self, conn: Connection, msg: Message, shared: SharedPresence) -> None:
        online: Iterable[str]
        try:
            if msg.action == PresenceAction.QUERY_ALL:
                online = await shared.everyone()
            else:
                found = await shared.online(list(msg.names))
                online = {user for user, yes in found.items() if yes}
        except Exception as exc:  # Redis away: this node's own users are what it knows
            log.warning("presence query answered from this node only: no Redis (%s)", exc)
            online = self._online
        self._answer(conn, msg, online)

    def local_users(self) -> list[str]:
        """Users logged in on this node."""
        return list(self._online)

    def announce(self, user: str, joined: bool) -> None:
        """A cluster-wide first login (``joined``) or last logout of ``user``.

        Never to ``user``'s own connections: on one node a user cannot see its own join (it is
        announced before its first connection can subscribe), and through the cluster the
        notice arrives later, so it is kept from them here."""
        P = PresenceAction
        to_everyone, to_followers = (
            (P.PRESENCE_JOIN_ALL, P.PRESENCE_JOIN)
            if joined
            else (P.PRESENCE_LEAVE_ALL, P.PRESENCE_LEAVE)
        )
        if self._everyone:
            frame = encode(Message(Topic.PRESENCE, to_everyone, name=user))
            for conn in self._everyone:
                if conn.user_id != user:
                    conn.send_frame(frame)
        if self.subscriptions.has_subscribers(user):
            frame = encode(Message(Topic.PRESENCE, to_followers, name=user))
            for conn in self.subscriptions.subscribers(user):
                if conn.user_id != user:
                    conn.send_frame(frame)

    def on_login(self, conn: Connection) -> None:
        user = conn.user_id
        if user == OPEN_USER:
            return
        count = self._online.get(user, 0)
        self._online[user] = count + 1
        if count == 0:
            if self.shared is not None:
                self.shared.joined(user)
            else:
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
        if self.shared is not None:
            self.shared.left(user)
        else:
            self._announce(user, PresenceAction.PRESENCE_LEAVE_ALL, PresenceAction.PRESENCE_LEAVE)

    def _announce(self, user: str, to_everyone: int, to_followers: int) -> None:
        if self._everyone:
            frame = encode(Message(Topic.PRESENCE, to_everyone, name=user))
            for conn in self._everyone:
                conn.send_frame(frame)
        if self.subscriptions.has_subscribers(user):
            frame = encode(Message(Topic.PRESENCE, to_followers, name=user))
            self.subscriptions.send(user, frame)
