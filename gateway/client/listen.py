"""Listening (active providers) for records and events: the same protocol on two topics.

``on_found(name)`` decides whether this client provides ``name``: it returns a truth value, or
an awaitable of one. Accepted names get ``on_removed(name)`` when the last subscriber leaves or
the connection is lost, and when the server voided the offer (SUBSCRIPTION_FOR_PATTERN_REMOVED,
or LISTEN_RESPONSE_TIMEOUT: the answer came too late) before or after the accept: the server
ignores such an accept, so the client must not go on providing. Patterns are listened to
again after a reconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..exceptions import ClientError
from ..protocol import EventAction, Message, RecordAction
from .callbacks import invoke, outcome, spawn
from .connection import Connection, ack_key

__all__ = ["Listener", "Listening", "OnFound", "OnRemoved"]

log = logging.getLogger(__name__)

OnFound = Callable[[str], "bool | Awaitable[bool]"]
OnRemoved = Callable[[str], Any]


@dataclass(slots=True)
class _Listen:
    on_found: OnFound
    on_removed: OnRemoved | None
    provided: set[str] = field(default_factory=set)
    deciding: dict[str, list[bool]] = field(default_factory=dict)
    """Names whose ``on_found`` has not answered yet -> [the offer still stands]."""


class Listener:
    def __init__(
        self,
        conn: Connection,
        topic: int,
        actions: type[RecordAction] | type[EventAction],
        error: Callable[[str, str], ClientError],
    ) -> None:
        self._conn = conn
        self._topic = topic
        self._a = actions
        self._error = error
        self._patterns: dict[str, _Listen] = {}
        conn.on_lost(self._on_lost)
        conn.on_reestablished(self._on_reestablished)

    async def listen(
        self, pattern: str, on_found: OnFound, on_removed: OnRemoved | None = None
    ) -> Callable[[], Awaitable[None]]:
        """Offer to provide names matching the regex ``pattern``; returns ``unlisten``."""
        if pattern in self._patterns:
            raise ClientError(f"already listening to {pattern!r}")
        self._patterns[pattern] = _Listen(on_found, on_removed)
        try:
            await self._conn.request(
                Message(self._topic, self._a.LISTEN, name=pattern),
                ack_key(self._topic, self._a.LISTEN, pattern),
            )
        except BaseException:
            self._patterns.pop(pattern, None)
            raise
        return partial(self.unlisten, pattern)

    async def unlisten(self, pattern: str) -> None:
        if self._patterns.pop(pattern, None) is None:
            return
        if self._conn.is_open:
            await self._conn.request(
                Message(self._topic, self._a.UNLISTEN, name=pattern),
                ack_key(self._topic, self._a.UNLISTEN, pattern),
            )

    def handle(self, msg: Message) -> bool:
        """Take a listen message of this topic; False if ``msg`` is not one."""
        a = self._a
        if msg.action == a.SUBSCRIPTION_FOR_PATTERN_FOUND:
            spawn(self._found(msg.name or "", msg.subscription or ""))
        elif msg.action == a.SUBSCRIPTION_FOR_PATTERN_REMOVED:
            entry = self._patterns.get(msg.name or "")
            if entry is not None:
                self._void(entry, msg.subscription or "")
        elif msg.action == a.LISTEN_RESPONSE_TIMEOUT:
            # The server gave up waiting for this client's answer (it names no pattern): an
            # accept it sends or sent later is ignored there, so this client provides nothing.
            for entry in self._patterns.values():
                self._void(entry, msg.subscription or "")
        elif msg.action == a.INVALID_LISTEN_REGEX:
            error = self._error(a.INVALID_LISTEN_REGEX.name, msg.name or "")
            self._patterns.pop(msg.name or "", None)
            if not self._conn.pending.reject(ack_key(self._topic, a.LISTEN, msg.name), error):
                self._conn.report(error)
        else:
            return False
        return True

    def _void(self, entry: _Listen, name: str) -> None:
        """The server holds no offer or provision of ``name`` for ``entry`` any more."""
        offer = entry.deciding.get(name)
        if offer is not None:
            offer[0] = False  # the answer to come is void: on_removed follows an accept
        if name in entry.provided:
            entry.provided.discard(name)
            if entry.on_removed is not None:
                invoke(entry.on_removed, name)

    async def _found(self, pattern: str, name: str) -> None:
        entry = self._patterns.get(pattern)
        if entry is None:
            accept = False
        else:
            offer = entry.deciding[name] = [True]
            try:
                accept = bool(await outcome(entry.on_found, name))
            except Exception:
                log.exception("listen callback for %r failed; rejecting %r", pattern, name)
                accept = False
            if entry.deciding.get(name) is offer:
                del entry.deciding[name]
            if accept and not offer[0]:  # voided while deciding: it provides nothing
                if entry.on_removed is not None and name not in entry.provided:
                    invoke(entry.on_removed, name)
            elif accept:
                entry.provided.add(name)
        action = self._a.LISTEN_ACCEPT if accept else self._a.LISTEN_REJECT
        if self._conn.is_open:
            self._conn.send(Message(self._topic, action, name=pattern, subscription=name))

    def _on_lost(self) -> None:
        # The server forgets providers with the connection; tell ours they stopped.
        for entry in self._patterns.values():
            provided, entry.provided = entry.provided, set()
            if entry.on_removed is not None:
                for name in provided:
                    invoke(entry.on_removed, name)

    def _on_reestablished(self) -> None:
        for pattern in self._patterns:
            self._conn.send(Message(self._topic, self._a.LISTEN, name=pattern))


class Listening:
    """``listen`` and ``unlisten`` for a topic handler that keeps its :class:`Listener`."""

    _listener: Listener

    async def listen(
        self, pattern: str, on_found: OnFound, on_removed: OnRemoved | None = None
    ) -> Callable[[], Awaitable[None]]:
        """Provide names matching ``pattern`` on demand; see :mod:`.listen`."""
        return await self._listener.listen(pattern, on_found, on_removed)

    async def unlisten(self, pattern: str) -> None:
        await self._listener.unlisten(pattern)
