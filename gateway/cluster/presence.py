"""Presence across nodes: which users are online on any node.

The node's own handler counts its connections; only a user's first local login and last
local logout reach Redis (scripts ``JOIN`` / ``LEAVE``), which announce cluster-wide firsts
and lasts on the bus. Changes wait in an ordered map user -> online, applied in order by one
task: a user flapping while Redis is away costs one entry, and its final state is what lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..limits import ThrottledLog
from . import scripts
from .keys import Keys

__all__ = ["ClusterPresence"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)


class ClusterPresence:
    def __init__(self, redis: Any, keys: Keys, node_id: str) -> None:
        self._redis = redis
        self._keys = keys
        self._node_keys = [keys.node_presence(node_id), keys.presence, keys.bus]
        self._join = redis.register_script(scripts.JOIN)
        self._leave = redis.register_script(scripts.LEAVE)
        self._pending: dict[str, bool] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        """Set while no change waits for Redis."""
        self._idle.set()

    def joined(self, user: str) -> None:
        """``user`` logged in on this node (its first connection here)."""
        self._set(user, True)

    def left(self, user: str) -> None:
        """``user``'s last connection on this node closed."""
        self._set(user, False)

    def _set(self, user: str, online: bool) -> None:
        self._pending.pop(user, None)  # re-insert at the end: changes apply in order
        self._pending[user] = online
        self._idle.clear()
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def online(self, users: list[str]) -> dict[str, bool]:
        """Whether each of ``users`` is online on any node."""
        if not users:
            return {}
        counts = await self._redis.hmget(self._keys.presence, users)
        return {user: count is not None for user, count in zip(users, counts, strict=True)}

    async def everyone(self) -> list[str]:
        """Every user online on any node."""
        return [user.decode() for user in await self._redis.hkeys(self._keys.presence)]

    async def run(self) -> None:
        """Apply pending changes in order until cancelled; retry while Redis is away."""
        delay = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                user, online = next(iter(self._pending.items()))
                script = self._join if online else self._leave
                try:
                    await script(keys=self._node_keys, args=[user])
                except Exception as exc:
                    _throttled.warning("cluster presence: cannot reach Redis (%s); retrying", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.1
                if self._pending.get(user) is online:  # unchanged meanwhile: done
                    del self._pending[user]
            self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for pending changes to reach Redis."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
