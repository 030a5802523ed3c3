"""Listening across nodes, for one topic: ``gateway.listen.ListenCluster``.

- Patterns: a node's first listener of a pattern offers it in the topic's directory (``le`` /
  ``lr``), its last withdraws it; every node mirrors the others' patterns and matches names
  against them as against its own.
- Wanted names: a name with subscribers on a node that some pattern anywhere matches is
  *wanted* there: script ``WANT`` adds it to the node's set and counts the nodes, and returns
  the name's coordinator, the first node that wanted it. Only the coordinator searches (over
  every node's listeners) and holds the provider, so there is one provider per name
  cluster-wide. ``UNWANT`` counts down; at 0 it removes the coordinator, which this node then
  tells (``["lv", origin, topic, name]``) or is itself: the provider hears
  SUBSCRIPTION_FOR_PATTERN_REMOVED. The coordinator stays while anyone anywhere subscribes,
  whether or not it still has subscribers itself.
- Messages between a coordinator and the node of a listener go to the node's own channel as
  ``["ls", origin, topic, action, pattern, name]`` (``ListenPeer``), and reach the registry's
  ``from_node``. Those sent while the receiver's bus is away are lost: a node whose bus
  subscribed again asks its own searches again and, if it listens, tells every node
  (``["lh", origin, topic]``), whose searches waiting on it ask it again. Asking twice is
  harmless: a node searching already goes on, one providing accepts at once.
- A dead node (every node's own sweep): its patterns are dropped, what it was asked or
  provided is searched again, and each survivor that wants a name it coordinated runs
  ``TAKE_OVER``: the first becomes the coordinator and searches again (a listener already
  providing the name on a surviving node accepts at once). Its provider, if it coordinated for
  another node that died, hears REMOVED.
- Records: the coordinator's word on a provider found or lost is kept in Redis and announced
  on the bus by script ``PROVIDED`` (``["lp", origin, topic, name, has_provider]``); nodes
  that want the name tell their record subscribers SUBSCRIPTION_HAS_(NO_)PROVIDER and
  remember it for later ones; a node that wants the name later reads it in ``WANT``'s answer.
- Changes to Redis wait in an ordered map name -> operation, applied in order by one task that
  retries while Redis is away: meanwhile no new name is offered (never two providers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import re2

from ..config import LimitsConfig
from ..exceptions import InvalidData
from ..handler import Peer
from ..limits import ThrottledLog
from ..listen import ListenRegistry, compile_pattern
from ..protocol import Message, Topic
from . import scripts
from .bus import Bus
from .directory import Directory
from .keys import Keys

__all__ = ["ClusterListen", "ListenPeer"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

_WANT, _UNWANT = "want", "unwant"


class ListenPeer:
    """Another node, as a listen coordinator or as the node of listeners, for one topic."""

    __slots__ = ("_bus", "_channel", "_origin", "_topic", "node_id")

    def __init__(self, bus: Bus, channel: str, origin: str, topic: int, node_id: str) -> None:
        self._bus = bus
        self._channel = channel
        self._origin = origin
        self._topic = topic
        self.node_id = node_id

    def send(self, msg: Message) -> None:
        self._bus.publish(
            ["ls", self._origin, self._topic, msg.action, msg.name, msg.subscription],
            self._channel,
        )

    def __repr__(self) -> str:
        return f"<node {self.node_id}>"


class ClusterListen:
    def __init__(
        self,
        redis: Any,
        bus: Bus,
        keys: Keys,
        node_id: str,
        topic: Topic,
        *,
        limits: LimitsConfig,
    ) -> None:
        self.topic = topic
        self.letter = "r" if topic == Topic.RECORD else "e"
        self._redis = redis
        self._bus = bus
        self._keys = keys
        self.node_id = node_id
        self._limits = limits
        self.directory = Directory(redis, keys, node_id, "l" + self.letter)
        self._want = redis.register_script(scripts.WANT)
        self._unwant = redis.register_script(scripts.UNWANT)
        self._take_over = redis.register_script(scripts.TAKE_OVER)
        self._provided_script = redis.register_script(scripts.PROVIDED)
        self._own_keys = [
            keys.wanted(self.letter, node_id),
            keys.wanted_counts(self.letter),
            keys.coordinators(self.letter),
            keys.provided(self.letter),
        ]
        self._flag_keys = [keys.provided(self.letter), keys.bus]
        self.registry: ListenRegistry | None = None
        self._peers: dict[str, ListenPeer] = {}
        self._regexes: dict[str, re2._Regexp | None] = {}
        """Other nodes' patterns, compiled (None: refused by this node's limits)."""
        self._wanted: dict[str, str] = {}
        """Names wanted here (in Redis) -> their coordinator."""
        self._coordinated: set[str] = set()
        self._provided: set[str] = set()
        """Records subscribed here that another node's coordinator said have a provider."""
        self._pending: dict[str, str] = {}
        """name -> the operation waiting for Redis: want, unwant, or the dead coordinator
        to take over from."""
        self._flags: dict[str, bool] = {}
        """Records coordinated here whose provider was found or lost, for ``PROVIDED``."""
        self._wake = asyncio.Event()
        self._checks: set[asyncio.Task[None]] = set()

    def serve(self, registry: ListenRegistry) -> None:
        self.registry = registry
        registry.cluster = self

    # -- ListenCluster -------------------------------------------------------------------

    def offers(self, name: str) -> list[tuple[Peer, str]]:
        found: list[tuple[Peer, str]] = []
        for pattern in self.directory.names():
            regex = self._regex(pattern)
            if regex is not None and regex.search(name):
                found += [(self.peer(node), pattern) for node in self.directory.nodes(pattern)]
        return found

    def listening(self, node: Peer, pattern: str) -> bool:
        return isinstance(node, ListenPeer) and node.node_id in self.directory.nodes(pattern)

    def coordinates(self, name: str) -> bool:
        return name in self._coordinated

    def coordinated(self) -> Iterable[str]:
        return self._coordinated

    def subscribed(self, name: str) -> None:
        pending = self._pending.get(name)
        if pending != _UNWANT and (pending is not None or name in self._wanted):
            return  # wanted already, or about to be
        if self._matched(name):  # else no listener anywhere: Redis never hears of it
            self._queue(name, _WANT)

    def unsubscribed(self, name: str) -> None:
        self._provided.discard(name)
        if name in self._wanted or name in self._pending:
            self._queue(name, _UNWANT)

    def provided(self, name: str, has_provider: bool) -> None:
        self._flags.pop(name, None)
        self._flags[name] = has_provider
        self._wake.set()

    def provided_elsewhere(self, name: str) -> bool:
        return name in self._provided

    def listeners_elsewhere(self) -> bool:
        return bool(self.directory.names())

    def listened(self, pattern: str, listening: bool) -> None:
        if listening:
            self.directory.offer(pattern)
        else:
            self.directory.withdraw(pattern)

    # -- the other nodes -----------------------------------------------------------------

    def peer(self, node_id: str) -> ListenPeer:
        peer = self._peers.get(node_id)
        if peer is None:
            channel = self._keys.node_channel(node_id)
            peer = ListenPeer(self._bus, channel, self.node_id, self.topic, node_id)
            self._peers[node_id] = peer
        return peer

    def known(self) -> set[str]:
        """Nodes this node deals with: their death matters here."""
        return self.directory.known_nodes() | set(self._peers) | set(self._wanted.values())

    def notice(self, listening: bool, pattern: str, node: str) -> None:
        """``[l?+/-, pattern, node]`` from the bus."""
        self.directory.notice(listening, pattern, node)
        if listening and node != self.node_id:
            self._offer_names(pattern, node)

    def _offer_names(self, pattern: str, node: str) -> None:
        regex = self._regex(pattern)
        if regex is not None and self.registry is not None:
            self.registry.remote_listener(self.peer(node), pattern, regex)

    async def load(self) -> None:
        """Re-read the other nodes' patterns; offer names to the ones new here."""
        before = {(p, n) for p in self.directory.names() for n in self.directory.nodes(p)}
        await self.directory.load()
        for pattern in list(self.directory.names()):
            for node in list(self.directory.nodes(pattern)):
                if (pattern, node) not in before:
                    self._offer_names(pattern, node)

    async def verify(self) -> None:
        """Messages to this node may have been lost (the bus subscribed again): names it
        coordinates that no node wants any more end (a lost ``lv``), searches waiting on
        another node ask it again and names nobody provides are searched again (a lost
        answer), the nodes providing names for it are asked again (a lost REMOVED from
        them), the coordinators of names provided here are told again (a lost REMOVED from
        them), and, if it listens, every node hears so (``["lh", origin, topic]``): a
        coordinator asks it again what it asked meanwhile (a lost offer)."""
        registry = self.registry
        if registry is None:
            return
        await self._end_unwanted()
        registry.reask()
        registry.reconfirm()
        registry.reannounce()
        if self.directory.local:
            self._bus.publish(["lh", self.node_id, self.topic])

    def dropped(self) -> None:
        """Messages this node sent may have been dropped (its bus queue was full): it asks
        its searches again and tells its coordinators again what it provides, and every
        node hears so (``["ld", origin, topic]``) and checks what it holds with this node."""
        registry = self.registry
        if registry is None:
            return
        self._bus.publish(["ld", self.node_id, self.topic])
        registry.reask()
        registry.reannounce()

    async def _end_unwanted(self) -> None:
        """Names coordinated here that no node wants any more end (a lost ``lv``)."""
        names = list(self._coordinated)
        counts_key = self._keys.wanted_counts(self.letter)
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            counts = await self._redis.hmget(counts_key, chunk)
            for name, count in zip(chunk, counts, strict=True):
                if count is None and name in self._coordinated and name not in self._pending:
                    self._coordinated.discard(name)
                    if self.registry is not None:
                        self.registry.vacated(name)

    def received(self, message: list[Any]) -> None:
        """``["ls", origin, topic, action, pattern, name]``, ``["lv", origin, topic, name]``,
        ``["lp", origin, topic, name, has_provider]`` or ``["lh", origin, topic]``."""
        registry = self.registry
        if registry is None:
            return
        if message[0] == "lh":
            if isinstance(message[1], str) and message[1] != self.node_id:
                self._returned(message[1])
            return
        if message[0] == "ld":
            if isinstance(message[1], str) and message[1] != self.node_id:
                self._lost_from(message[1])
            return
        if message[0] == "lp":
            if len(message) == 5 and isinstance(message[3], str):
                self._provider_notice(message[3], message[4] is True)
            return
        if message[0] == "lv":
            name = message[3] if len(message) == 4 else None
            if isinstance(name, str) and name in self._coordinated:
                self._coordinated.discard(name)
                registry.vacated(name)
            return
        if len(message) != 6:
            return
        _, origin, _, action, pattern, name = message
        if not (
            isinstance(origin, str)
            and isinstance(action, int)
            and (pattern is None or isinstance(pattern, str))
            and isinstance(name, str)
        ):
            return
        msg = Message(self.topic, action, name=pattern, subscription=name)
        registry.from_node(self.peer(origin), msg)

    def _returned(self, node: str) -> None:
        """``node``'s bus subscribed again: ask it again, offer its patterns what nobody
        provides (``ListenRegistry.node_returned``)."""
        assert self.registry is not None
        patterns = [
            (pattern, regex)
            for pattern in self.directory.offered_by(node)
            if (regex := self._regex(pattern)) is not None
        ]
        self.registry.node_returned(self.peer(node), patterns)

    def _lost_from(self, node: str) -> None:
        """``node`` dropped messages it sent (``dropped``): ask it again what this node waits
        on it for or it provides here, tell it again what is provided here for it, and check
        which names coordinated here are still wanted (a dropped ``lv``)."""
        assert self.registry is not None
        self._returned(node)  # as if its bus had come back: it may have dropped an "lh" too
        self.registry.node_dropped(self.peer(node))
        if self._coordinated:
            task = asyncio.create_task(self._check_wanted())
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _check_wanted(self) -> None:
        try:
            await self._end_unwanted()
        except Exception as exc:  # checked again after the next resubscription
            _throttled.warning("cluster listening: cannot check wanted names (%s)", exc)

    def _provider_notice(self, name: str, has_provider: bool) -> None:
        registry = self.registry
        if registry is None or not registry.subscriptions.has_subscribers(name):
            return
        if name in self._coordinated:
            return  # told its own subscribers already
        if has_provider:
            self._provided.add(name)
        else:
            self._provided.discard(name)
        registry.tell_subscribers(name, has_provider=has_provider)

    def gone(self, node: str) -> None:
        """``node`` is dead: its listeners and what it coordinated move on."""
        self.directory.forget(node)
        peer = self._peers.pop(node, None)
        if peer is not None and self.registry is not None:
            self.registry.node_gone(peer)
        for name, coordinator in self._wanted.items():
            if coordinator == node and name not in self._pending:
                self._queue(name, node)

    def rejoin(self) -> None:
        """This node was presumed dead and reaped: its names were taken over or dropped.
        What it coordinated ends here (providers hear REMOVED), and every name wanted here
        is wanted again (the coordinator may be another node now)."""
        for name in list(self._coordinated):
            self._coordinated.discard(name)
            if self.registry is not None:
                self.registry.vacated(name)
        for name in list(self._wanted):
            self._queue(name, _WANT)
        self._wanted.clear()
        self.directory.offer_again()

    # -- Redis ---------------------------------------------------------------------------

    def _queue(self, name: str, op: str) -> None:
        self._pending.pop(name, None)  # re-insert at the end: changes apply in order
        self._pending[name] = op
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._flags)

    @property
    def coordinating(self) -> int:
        return len(self._coordinated)

    async def run(self) -> None:
        """Apply pending changes in order until cancelled; retry while Redis is away."""
        delay = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._flags:
                try:
                    if self._pending:  # wanted names first: they decide coordinators
                        await self._apply_pending()
                    else:
                        await self._apply_flag()
                except Exception as exc:
                    _throttled.warning("cluster listening: cannot reach Redis (%s); retrying", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.1

    async def _apply_pending(self) -> None:
        name, op = next(iter(self._pending.items()))
        result = await self._apply(name, op)
        if self._pending.get(name) == op:  # else changed meanwhile: the newer one runs next
            del self._pending[name]
            self._applied(name, op, result)

    async def _apply_flag(self) -> None:
        name, flag = next(iter(self._flags.items()))
        args = [name, "1" if flag else "0", self.node_id, self.topic]
        await self._provided_script(keys=self._flag_keys, args=args)
        if self._flags.get(name) is flag:
            del self._flags[name]

    async def _apply(self, name: str, op: str) -> Any:
        keys = self._own_keys
        if op == _WANT:
            coordinator, provided = await self._want(keys=keys, args=[name, self.node_id])
            if provided:  # the coordinator's word, as if just announced
                asyncio.get_running_loop().call_soon(self._provider_notice, _text(name), True)
            return coordinator
        if op == _UNWANT:
            return await self._unwant(keys=keys, args=[name])
        return await self._take_over(keys=[keys[0], keys[2]], args=[name, op, self.node_id])

    def _applied(self, name: str, op: str, result: Any) -> None:
        registry = self.registry
        if op == _UNWANT:
            count, coordinator = int(result[0]), _text(result[1])
            self._wanted.pop(name, None)
            if count > 0:
                return
            if coordinator == self.node_id:
                if name in self._coordinated:
                    self._coordinated.discard(name)
                    if registry is not None:
                        registry.vacated(name)
            elif coordinator:
                channel = self._keys.node_channel(coordinator)
                self._bus.publish(["lv", self.node_id, self.topic, name], channel)
            return
        coordinator = _text(result)
        if not coordinator:  # takeover of a name no longer wanted here
            self._wanted.pop(name, None)
            return
        self._wanted[name] = coordinator
        if coordinator == self.node_id and name not in self._coordinated:
            self._coordinated.add(name)
            if registry is not None:
                registry.coordinate(name)

    # -- patterns ------------------------------------------------------------------------

    def _matched(self, name: str) -> bool:
        if self.registry is not None and self.registry.matches(name):
            return True
        return any(
            (regex := self._regex(pattern)) is not None and regex.search(name)
            for pattern in self.directory.names()
        )

    def _regex(self, pattern: str) -> re2._Regexp | None:
        if pattern in self._regexes:
            return self._regexes[pattern]
        limits = self._limits
        try:
            regex: re2._Regexp | None = compile_pattern(
                pattern,
                max_length=limits.max_listen_pattern_length,
                max_size=limits.max_listen_pattern_size,
            )
        except InvalidData as exc:
            _throttled.warning("another node's listen pattern is refused here: %s", exc)
            regex = None
        if len(self._regexes) > 4 * len(self.directory.names()) + 1000:  # a bound
            self._regexes.clear()  # patterns no longer listened to: compile again as needed
        self._regexes[pattern] = regex
        return regex


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
