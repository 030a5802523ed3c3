"""The client facade: one connection and a handler per concept.

::

    async with Client("ws://127.0.0.1:6020/deepstream", auth={"username": "svc"}) as c:
        rec = await c.record.get("user/1")
        await rec.set("name", "Ada")
        await c.event.subscribe("news", print)
        result = await c.rpc.make("add", {"a": 1, "b": 2})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Unpack

from ..exceptions import ClientError
from .connection import Connection, ConnectionOptions, ConnectionState
from .events import EventHandler
from .merge import REMOTE_WINS, MergeStrategy
from .presence import PresenceHandler
from .records import RecordHandler
from .rpc import RpcHandler

__all__ = ["Client"]


class Client:
    """A deepstream client for asyncio programs. Every option is keyword-only; times in seconds.

    Besides ``rpc_timeout`` and ``merge_strategy`` it takes the options of its connection, with
    their defaults (:class:`ConnectionOptions`: ``auth``, ``heartbeat_interval``,
    ``request_timeout``, ``reconnect``, ``reconnect_delay``, ``max_reconnect_delay``,
    ``max_reconnect_attempts``).

    ``heartbeat_interval`` should not exceed the server's (it drops clients silent for two of
    its intervals). After a dropped connection the client reconnects with exponential backoff
    from ``reconnect_delay`` up to ``max_reconnect_delay``, logs in again and replays records,
    event subscriptions, RPC providers, presence subscriptions and listens.
    """

    def __init__(
        self,
        url: str,
        *,
        rpc_timeout: float = 30.0,
        merge_strategy: MergeStrategy = REMOTE_WINS,
        **options: Unpack[ConnectionOptions],
    ) -> None:
        self.connection = Connection(url, **options)
        self.record = RecordHandler(self.connection, merge_strategy=merge_strategy)
        self.event = EventHandler(self.connection)
        self.rpc = RpcHandler(self.connection, timeout=rpc_timeout)
        self.presence = PresenceHandler(self.connection)

    @property
    def state(self) -> ConnectionState:
        return self.connection.state

    @property
    def client_data(self) -> Any:
        """What the server's authenticator returned for this login, if anything."""
        return self.connection.client_data

    def on_state_change(self, listener: Callable[[ConnectionState], Any]) -> Callable[[], None]:
        """Call ``listener(state)`` on every connection state change; returns a remover."""
        return self.connection.on_state_change(listener)

    def on_error(self, listener: Callable[[ClientError], Any]) -> Callable[[], None]:
        """Call ``listener(error)`` for server errors that no awaited call receives."""
        return self.connection.on_error(listener)

    async def connect(self) -> None:
        await self.connection.open()

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
