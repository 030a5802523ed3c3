"""A directory: which node offers what, for one kind of offer (``rpc``: the RPC names each
node provides), kept in Redis and mirrored in every node's memory.

Each node owns one set in Redis (``Keys.offers``). Its changes wait in an ordered map
name -> offered and are applied in order by one task (scripts ``OFFER`` / ``WITHDRAW``, which
publish ``[kind+, name, node]`` / ``[kind-, ...]`` on the bus when they change the set), so a
flapping name while Redis is away costs one entry. Every node mirrors the other nodes' sets
from those notices; because Pub/Sub may lose notices while a subscriber reconnects, the
mirror is read again (``load``) at start, after the bus resubscribes and after this node
registered again. Notices that arrive while a load is in flight are applied again on top of
its result: each one is the newest change of its (name, node) in Redis's order, so the
result is right whichever of the two Redis ran first.

A dead node's entries are dropped by every node when its own sweep finds it dead
(``forget``), and its set is deleted by the reap script.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from ..limits import ThrottledLog
from . import scripts
from .keys import Keys

__all__ = ["Directory"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)


class Directory:
    def __init__(self, redis: Any, keys: Keys, node_id: str, kind: str) -> None:
        self._redis = redis
        self._keys = keys
        self.node_id = node_id
        self.kind = kind
        self._own_keys = [keys.offers(kind, node_id), keys.bus]
        self._offer = redis.register_script(scripts.OFFER)
        self._withdraw = redis.register_script(scripts.WITHDRAW)
        self.local: set[str] = set()
        """What this node offers."""
        self._nodes: dict[str, set[str]] = {}
        """name -> the other nodes offering it (never empty sets)."""
        self._by_node: dict[str, set[str]] = {}
        """node -> the names it offers (the same facts, the other way round)."""
        self._pending: dict[str, bool] = {}
        self._wake = asyncio.Event()
        self._during_load: list[tuple[bool, str, str]] | None = None
        self._loading = asyncio.Lock()

    # -- this node's offers --------------------------------------------------------------

    def offer(self, name: str) -> None:
        self.local.add(name)
        self._set(name, True)

    def withdraw(self, name: str) -> None:
        self.local.discard(name)
        self._set(name, False)

    def offer_again(self) -> None:
        """Write every local offer again (Redis may have lost them: registered again)."""
        for name in self.local:
            self._set(name, True)

    def _set(self, name: str, offered: bool) -> None:
        self._pending.pop(name, None)  # re-insert at the end: changes apply in order
        self._pending[name] = offered
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Apply pending changes in order until cancelled; retry while Redis is away."""
        delay = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                name, offered = next(iter(self._pending.items()))
                script = self._offer if offered else self._withdraw
                try:
                    await script(keys=self._own_keys, args=[name, self.kind, self.node_id])
                except Exception as exc:
                    _throttled.warning(
                        "cluster %s directory: cannot reach Redis (%s); retrying", self.kind, exc
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.1
                if self._pending.get(name) is offered:  # unchanged meanwhile: done
                    del self._pending[name]

    # -- the other nodes' offers ---------------------------------------------------------

    def nodes(self, name: str) -> set[str]:
        """The other nodes that offer ``name``."""
        return self._nodes.get(name, _EMPTY)

    def names(self) -> Collection[str]:
        """Names some other node offers."""
        return self._nodes.keys()

    def offered_by(self, node: str) -> Collection[str]:
        """The names ``node`` (another node) offers."""
        return self._by_node.get(node, _EMPTY)

    def known_nodes(self) -> set[str]:
        return set(self._by_node)

    def notice(self, offered: bool, name: str, node: str) -> None:
        """``[kind+/-, name, node]`` from the bus."""
        if node == self.node_id:
            return
        if self._during_load is not None:
            self._during_load.append((offered, name, node))
        self._apply(offered, name, node)

    def _apply(self, offered: bool, name: str, node: str) -> None:
        if offered:
            self._nodes.setdefault(name, set()).add(node)
            self._by_node.setdefault(node, set()).add(name)
            return
        nodes = self._nodes.get(name)
        if nodes is not None:
            nodes.discard(node)
            if not nodes:
                del self._nodes[name]
        names = self._by_node.get(node)
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_node[node]

    def forget(self, node: str) -> None:
        """``node`` is dead: none of its offers stands."""
        for name in self._by_node.pop(node, ()):
            nodes = self._nodes[name]
            nodes.discard(node)
            if not nodes:
                del self._nodes[name]

    async def load(self) -> None:
        """Read every other member's offers from Redis, replacing the mirror."""
        async with self._loading:
            await self._load()

    async def _load(self) -> None:
        during: list[tuple[bool, str, str]] = []
        self._during_load = during
        try:
            members = [m.decode() for m in await self._redis.smembers(self._keys.members)]
            others = [m for m in members if m != self.node_id]
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in others:
                    pipe.smembers(self._keys.offers(self.kind, member))
                sets = await pipe.execute()
        finally:
            self._during_load = None
        self._nodes.clear()
        self._by_node.clear()
        for member, names in zip(others, sets, strict=True):
            for raw in names:
                self._apply(True, raw.decode(), member)
        for offered, name, node in during:
            self._apply(offered, name, node)


_EMPTY: set[str] = set()
