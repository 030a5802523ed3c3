"""RPC across nodes: the other nodes as providers (``gateway.rpc.RpcCluster``).

A node's first local provider of a name offers it in the ``rpc`` directory, its last one
withdraws it; every node mirrors which other nodes provide what. When no local provider is
left untried, ``RpcHandler`` asks ``provider`` for a node: a ``NodePeer`` stands for it, and
what the handler sends to the peer (a REQUEST, or answers to a request that node made) goes
to that node's own channel as ``["r", origin, action, name, correlation id, data]``; what
arrives there reaches the handler's ``from_node`` from the sender's peer.

Bounds: at most ``cluster.max_remote_rpcs`` requests of this node's clients are open at other
nodes at once, and at most as many requests of other nodes are held here; past either the
client gets REQUEST_ERROR naming the limit (counted in ``/metrics``). A request held here ends
with one of ``_FINAL`` sent back (this node's deadlines see to that) or with its node's death.
A node only routes to peers while its heartbeat reaches Redis: a node cut off from Redis
answers from its own providers or NO_RPC_PROVIDER rather than sending requests into a queue
that may never drain.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Collection
from typing import Any

from ..exceptions import LimitExceeded
from ..limits import LimitTrips, ThrottledLog
from ..protocol import Message, RpcAction, Topic, decode
from ..rpc import RpcHandler, RpcPeer
from .bus import Bus
from .directory import Directory
from .keys import Keys

__all__ = ["ClusterRpc", "NodePeer"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

LIMIT = "cluster.max_remote_rpcs"

_FINAL = frozenset(
    {
        RpcAction.RESPONSE,
        RpcAction.REQUEST_ERROR,
        RpcAction.NO_RPC_PROVIDER,
        RpcAction.ACCEPT_TIMEOUT,
        RpcAction.RESPONSE_TIMEOUT,
        RpcAction.INVALID_MESSAGE_DATA,
    }
)
"""Answers that end a request another node made here."""


class NodePeer:
    """Another node, as the provider or the requester of RPCs."""

    __slots__ = ("_bus", "_channel", "_held", "_origin", "node_id")

    def __init__(
        self, bus: Bus, channel: str, origin: str, node_id: str, held: set[tuple[str, str]]
    ) -> None:
        self._bus = bus
        self._channel = channel
        self._origin = origin
        self.node_id = node_id
        self._held = held
        """(node, correlation id) of the requests other nodes made here (``ClusterRpc``)."""

    def send(self, msg: Message) -> None:
        if msg.action in _FINAL and msg.correlation_id is not None:
            self._held.discard((self.node_id, msg.correlation_id))
        self._bus.publish(
            ["r", self._origin, msg.action, msg.name, msg.correlation_id, msg.data], self._channel
        )

    def send_frame(self, frame: bytes) -> None:
        """An RPC message the handler encoded for a connection: sent as ``send`` sends it."""
        self.send(decode(frame))

    def __repr__(self) -> str:
        return f"<node {self.node_id}>"


class ClusterRpc:
    def __init__(
        self,
        bus: Bus,
        directory: Directory,
        keys: Keys,
        node_id: str,
        *,
        max_remote: int,
        connected: Callable[[], bool],
    ) -> None:
        self._bus = bus
        self.directory = directory
        self._keys = keys
        self.node_id = node_id
        self.max_remote = max_remote
        self._connected = connected
        self._peers: dict[str, NodePeer] = {}
        self._held: set[tuple[str, str]] = set()
        self.handler: RpcHandler | None = None
        self.trips = LimitTrips()

    def serve(self, handler: RpcHandler, trips: LimitTrips) -> None:
        """Route ``handler``'s requests to other nodes, and offer its providers to them."""
        self.handler = handler
        self.trips = trips
        handler.cluster = self
        handler.providers.on_first = self.directory.offer
        handler.providers.on_last = self.directory.withdraw

    # -- RpcCluster ----------------------------------------------------------------------

    def provider(self, name: str, tried: Collection[RpcPeer]) -> RpcPeer | None:
        nodes = self.directory.nodes(name)
        if not nodes or not self._connected():
            return None
        untried = [node for node in nodes if self.peer(node) not in tried]
        if not untried:
            return None
        if self.remote_open >= self.max_remote:
            self.trips.trip(LIMIT)
            _throttled.warning("%s (%d) reached: a request was refused", LIMIT, self.max_remote)
            raise LimitExceeded(LIMIT, "too many requests open at other nodes")
        return self.peer(random.choice(untried))

    @property
    def remote_open(self) -> int:
        """Requests of this node open at other nodes."""
        handler = self.handler
        if handler is None:
            return 0
        return sum(handler.open_at(peer) for peer in self._peers.values())

    # -- the other nodes -----------------------------------------------------------------

    def peer(self, node_id: str) -> NodePeer:
        peer = self._peers.get(node_id)
        if peer is None:
            channel = self._keys.node_channel(node_id)
            peer = NodePeer(self._bus, channel, self.node_id, node_id, self._held)
            self._peers[node_id] = peer
        return peer

    def peers(self) -> set[str]:
        """Nodes this node exchanged RPCs with (and may hold requests of)."""
        return set(self._peers)

    def received(self, message: list[Any]) -> None:
        """``["r", origin, action, name, correlation id, data]`` sent to this node."""
        if len(message) != 6 or self.handler is None:
            return
        _, origin, action, name, correlation_id, data = message
        if not (
            isinstance(origin, str)
            and isinstance(action, int)
            and isinstance(name, str)
            and isinstance(correlation_id, str)
            and (data is None or isinstance(data, str))
        ):
            return
        peer = self.peer(origin)
        if action == RpcAction.REQUEST:
            if len(self._held) >= self.max_remote:
                self._refuse(peer, name, correlation_id)
                return
            self._held.add((origin, correlation_id))
        msg = Message(Topic.RPC, action, name=name, correlation_id=correlation_id, data=data)
        self.handler.from_node(peer, msg)

    @property
    def held(self) -> int:
        """Requests of other nodes held here."""
        return len(self._held)

    def _refuse(self, peer: NodePeer, name: str, correlation_id: str) -> None:
        self.trips.trip(LIMIT)
        _throttled.warning(
            "%s (%d) reached: a request from %r was refused", LIMIT, self.max_remote, peer
        )
        reason = str(LimitExceeded(LIMIT, "too many requests of other nodes held here"))
        peer.send(
            Message(
                Topic.RPC,
                RpcAction.REQUEST_ERROR,
                name=name,
                correlation_id=correlation_id,
                data=json.dumps(reason),
            )
        )

    def gone(self, node_id: str) -> None:
        """``node_id`` is dead: its providers are chosen no more; what it held moves on or
        times out now."""
        self.directory.forget(node_id)
        peer = self._peers.pop(node_id, None)
        if peer is not None and self.handler is not None:
            self.handler.provider_gone(peer)
        for key in [key for key in self._held if key[0] == node_id]:
            self._held.discard(key)  # its answers go nowhere; this node's deadlines end them
