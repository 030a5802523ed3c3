"""Presence: who is logged in, on demand and as a stream of joins and leaves.

Subscribers are called as ``callback(user, online)``; ``user=None`` subscribes to everyone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from ..exceptions import ClientError
from ..protocol import Message, PresenceAction, Topic
from .callbacks import invoke
from .connection import Connection, ack_key

__all__ = ["PresenceCallback", "PresenceHandler"]

PresenceCallback = Callable[[str, bool], Any]

_ALL_KEY = ("presence", "all")


class PresenceHandler:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._everyone: list[PresenceCallback] = []
        self._users: dict[str, list[PresenceCallback]] = {}
        conn.register(Topic.PRESENCE, self._handle)
        conn.on_reestablished(self._on_reestablished)

    async def get_all(self) -> list[str]:
        """Every user logged in, except this client's own user."""
        names: list[str] = await self._conn.request(
            Message(Topic.PRESENCE, PresenceAction.QUERY_ALL), _ALL_KEY
        )
        return names

    async def get(self, users: Iterable[str]) -> dict[str, bool]:
        """Whether each of ``users`` is logged in."""
        cid = self._conn.next_id()
        result: dict[str, bool] = await self._conn.request(
            Message(Topic.PRESENCE, PresenceAction.QUERY, names=list(users), correlation_id=cid),
            ("presence", cid),
        )
        return result

    async def subscribe(
        self, callback: PresenceCallback, user: str | None = None
    ) -> Callable[[], Awaitable[None]]:
        """Call ``callback(user, online)`` on logins and logouts; returns ``unsubscribe``."""
        callbacks = self._everyone if user is None else self._users.setdefault(user, [])
        first = not callbacks
        callbacks.append(callback)
        if first:
            try:
                await self._send_subscribe(
                    user, PresenceAction.SUBSCRIBE_ALL, PresenceAction.SUBSCRIBE
                )
            except BaseException:
                self._remove(callback, user)
                raise
        return partial(self.unsubscribe, callback, user)

    async def unsubscribe(self, callback: PresenceCallback, user: str | None = None) -> None:
        if not self._remove(callback, user) or not self._conn.is_open:
            return
        await self._send_subscribe(user, PresenceAction.UNSUBSCRIBE_ALL, PresenceAction.UNSUBSCRIBE)

    def _remove(self, callback: PresenceCallback, user: str | None) -> bool:
        """Drop ``callback``; True if that was the last one for ``user``."""
        callbacks = self._everyone if user is None else self._users.get(user, [])
        if callback not in callbacks:
            return False
        callbacks.remove(callback)
        if user is not None and not callbacks:
            self._users.pop(user, None)
        return not callbacks

    async def _send_subscribe(self, user: str | None, all_action: int, one_action: int) -> None:
        if user is None:
            await self._conn.request(
                Message(Topic.PRESENCE, all_action), ack_key(Topic.PRESENCE, all_action, None)
            )
            return
        await self._conn.request_bulk(Topic.PRESENCE, one_action, [user])

    def _handle(self, msg: Message) -> None:
        action, name = msg.action, msg.name or ""
        pending = self._conn.pending
        if action == PresenceAction.QUERY_ALL_RESPONSE:
            pending.resolve(_ALL_KEY, list(msg.names))
        elif action == PresenceAction.QUERY_RESPONSE:
            pending.resolve(("presence", msg.correlation_id), json.loads(msg.data or "{}"))
        elif action in (PresenceAction.PRESENCE_JOIN_ALL, PresenceAction.PRESENCE_LEAVE_ALL):
            for callback in list(self._everyone):
                invoke(callback, name, action == PresenceAction.PRESENCE_JOIN_ALL)
        elif action in (PresenceAction.PRESENCE_JOIN, PresenceAction.PRESENCE_LEAVE):
            for callback in list(self._users.get(name, ())):
                invoke(callback, name, action == PresenceAction.PRESENCE_JOIN)
        elif action in (PresenceAction.MULTIPLE_SUBSCRIPTIONS, PresenceAction.NOT_SUBSCRIBED):
            pass  # harmless: the server's view already matches what we asked for
        else:
            error = ClientError(f"{PresenceAction(action).name} for presence {name!r}".rstrip())
            if msg.original_action == PresenceAction.QUERY and pending.reject(
                ("presence", msg.correlation_id), error
            ):
                return
            if msg.original_action == PresenceAction.QUERY_ALL and pending.reject(_ALL_KEY, error):
                return
            self._conn.report(error)

    def _on_reestablished(self) -> None:
        if self._everyone:
            self._conn.send(Message(Topic.PRESENCE, PresenceAction.SUBSCRIBE_ALL))
        if self._users:
            self._conn.send(self._conn.bulk(Topic.PRESENCE, PresenceAction.SUBSCRIBE, self._users))
