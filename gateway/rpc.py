"""Remote procedure calls: route each REQUEST to one provider and its answers back.

The provider sees a server-issued correlation id, not the requester's, so two requesters that
pick the same id never collide, and a connection can only answer requests actually sent to it.

Lifecycle of a request: sent to a random provider, which must accept it within ``ack_timeout``
and answer within ``response_timeout``, both counted from that send. ACCEPT stops the first;
RESPONSE or REQUEST_ERROR completes it; REJECT,
or the provider disconnecting before it accepted, moves it to a provider not yet tried, else
NO_RPC_PROVIDER. A provider that disconnects after accepting can no longer answer: the requester
gets RESPONSE_TIMEOUT at once. A requester that disconnects leaves its requests to finish or time
out; their answers are dropped silently because its socket is closed.

Deadlines cost no timer per request: both timeouts are the same for every request, so requests
in the order they were (last) sent to a provider are also in the order of their deadlines.
``_requests`` keeps that order (a rerouted request moves to the end) and ``_unaccepted`` the
same order for those not accepted yet; one loop timer, armed for the earliest deadline, fails
what is due from the front of each and re-arms for the next.

On a cluster node (``cluster`` set, ``gateway.cluster.rpc``) another node that provides the
name is a provider too, chosen only when no local provider is left untried: the request goes
there as to a connection (a ``Peer``), that node routes it among its own providers (never
onward) and answers as a provider would. From such a node NO_RPC_PROVIDER means "all mine
rejected" (try the next), REJECT means "one of mine rejected, another has it" (deadlines
restart), ACCEPT_TIMEOUT / RESPONSE_TIMEOUT end the request. This node keeps the deadlines of
the requests its own clients made, so a node that dies or a lost message costs a timeout,
never a hang.

The messages of a request's life (REQUEST to the provider, ACCEPT, RESPONSE and the errors
to the requester) are encoded from parts made once per request: each ends with the same
correlation id and name fields (``_Request.to_requester``, ``name_field``), so no ``Message``
is built and no schema walked for them.

Invariant: ``_requests[id].provider`` holds ``id`` in ``_assigned[provider]`` and vice versa.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from collections.abc import Collection
from typing import Protocol

from .connection import Connection
from .exceptions import InvalidJSON, LimitExceeded
from .handler import Peer, unknown_action
from .protocol import Message, RpcAction, Topic, payload
from .protocol.codec import SCHEMAS, encode_field, encode_frame, encode_payload
from .subscriptions import SubscriptionRegistry

__all__ = ["Peer", "RpcCluster", "RpcHandler", "RpcPeer"]

log = logging.getLogger(__name__)

_ANSWERS = frozenset(
    {RpcAction.ACCEPT, RpcAction.REJECT, RpcAction.RESPONSE, RpcAction.REQUEST_ERROR}
)
# Read for every message: an enum member read from its class costs ~5x a module global.
_RPC = Topic.RPC
_REQUEST, _ACCEPT, _REJECT = RpcAction.REQUEST, RpcAction.ACCEPT, RpcAction.REJECT


class RpcPeer(Peer, Protocol):
    """A requester or provider of RPCs; it also takes RPC messages already encoded."""

    def send_frame(self, frame: bytes) -> None: ...


class RpcCluster(Protocol):
    """The other nodes of a cluster as providers (``gateway.cluster.rpc``)."""

    def provider(self, name: str, tried: Collection[RpcPeer]) -> RpcPeer | None:
        """A node providing ``name`` not in ``tried``, or None; raises LimitExceeded when
        no further request may go to another node."""


def _message(
    action: int, name: str, correlation_id: str | None, data: str | None = None
) -> Message:
    """Every RPC message of a request's life carries its name and a correlation id."""
    return Message(Topic.RPC, action, name=name, correlation_id=correlation_id, data=data)


def _error(action: int, about: int, name: str | None, correlation_id: str | None) -> Message:
    """An error about a request message (action ``about``), routed back by its name and
    correlation id."""
    return Message(
        Topic.RPC,
        action,
        name=name,
        correlation_id=correlation_id,
        original_action=about,
        is_error=True,
    )


def _limited(name: str, correlation_id: str | None, exc: LimitExceeded) -> Message:
    """REQUEST_ERROR naming the limit that kept a request from another node's provider."""
    return _message(RpcAction.REQUEST_ERROR, name, correlation_id, json.dumps(str(exc)))


_FIELD = {attr: number for number, attr, _ in SCHEMAS[Topic.RPC]}
_DATA, _CORRELATION_ID, _NAME = _FIELD["data"], _FIELD["correlation_id"], _FIELD["name"]
_ACTION_FIELD: dict[int, bytes] = {
    action: encode_payload(Message(Topic.RPC, action)) for action in RpcAction
}


_NAME_FIELDS: dict[str, bytes] = {}
"""The name field of the names requested lately: clients call the same few names over and
over, and each request's messages end with it."""
MAX_NAME_FIELDS = 1024
MAX_CACHED_NAME = 256
"""Longer names are encoded per request: the cache holds at most ``MAX_NAME_FIELDS`` of these
(under a megabyte), whatever ``limits.max_name_length`` allows a name to be."""


def _name_field(name: str) -> bytes:
    if len(name) > MAX_CACHED_NAME:
        return encode_field(_NAME, name)
    field = _NAME_FIELDS.get(name)
    if field is None:
        if len(_NAME_FIELDS) >= MAX_NAME_FIELDS:
            _NAME_FIELDS.clear()  # a client asking for ever new names: start over, bounded
        field = _NAME_FIELDS[name] = encode_field(_NAME, name)
    return field


def _data_field(data: str | None) -> bytes:
    """The data field of an RPC message's payload, b"" for none."""
    return b"" if data is None else encode_field(_DATA, data)


def _frame(action: int, tail: bytes, data_field: bytes = b"") -> bytes:
    """The RPC message ``action`` with data ``data_field`` (``_data_field``), ending with
    ``tail`` (a request's correlation id and name fields): what ``encode(_message(...))``
    gives, fields in schema order (action 1, data 2, correlation id 3, name 7)."""
    return encode_frame(_RPC, _ACTION_FIELD[action] + data_field + tail)


class _Request:
    __slots__ = (
        "correlation_id",
        "data_field",
        "from_node",
        "id",
        "name",
        "name_field",
        "provider",
        "requester",
        "sent",
        "to_requester",
        "tried",
    )

    def __init__(
        self,
        id: str,
        name: str,
        correlation_id: str | None,
        data_field: bytes,
        requester: RpcPeer,
        provider: RpcPeer,
        from_node: bool = False,
    ) -> None:
        self.id = id
        self.name = name
        self.correlation_id = correlation_id
        self.data_field = data_field  # the request's data, encoded (``_data_field``)
        self.requester = requester
        self.provider = provider
        self.sent = 0.0  # when it was sent to ``provider``: the deadlines count from here
        self.tried: tuple[RpcPeer, ...] = ()  # providers that had it before ``provider``
        self.name_field = _name_field(name)
        self.to_requester = self.name_field  # what ends each message to the requester
        if correlation_id is not None:
            self.to_requester = encode_field(_CORRELATION_ID, correlation_id) + self.name_field
        self.from_node = from_node  # requested by another node: local providers only


class RpcHandler:
    def __init__(
        self,
        *,
        ack_timeout: float,
        response_timeout: float,
        max_json_depth: int = payload.DEFAULT_MAX_DEPTH,
    ) -> None:
        self.max_json_depth = max_json_depth
        self.ack_timeout = ack_timeout
        self.response_timeout = response_timeout
        self.providers = SubscriptionRegistry(duplicate_action=RpcAction.MULTIPLE_PROVIDERS)
        self._requests: dict[str, _Request] = {}  # by when sent to their provider
        self._unaccepted: dict[str, _Request] = {}  # the same order
        self._assigned: dict[RpcPeer, set[str]] = {}
        self._ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None  # at the earliest deadline, if any
        self._loop: asyncio.AbstractEventLoop | None = None  # the server's, from the first request
        self.cluster: RpcCluster | None = None
        """Set on a cluster node: the other nodes' providers (``gateway.cluster.rpc``)."""

    def handle(self, conn: Connection, msg: Message) -> None:
        action = msg.action
        if action in _ANSWERS:
            data = msg.data
            self._answer(conn, action, msg.name, msg.correlation_id, data, _data_field(data))
        elif action == _REQUEST:
            data = msg.data
            self._request(conn, msg.name, msg.correlation_id, data, _data_field(data))
        elif action == RpcAction.PROVIDE or action == RpcAction.UNPROVIDE:
            self.providers.bulk(conn, msg, msg.names, subscribe=action == RpcAction.PROVIDE)
        else:
            conn.send(unknown_action(msg, RpcAction.ERROR))

    def received(
        self,
        conn: Connection,
        action: int,
        name: str,
        correlation_id: str,
        data: str | None,
        data_field: bytes,
    ) -> None:
        """A client's REQUEST, ACCEPT or RESPONSE read from its frame (``decode_rpc``, which
        gives these fields): what ``handle`` does with the same message decoded."""
        if action == _REQUEST:
            self._request(conn, name, correlation_id, data, data_field)
        else:
            self._answer(conn, action, name, correlation_id, data, data_field)

    def from_node(self, node: RpcPeer, msg: Message) -> None:
        """A message from another node of the cluster (``node`` answers to it)."""
        action = msg.action
        data = msg.data
        if action == RpcAction.REQUEST:
            self._request(node, msg.name, msg.correlation_id, data, _data_field(data), True)
            return
        request = self._requests.get(msg.correlation_id or "")
        if request is None or request.provider is not node:
            return  # answered or timed out here already
        if action == RpcAction.NO_RPC_PROVIDER:  # every provider there rejected
            self._reroute(request)
        elif action == RpcAction.REJECT:  # handed to another provider there: deadlines restart
            self._release(request)
            self._track(request, node)
        elif action == RpcAction.ACCEPT_TIMEOUT or action == RpcAction.RESPONSE_TIMEOUT:
            self._fail(request, action)
        elif action in _ANSWERS:
            self._answer(node, action, msg.name, msg.correlation_id, data, _data_field(data))

    def on_disconnect(self, conn: Connection) -> None:
        self.providers.remove_connection(conn)
        self.provider_gone(conn)

    def provider_gone(self, provider: RpcPeer) -> None:
        """``provider`` (a connection, or a node of the cluster that died) answers no more:
        what it had not accepted moves on, what it had accepted times out now."""
        for request_id in list(self._assigned.get(provider, ())):
            request = self._requests[request_id]
            if request_id not in self._unaccepted:
                self._fail(request, RpcAction.RESPONSE_TIMEOUT)
            else:
                self._reroute(request)

    def open_at(self, provider: RpcPeer) -> int:
        """Requests open at ``provider``."""
        return len(self._assigned.get(provider, ()))

    # -- requests ------------------------------------------------------------------------

    def _request(
        self,
        conn: RpcPeer,
        name: str | None,
        correlation_id: str | None,
        data: str | None,
        data_field: bytes,
        from_node: bool = False,
    ) -> None:
        """A REQUEST (``data_field``: its data, encoded) from a client, or from another node."""
        if name is None or not self._forwardable(data):
            conn.send(_error(RpcAction.INVALID_MESSAGE_DATA, _REQUEST, name, correlation_id))
            return
        providers: Collection[RpcPeer] = self.providers.subscribers(name)
        if not providers:
            provider = None
            if not from_node and self.cluster is not None:
                try:
                    provider = self.cluster.provider(name, ())
                except LimitExceeded as exc:
                    conn.send(_limited(name, correlation_id, exc))
                    return
            if provider is None:
                conn.send(_message(RpcAction.NO_RPC_PROVIDER, name, correlation_id))
                return
        elif len(providers) == 1:
            (provider,) = providers
        else:
            provider = random.choice(list(providers))
        request = _Request(
            str(next(self._ids)), name, correlation_id, data_field, conn, provider, from_node
        )
        self._send_to(request, provider)

    def _send_to(self, request: _Request, provider: RpcPeer) -> None:
        """(Re)start the provider leg: both deadlines count from here, as in the reference."""
        self._track(request, provider)
        to_provider = encode_field(_CORRELATION_ID, request.id) + request.name_field
        provider.send_frame(_frame(_REQUEST, to_provider, request.data_field))

    def _track(self, request: _Request, provider: RpcPeer) -> None:
        """Assign ``request`` to ``provider`` with deadlines counted from now."""
        request.provider = provider
        loop = self._loop
        if loop is None:  # kept: asking for the running loop is a getpid() call (Python < 3.12)
            loop = self._loop = asyncio.get_running_loop()
        request.sent = loop.time()
        request_id = request.id
        self._requests[request_id] = self._unaccepted[request_id] = request  # at the end
        assigned = self._assigned.get(provider)
        if assigned is None:
            self._assigned[provider] = {request_id}
        else:
            assigned.add(request_id)
        if self._timer is None:  # else it is due no later than this request's deadlines
            self._arm()

    def _arm(self) -> None:
        """Set the timer for the earliest deadline of the requests open, if any."""
        due: float | None = None
        for pending, timeout in (
            (self._unaccepted, self.ack_timeout),
            (self._requests, self.response_timeout),
        ):
            first = next(iter(pending.values()), None)
            if first is not None and (due is None or first.sent + timeout < due):
                due = first.sent + timeout
        self._timer = None if due is None else asyncio.get_running_loop().call_at(due, self._due)

    def _due(self) -> None:
        """Fail the requests whose deadline has come, oldest first; re-arm for the next."""
        now = asyncio.get_running_loop().time()
        for pending, timeout, action in (
            (self._unaccepted, self.ack_timeout, RpcAction.ACCEPT_TIMEOUT),
            (self._requests, self.response_timeout, RpcAction.RESPONSE_TIMEOUT),
        ):
            while pending:
                request = next(iter(pending.values()))
                if request.sent + timeout > now:
                    break
                self._fail(request, action)
        self._arm()

    def _answer(
        self,
        conn: RpcPeer,
        action: int,
        name: str | None,
        correlation_id: str | None,
        data: str | None,
        data_field: bytes,
    ) -> None:
        """An answer (``_ANSWERS``) to a request this node sent ``conn``."""
        request = self._requests.get(correlation_id or "")
        if request is None or request.provider is not conn:
            error = RpcAction.INVALID_RPC_CORRELATION_ID
            conn.send(_error(error, action, name, correlation_id))
            return
        if action == _ACCEPT:
            if self._unaccepted.pop(request.id, None) is None:
                conn.send(_message(RpcAction.MULTIPLE_ACCEPT, request.name, request.id))
                return
            request.requester.send_frame(_frame(_ACCEPT, request.to_requester))
        elif action == _REJECT:
            self._reroute(request)
        elif not self._forwardable(data):  # the request stays open for a good answer
            conn.send(_error(RpcAction.INVALID_MESSAGE_DATA, action, name, correlation_id))
        else:  # RESPONSE or REQUEST_ERROR
            self._release(request)
            request.requester.send_frame(_frame(action, request.to_requester, data_field))

    def _forwardable(self, data: str | None) -> bool:
        """Whether ``data`` is JSON the other side's client can parse, or absent
        (``payload.check``, whose call this saves on every request and answer)."""
        if data is None:
            return True
        try:
            payload.loads(data, max_depth=self.max_json_depth)
        except InvalidJSON:
            return False
        return True

    def _reroute(self, request: _Request) -> None:
        """Hand ``request`` to a provider not tried yet (this node's first), else answer
        NO_RPC_PROVIDER."""
        self._release(request)
        request.tried += (request.provider,)
        untried = [p for p in self.providers.subscribers(request.name) if p not in request.tried]
        if untried:
            if request.from_node:  # tell the requester's node: its deadlines restart
                request.requester.send(
                    _message(RpcAction.REJECT, request.name, request.correlation_id)
                )
            self._send_to(request, random.choice(untried))
            return
        if not request.from_node and self.cluster is not None:
            try:
                remote = self.cluster.provider(request.name, request.tried)
            except LimitExceeded as exc:
                request.requester.send(_limited(request.name, request.correlation_id, exc))
                return
            if remote is not None:
                self._send_to(request, remote)
                return
        self._fail(request, RpcAction.NO_RPC_PROVIDER)

    def _fail(self, request: _Request, action: int) -> None:
        self._release(request)
        self._to_requester(request, action)

    def _release(self, request: _Request) -> None:
        """Detach ``request`` from its provider and its deadlines (it is open no more)."""
        self._requests.pop(request.id, None)
        self._unaccepted.pop(request.id, None)
        assigned = self._assigned.get(request.provider)
        if assigned is not None:
            assigned.discard(request.id)
            if not assigned:
                del self._assigned[request.provider]

    def _to_requester(self, request: _Request, action: int) -> None:
        request.requester.send_frame(_frame(action, request.to_requester))
