"""This node as a member of a cluster: owns the Redis connections and the cluster's tasks.

The server hands it three callbacks (deliver an event from another node, announce a presence
notice, list this node's users) and calls ``publish_event`` and ``presence`` in return; the
node knows nothing else of the handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..config import ClusterConfig
from ..exceptions import ClusterUnavailable, DriverMissing
from .bus import Bus
from .keys import Keys
from .membership import Membership
from .presence import ClusterPresence

__all__ = ["ClusterNode", "ClusterStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClusterStats:
    """What ``/metrics`` shows of the cluster."""

    alive_nodes: int
    reaped_nodes: int
    redis_connected: bool
    bus_published: int
    bus_received: int
    bus_dropped: int
    presence_pending: int


class ClusterNode:
    def __init__(
        self,
        config: ClusterConfig,
        *,
        default_name: str,
        on_event: Callable[[str, str | None], None],
        on_presence: Callable[[str, bool], None],
        local_users: Callable[[], Iterable[str]],
    ) -> None:
        try:
            import redis.asyncio as aioredis  # only a cluster node needs the driver
        except ImportError as exc:
            raise DriverMissing(
                "cluster: the redis driver is not installed (pip install 'recordgate[redis]')"
            ) from exc
        self.config = config
        self.name = config.node_name or default_name
        self.node_id = f"{self.name}/{secrets.token_hex(4)}"
        """Unique per process: a restarted node is a new member, its old self is reaped."""
        self.keys = Keys(config.prefix)
        options: dict[str, Any] = {"socket_connect_timeout": 2.0, "health_check_interval": 5}
        self._redis = aioredis.from_url(config.url, socket_timeout=5.0, **options)
        self._subscriber = aioredis.from_url(config.url, **options)  # blocks on reads: no timeout
        self._on_event = on_event
        self._on_presence = on_presence
        self._local_users = local_users
        self.bus = Bus(
            self._redis,
            self._subscriber,
            self.keys.bus,
            node_id=self.node_id,
            max_queue=config.max_bus_queue,
            receive=self._received,
        )
        self.presence = ClusterPresence(self._redis, self.keys, self.node_id)
        self.membership = Membership(
            self._redis,
            self.keys,
            self.node_id,
            interval=config.heartbeat_interval,
            timeout=config.node_timeout,
            on_registered_again=self._rejoin,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Connect, subscribe to the bus, register; raises ClusterUnavailable without Redis."""
        try:
            await self._redis.ping()
            await self.bus.start()
            await self.membership.register()
            await self.membership.sweep()
        except Exception as exc:
            await self._close_connections()
            where = self._where()
            raise ClusterUnavailable(f"cluster: cannot reach Redis at {where}: {exc}") from exc
        self._tasks = [
            asyncio.create_task(self.membership.run()),
            asyncio.create_task(self.presence.run()),
        ]
        log.info("cluster: node %s joined (%d alive)", self.node_id, self.membership.alive_nodes)

    async def close(self) -> None:
        """Leave the cluster: hand over pending presence changes, then remove this node."""
        await self.presence.drain(2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.close()
        try:
            await self.membership.reap(self.node_id)
        except Exception as exc:  # the others will reap this node when its heartbeat lapses
            log.warning("cluster: could not leave cleanly (%s)", exc)
        await self._close_connections()

    def publish_event(self, name: str, data: str | None) -> None:
        """Send an emit to the other nodes (this node served its own subscribers)."""
        self.bus.publish(["e", name, data])

    @property
    def stats(self) -> ClusterStats:
        return ClusterStats(
            alive_nodes=self.membership.alive_nodes,
            reaped_nodes=self.membership.reaped,
            redis_connected=self.membership.connected,
            bus_published=self.bus.published,
            bus_received=self.bus.received,
            bus_dropped=self.bus.dropped,
            presence_pending=self.presence.pending,
        )

    def _received(self, message: list[Any]) -> None:
        """``[kind, name, data?]`` from another node (or a presence script)."""
        kind, name = message[0], message[1]
        if not isinstance(name, str):
            return
        if kind == "e":
            data = message[2] if len(message) > 2 else None
            self._on_event(name, data if isinstance(data, str) else None)
        elif kind == "j" or kind == "l":
            self._on_presence(name, kind == "j")

    def _rejoin(self) -> None:
        for user in self._local_users():
            self.presence.joined(user)

    def _where(self) -> str:
        """The URL without its user and password: those are never logged."""
        parts = urlsplit(self.config.url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    async def _close_connections(self) -> None:
        for client in (self._redis, self._subscriber):
            with contextlib.suppress(Exception):
                await client.aclose()
