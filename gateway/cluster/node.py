"""This node as a member of a cluster: owns the Redis connections and the cluster's tasks.

The server hands it three callbacks (deliver an event from another node, announce a presence
notice, list this node's users) and calls ``publish_event`` and ``presence`` in return, and
lets ``rpc`` serve its RPC handler (``serve_rpc``) and ``listening`` its listen registries
(``serve_listen``); the node knows nothing else of the handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..config import ClusterConfig, LimitsConfig
from ..exceptions import ClusterUnavailable, DriverMissing
from ..limits import LimitTrips, ThrottledLog
from ..listen import ListenRegistry
from ..protocol import Topic
from ..rpc import RpcHandler
from .bus import Bus
from .directory import Directory
from .keys import Keys
from .listen import ClusterListen
from .membership import Membership
from .presence import ClusterPresence
from .rpc import ClusterRpc
from .stopping import stop

if TYPE_CHECKING:
    from .records import ClusterRecords

__all__ = ["ClusterNode", "ClusterStats"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

_OFFER_KINDS = ("rpc", "le", "lr")
"""Directories a node offers in (``Keys.offers``): RPC names, event and record patterns."""


@dataclass(frozen=True, slots=True)
class ClusterStats:
    """What ``/metrics`` shows of the cluster."""

    alive_nodes: int
    reaped_nodes: int
    redis_connected: bool
    bus_published: int
    bus_received: int
    bus_dropped: int
    bus_queued_bytes: int
    presence_pending: int
    rpc_remote_open: int
    rpc_remote_names: int
    rpc_remote_held: int
    listen_coordinated: int
    listen_pending: int
    record_commits: int = 0
    record_commit_conflicts: int = 0
    record_flush_busy: int = 0
    record_flush_fenced: int = 0
    record_orphans_flushed: int = 0
    record_bus_lagged: int = 0
    record_reads_open: int = 0
    record_position_waiters: int = 0
    redis_connections: int = 0
    bus_subscribed: bool = False
    bus_lost: int = 0


class ClusterNode:
    def __init__(
        self,
        config: ClusterConfig,
        *,
        default_name: str,
        on_event: Callable[[str, str | None], None],
        on_presence: Callable[[str, bool], None],
        local_users: Callable[[], Iterable[str]],
        records: ClusterRecords | None = None,
        subscribed_records: Callable[[], Iterable[str]] | None = None,
        limits: LimitsConfig | None = None,
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
        self._pool = aioredis.BlockingConnectionPool.from_url(
            config.url,
            max_connections=config.max_redis_connections,
            timeout=5.0,  # waiting for a free connection; then it fails as Redis unreachable
            socket_timeout=5.0,
            **options,
        )
        self._redis = aioredis.Redis.from_pool(self._pool)
        # No socket timeout (the bus waits for messages) and no driver health check (the
        # bus's own, cluster.bus_check_interval, demands the answer).
        self._subscriber = aioredis.from_url(config.url, socket_connect_timeout=2.0)
        self._on_event = on_event
        self._on_presence = on_presence
        self._local_users = local_users
        self.bus = Bus(
            self._redis,
            self._subscriber,
            self.keys.bus,
            node_id=self.node_id,
            max_queue=config.max_bus_queue,
            max_queue_bytes=config.max_bus_queue_bytes,
            receive=self._received,
            own_channel=self.keys.node_channel(self.node_id),
            check_interval=config.bus_check_interval,
        )
        self.bus.on_resubscribed = self._catch_up
        self.bus.on_drops_over = self._dropped
        self.records = records
        self._subscribed_records = subscribed_records
        if records is not None:
            records.bind(self._redis, self.node_id)
            records.bus_subscription = self.bus.subscription
        self.presence = ClusterPresence(self._redis, self.keys, self.node_id)
        self.membership = Membership(
            self._redis,
            self.keys,
            self.node_id,
            interval=config.heartbeat_interval,
            timeout=config.node_timeout,
            on_registered_again=self._rejoin,
            offer_kinds=_OFFER_KINDS,
            listen_topics=("e", "r"),
            known=self._known_nodes,
            on_gone=self._gone,
        )
        self.rpc = ClusterRpc(
            self.bus,
            Directory(self._redis, self.keys, self.node_id, "rpc"),
            self.keys,
            self.node_id,
            max_remote=config.max_remote_rpcs,
            connected=lambda: self.membership.connected,
        )
        self.listening = {
            topic: ClusterListen(
                self._redis,
                self.bus,
                self.keys,
                self.node_id,
                topic,
                limits=limits or LimitsConfig(),
            )
            for topic in (Topic.EVENT, Topic.RECORD)
        }
        self._directories = [
            self.rpc.directory,
            *(listen.directory for listen in self.listening.values()),
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._catching_up: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None
        self._resync_again = False
        self._making_up: asyncio.TimerHandle | None = None
        self._made_up = float("-inf")

    def serve_rpc(self, handler: RpcHandler, trips: LimitTrips) -> None:
        """Route ``handler``'s requests to providers on other nodes and back."""
        self.rpc.serve(handler, trips)

    def serve_listen(self, registry: ListenRegistry) -> None:
        """Offer ``registry``'s subscriptions to listeners on every node, one provider per
        name cluster-wide."""
        self.listening[registry.topic].serve(registry)

    async def start(self) -> None:
        """Connect, subscribe to the bus, register; raises ClusterUnavailable without Redis."""
        try:
            await self._redis.ping()
            if self.records is not None:
                await self.records.check_redis()
            await self.bus.start()
            if self.records is not None:
                await self.records.subscribed()
            await self.membership.register()
            await self.membership.sweep()
            await self._load()
        except ClusterUnavailable:
            await self._close_connections()
            raise
        except Exception as exc:
            await self._close_connections()
            where = self._where()
            raise ClusterUnavailable(f"cluster: cannot reach Redis at {where}: {exc}") from exc
        self._tasks = [
            asyncio.create_task(self.membership.run()),
            asyncio.create_task(self.presence.run()),
            *(asyncio.create_task(directory.run()) for directory in self._directories),
            *(asyncio.create_task(listen.run()) for listen in self.listening.values()),
        ]
        log.info("cluster: node %s joined (%d alive)", self.node_id, self.membership.alive_nodes)

    async def close(self) -> None:
        """Leave the cluster: hand over pending presence changes, then remove this node."""
        await self.presence.drain(2.0)
        if self.presence.pending:
            log.warning(
                "shutdown: %d presence changes did not reach Redis (unreachable); the other "
                "nodes see this node's users leave when they reap it",
                self.presence.pending,
            )
        tasks = [*self._tasks, *(t for t in (self._catching_up, self._resync) if t is not None)]
        await stop(tasks, what="the cluster's tasks")
        if self._making_up is not None:
            self._making_up.cancel()
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
            redis_connections=self._pool_size(),
            bus_published=self.bus.published,
            bus_received=self.bus.received,
            bus_dropped=self.bus.dropped,
            bus_queued_bytes=self.bus.queued_bytes,
            bus_subscribed=self.bus.subscription() is not None,
            bus_lost=self.bus.lost,
            presence_pending=self.presence.pending,
            rpc_remote_open=self.rpc.remote_open,
            rpc_remote_names=len(self.rpc.directory.names()),
            rpc_remote_held=self.rpc.held,
            listen_coordinated=sum(listen.coordinating for listen in self.listening.values()),
            listen_pending=sum(listen.pending for listen in self.listening.values()),
            **self._record_stats(),
        )

    def _record_stats(self) -> dict[str, int]:
        records = self.records
        if records is None:
            return {}
        return {
            "record_commits": records.commits,
            "record_commit_conflicts": records.commit_conflicts,
            "record_flush_busy": records.flusher.busy,
            "record_flush_fenced": records.flusher.fenced,
            "record_orphans_flushed": records.flusher.orphans,
            "record_bus_lagged": records.bus_lagged,
            "record_reads_open": records.reads_open,
            "record_position_waiters": records.position_waiters,
        }

    def _received(self, message: list[Any]) -> None:
        """``[kind, name, data?]`` from another node (or a script); ``["r" / "ls" / "lv",
        ...]`` sent to this node alone (RPC, listening); ``["lp" / "lh" / "ld", ...]`` to
        all."""
        kind, name = message[0], message[1]
        if kind == "r":
            self.rpc.received(message)
            return
        if kind in ("ls", "lv", "lp", "lh", "ld"):
            listen = self.listening.get(message[2]) if len(message) > 2 else None
            if listen is not None:
                listen.received(message)
            return
        if not isinstance(name, str):
            return
        if kind == "e":
            data = message[2] if len(message) > 2 else None
            self._on_event(name, data if isinstance(data, str) else None)
        elif kind == "j" or kind == "l":
            self._on_presence(name, kind == "j")
        elif isinstance(kind, str) and kind[-1:] in "+-" and len(message) > 2:
            node = message[2]
            if not isinstance(node, str):
                return
            if kind[:-1] == "rpc":
                self.rpc.directory.notice(kind[-1] == "+", name, node)
            elif kind[:-1] in ("le", "lr"):
                topic = Topic.EVENT if kind[1] == "e" else Topic.RECORD
                self.listening[topic].notice(kind[-1] == "+", name, node)
        elif kind == "rec" and self.records is not None:
            self.records.received(message)

    def _rejoin(self) -> None:
        for user in self._local_users():
            self.presence.joined(user)
        self.rpc.directory.offer_again()
        for listen in self.listening.values():
            listen.rejoin()
        self._catch_up()

    def _dropped(self) -> None:
        """The bus dropped messages (its queue was full) and has drained since: make up for
        them, at most once a second (what that sends may overflow a small queue again)."""
        if self._making_up is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._made_up + 1.0 - loop.time()
        self._making_up = loop.call_later(max(wait, 0.0), self._make_up)

    def _make_up(self) -> None:
        self._making_up = None
        self._made_up = asyncio.get_running_loop().time()
        for listen in self.listening.values():
            listen.dropped()

    def _known_nodes(self) -> set[str]:
        known = self.rpc.directory.known_nodes() | self.rpc.peers()
        for listen in self.listening.values():
            known |= listen.known()
        return known

    def _gone(self, nodes: set[str]) -> None:
        for node in sorted(nodes):
            log.warning("cluster: node %s is gone; its providers and listeners move on", node)
            self.rpc.gone(node)
            for listen in self.listening.values():
                listen.gone(node)

    async def _load(self) -> None:
        await self.rpc.directory.load()
        for listen in self.listening.values():
            await listen.load()

    def _catch_up(self) -> None:
        """Notices and messages may have been lost (the bus resubscribed, Redis restarted):
        read the directories again and check what this node coordinates for listening,
        retrying until Redis answers."""
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.create_task(self._reload())
        if self.records is not None:
            # Record changes may have been missed too: records re-read what they serve. A
            # re-read already running may have read some records before this gap: run again.
            self._resync_again = True
            if self._resync is None or self._resync.done():
                self._resync = asyncio.create_task(self._resync_records())

    async def _resync_records(self) -> None:
        assert self.records is not None
        while self._resync_again:
            self._resync_again = False
            names = list(self._subscribed_records()) if self._subscribed_records else []
            await self.records.resync(names)

    async def _reload(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._load()
                for listen in self.listening.values():
                    await listen.verify()
                return
            except Exception as exc:
                _throttled.warning("cluster: cannot re-read the directories (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _pool_size(self) -> int:
        """Command connections open now (the driver's pool keeps no public count)."""
        pool = self._pool
        return len(getattr(pool, "_available_connections", ())) + len(
            getattr(pool, "_in_use_connections", ())
        )

    def _where(self) -> str:
        """The URL without its user and password: those are never logged."""
        parts = urlsplit(self.config.url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    async def _close_connections(self) -> None:
        for client in (self._redis, self._subscriber):
            with contextlib.suppress(Exception):
                await client.aclose()
