"""Events: subscribe to names, emit to every subscriber, listen for subscriptions.

As in the official client, ``emit`` also calls this client's own subscribers (the server never
echoes an event to its sender).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ..exceptions import ClientError
from ..protocol import EventAction, Message, Topic
from .callbacks import invoke
from .connection import Connection
from .listen import Listener, Listening

__all__ = ["EventCallback", "EventHandler"]

EventCallback = Callable[[Any], Any]


def _event_error(code: str, name: str) -> ClientError:
    return ClientError(f"{code} for event {name!r}")


class EventHandler(Listening):
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._callbacks: dict[str, list[EventCallback]] = {}
        self._listener = Listener(conn, Topic.EVENT, EventAction, _event_error)
        conn.register(Topic.EVENT, self._handle)
        conn.on_reestablished(self._on_reestablished)

    def names(self) -> list[str]:
        """The event names this client is subscribed to."""
        return list(self._callbacks)

    async def subscribe(self, name: str, callback: EventCallback) -> Callable[[], Awaitable[None]]:
        """Call ``callback(data)`` for every event ``name``; returns ``unsubscribe``."""
        if not name:
            raise ValueError("event name must not be empty")
        first = name not in self._callbacks
        self._callbacks.setdefault(name, []).append(callback)
        if first:
            try:
                await self._conn.request_bulk(
                    Topic.EVENT, EventAction.SUBSCRIBE, [name], ("denied", Topic.EVENT, name)
                )
            except BaseException:
                self._remove(name, callback)
                raise
        return partial(self.unsubscribe, name, callback)

    async def unsubscribe(self, name: str, callback: EventCallback | None = None) -> None:
        """Drop ``callback`` (every callback if None); the last one unsubscribes the server."""
        if name not in self._callbacks:
            return
        if callback is None:
            del self._callbacks[name]
        else:
            self._remove(name, callback)
        if name not in self._callbacks and self._conn.is_open:
            await self._conn.request_bulk(Topic.EVENT, EventAction.UNSUBSCRIBE, [name])

    def _remove(self, name: str, callback: EventCallback) -> None:
        callbacks = self._callbacks.get(name, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            self._callbacks.pop(name, None)

    def emit(self, name: str, data: Any = None) -> None:
        """Send event ``name`` (with JSON ``data``, absent when None) to every subscriber."""
        if not name:
            raise ValueError("event name must not be empty")
        text = None if data is None else json.dumps(data, separators=(",", ":"))
        self._conn.send(Message(Topic.EVENT, EventAction.EMIT, name=name, data=text))
        self._deliver(name, data if text is None else json.loads(text))

    def _deliver(self, name: str, data: Any) -> None:
        for callback in list(self._callbacks.get(name, ())):
            invoke(callback, data)

    def _handle(self, msg: Message) -> None:
        if msg.action == EventAction.EMIT:
            self._deliver(msg.name or "", None if msg.data is None else json.loads(msg.data))
        elif self._listener.handle(msg):
            pass
        elif msg.action in (EventAction.MULTIPLE_SUBSCRIPTIONS, EventAction.NOT_SUBSCRIBED):
            pass  # harmless: the server's view already matches what we asked for
        else:
            code = EventAction(msg.action).name
            error = _event_error(code, msg.name or "")
            if msg.original_action == EventAction.SUBSCRIBE:
                self._callbacks.pop(msg.name or "", None)
                if self._conn.pending.reject(("denied", Topic.EVENT, msg.name), error):
                    return
            self._conn.report(error)

    def _on_reestablished(self) -> None:
        if self._callbacks:
            self._conn.send(self._conn.bulk(Topic.EVENT, EventAction.SUBSCRIBE, self._callbacks))
