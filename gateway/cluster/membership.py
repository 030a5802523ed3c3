"""Membership: this node's heartbeat in Redis, and the reaping of nodes whose heartbeat lapsed.

A node is alive while its heartbeat key exists; it renews the key's TTL every interval and
never recreates it silently: if the key is gone (this node was presumed dead), it registers
again and calls ``on_registered_again`` so the node re-publishes what it holds. Every node
sweeps the member set each interval and reaps the dead with an idempotent script, so several
nodes sweeping at once is harmless. Each sweep also tells ``on_gone`` which of the nodes this
node knows of (``known``) are dead: without a heartbeat, or no longer members (reaped by
another node, or left); a node known before the sweep began cannot be a newcomer the sweep
missed, since a node registers before it offers anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..limits import ThrottledLog
from . import scripts
from .keys import Keys

__all__ = ["Membership"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)


class Membership:
    def __init__(
        self,
        redis: Any,
        keys: Keys,
        node_id: str,
        *,
        interval: float,
        timeout: float,
        on_registered_again: Callable[[], None],
        offer_kinds: tuple[str, ...] = (),
        listen_topics: tuple[str, ...] = (),
        known: Callable[[], set[str]] = set,
        on_gone: Callable[[set[str]], None] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.node_id = node_id
        self._interval = interval
        self._ttl_ms = int(timeout * 1000)
        self._on_registered_again = on_registered_again
        self._offer_kinds = offer_kinds
        """Kinds of ``Keys.offers`` sets a node holds (deleted when it is reaped)."""
        self._listen_topics = listen_topics
        """Topics whose ``Keys.wanted`` set a node holds (undone when it is reaped)."""
        self._known = known
        self._on_gone = on_gone
        self._heartbeat = redis.register_script(scripts.HEARTBEAT)
        self._reap = redis.register_script(scripts.REAP)
        self.alive_nodes = 0
        """Nodes with a heartbeat at the last sweep, this one included."""
        self.reaped = 0
        """Dead nodes this node reaped."""
        self.connected = False
        """Whether the last heartbeat reached Redis."""

    async def register(self) -> None:
        """Join the member set with a fresh heartbeat, atomically (a sweeper never sees the
        member without its heartbeat)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self._keys.members, self.node_id)
            pipe.set(self._keys.heartbeat(self.node_id), b"1", px=self._ttl_ms)
            await pipe.execute()
        self.connected = True

    async def run(self) -> None:
        """Heartbeat and sweep every interval until cancelled; Redis errors are logged and
        retried at the next interval."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
                await self.sweep()
            except Exception as exc:
                if self.connected:
                    log.error("cluster: lost Redis (%s); retrying every %ss", exc, self._interval)
                self.connected = False

    async def beat(self) -> None:
        extended = await self._heartbeat(
            keys=[self._keys.heartbeat(self.node_id)], args=[self._ttl_ms]
        )
        if not self.connected:
            log.info("cluster: Redis reachable again")
        self.connected = True
        if not extended:
            log.warning(
                "cluster: this node's heartbeat had lapsed (presumed dead); registering again"
            )
            await self.register()
            self._on_registered_again()

    async def sweep(self) -> None:
        """Reap every member without a heartbeat; tell ``on_gone`` of known nodes gone."""
        known = self._known()
        members = sorted(m.decode() for m in await self._redis.smembers(self._keys.members))
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.exists(self._keys.heartbeat(member))
            alive = await pipe.execute()
        self.alive_nodes = sum(1 for flag in alive if flag)
        dead = {m for m, flag in zip(members, alive, strict=True) if not flag}
        dead.discard(self.node_id)
        gone = (known - set(members)) | (known & dead)
        if gone and self._on_gone is not None:
            self._on_gone(gone)
        for member in sorted(dead):
            await self.reap(member)

    async def reap(self, node_id: str) -> None:
        """Remove ``node_id`` and everything it held (its users leave presence)."""
        keys = self._keys
        removed = await self._reap(
            keys=[
                keys.node_presence(node_id),
                keys.presence,
                keys.bus,
                keys.members,
                keys.heartbeat(node_id),
                *(keys.offers(kind, node_id) for kind in self._offer_kinds),
                *(
                    key
                    for topic in self._listen_topics
                    for key in (
                        keys.wanted(topic, node_id),
                        keys.wanted_counts(topic),
                        keys.coordinators(topic),
                        keys.provided(topic),
                    )
                ),
            ],
            args=[node_id, len(self._offer_kinds)],
        )
        if removed and node_id != self.node_id:
            self.reaped += 1
            log.warning("cluster: node %s missed its heartbeats; reaped", node_id)
