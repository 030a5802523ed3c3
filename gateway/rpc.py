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

Invariant: ``_requests[id].provider`` holds ``id`` in ``_assigned[provider]`` and vice versa.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random

from .connection import Connection
from .exceptions import InvalidJSON
from .handler import unknown_action
from .protocol import Message, RpcAction, Topic, payload
from .subscriptions import SubscriptionRegistry

__all__ = ["RpcHandler"]

log = logging.getLogger(__name__)

_ANSWERS = frozenset(
    {RpcAction.ACCEPT, RpcAction.REJECT, RpcAction.RESPONSE, RpcAction.REQUEST_ERROR}
)


def _message(
    action: int, name: str, correlation_id: str | None, data: str | None = None
) -> Message:
    """Every RPC message of a request's life carries its name and a correlation id."""
    return Message(Topic.RPC, action, name=name, correlation_id=correlation_id, data=data)


def _error(msg: Message, action: int) -> Message:
    """An error about request message ``msg``, routed back by its name and correlation id."""
    return Message(
        Topic.RPC,
        action,
        name=msg.name,
        correlation_id=msg.correlation_id,
        original_action=msg.action,
        is_error=True,
    )


class _Request:
    __slots__ = ("correlation_id", "data", "id", "name", "provider", "requester", "sent", "tried")

    def __init__(
        self,
        id: str,
        name: str,
        correlation_id: str | None,
        data: str | None,
        requester: Connection,
        provider: Connection,
    ) -> None:
        self.id = id
        self.name = name
        self.correlation_id = correlation_id
        self.data = data
        self.requester = requester
        self.provider = provider
        self.sent = 0.0  # when it was sent to ``provider``: the deadlines count from here
        self.tried: tuple[Connection, ...] = ()  # providers that had it before ``provider``


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
        self._assigned: dict[Connection, set[str]] = {}
        self._ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None  # at the earliest deadline, if any

    def handle(self, conn: Connection, msg: Message) -> None:
        action = msg.action
        if action in _ANSWERS:
            self._answer(conn, msg)
        elif action == RpcAction.REQUEST:
            self._request(conn, msg)
        elif action == RpcAction.PROVIDE or action == RpcAction.UNPROVIDE:
            self.providers.bulk(conn, msg, msg.names, subscribe=action == RpcAction.PROVIDE)
        else:
            conn.send(unknown_action(msg, RpcAction.ERROR))

    def on_disconnect(self, conn: Connection) -> None:
        self.providers.remove_connection(conn)
        for request_id in list(self._assigned.get(conn, ())):
            request = self._requests[request_id]
            if request_id not in self._unaccepted:
                self._fail(request, RpcAction.RESPONSE_TIMEOUT)
            else:
                self._reroute(request)

    # -- requests ------------------------------------------------------------------------

    def _request(self, conn: Connection, msg: Message) -> None:
        name = msg.name
        if name is None or not self._forwardable(msg):
            conn.send(_error(msg, RpcAction.INVALID_MESSAGE_DATA))
            return
        providers = self.providers.subscribers(name)
        if not providers:
            conn.send(_message(RpcAction.NO_RPC_PROVIDER, name, msg.correlation_id))
            return
        if len(providers) == 1:
            (provider,) = providers
        else:
            provider = random.choice(list(providers))
        request = _Request(str(next(self._ids)), name, msg.correlation_id, msg.data, conn, provider)
        self._send_to(request, provider)

    def _send_to(self, request: _Request, provider: Connection) -> None:
        """(Re)start the provider leg: both deadlines count from here, as in the reference."""
        request.provider = provider
        request.sent = asyncio.get_running_loop().time()
        request_id = request.id
        self._requests[request_id] = self._unaccepted[request_id] = request  # at the end
        assigned = self._assigned.get(provider)
        if assigned is None:
            self._assigned[provider] = {request_id}
        else:
            assigned.add(request_id)
        if self._timer is None:  # else it is due no later than this request's deadlines
            self._arm()
        provider.send(_message(RpcAction.REQUEST, request.name, request_id, request.data))

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

    def _answer(self, conn: Connection, msg: Message) -> None:
        request = self._requests.get(msg.correlation_id or "")
        if request is None or request.provider is not conn:
            conn.send(_error(msg, RpcAction.INVALID_RPC_CORRELATION_ID))
            return
        action = msg.action
        if action == RpcAction.ACCEPT:
            if self._unaccepted.pop(request.id, None) is None:
                conn.send(_message(RpcAction.MULTIPLE_ACCEPT, request.name, request.id))
                return
            self._to_requester(request, RpcAction.ACCEPT)
        elif action == RpcAction.REJECT:
            self._reroute(request)
        elif not self._forwardable(msg):  # the request stays open for a good answer
            conn.send(_error(msg, RpcAction.INVALID_MESSAGE_DATA))
        else:  # RESPONSE or REQUEST_ERROR
            self._release(request)
            self._to_requester(request, action, msg.data)

    def _forwardable(self, msg: Message) -> bool:
        """Whether ``msg.data`` is JSON the other side's client can parse (``payload.check``)."""
        try:
            payload.check(msg.data, max_depth=self.max_json_depth)
        except InvalidJSON:
            return False
        return True

    def _reroute(self, request: _Request) -> None:
        """Hand ``request`` to a provider not tried yet, else answer NO_RPC_PROVIDER."""
        self._release(request)
        request.tried += (request.provider,)
        untried = [p for p in self.providers.subscribers(request.name) if p not in request.tried]
        if untried:
            self._send_to(request, random.choice(untried))
        else:
            self._fail(request, RpcAction.NO_RPC_PROVIDER)

    def _fail(self, request: _Request, action: RpcAction) -> None:
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

    def _to_requester(self, request: _Request, action: int, data: str | None = None) -> None:
        request.requester.send(_message(action, request.name, request.correlation_id, data))
