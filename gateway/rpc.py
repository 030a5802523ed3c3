"""Remote procedure calls: route each REQUEST to one provider and its answers back.

The provider sees a server-issued correlation id, not the requester's, so two requesters that
pick the same id never collide, and a connection can only answer requests actually sent to it.

Lifecycle of a request: sent to a random provider with an ack timer and a response timer (timer
handles, no task). ACCEPT cancels the ack timer; RESPONSE or REQUEST_ERROR completes it; REJECT,
or the provider disconnecting before it accepted, moves it to a provider not yet tried, else
NO_RPC_PROVIDER. A provider that disconnects after accepting can no longer answer: the requester
gets RESPONSE_TIMEOUT at once. A requester that disconnects leaves its requests to finish or time
out; their answers are dropped silently because its socket is closed.

Invariant: ``_requests[id].provider`` holds ``id`` in ``_assigned[provider]`` and vice versa.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from dataclasses import dataclass, field

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


@dataclass(slots=True, eq=False)
class _Request:
    id: str
    name: str
    correlation_id: str | None
    data: str | None
    requester: Connection
    provider: Connection
    tried: set[Connection] = field(default_factory=set)
    accepted: bool = False
    ack_timer: asyncio.TimerHandle | None = None
    response_timer: asyncio.TimerHandle | None = None


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
        self._requests: dict[str, _Request] = {}
        self._assigned: dict[Connection, set[str]] = {}
        self._ids = itertools.count(1)

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
            if request.accepted:
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
        provider = random.choice(list(providers))
        request = _Request(str(next(self._ids)), name, msg.correlation_id, msg.data, conn, provider)
        self._requests[request.id] = request
        self._send_to(request, provider)

    def _send_to(self, request: _Request, provider: Connection) -> None:
        """(Re)start the provider leg: both timers run from here, as in the reference."""
        request.provider = provider
        request.tried.add(provider)
        request.accepted = False
        self._assigned.setdefault(provider, set()).add(request.id)
        loop = asyncio.get_running_loop()
        request.ack_timer = loop.call_later(
            self.ack_timeout, self._fail, request, RpcAction.ACCEPT_TIMEOUT
        )
        request.response_timer = loop.call_later(
            self.response_timeout, self._fail, request, RpcAction.RESPONSE_TIMEOUT
        )
        provider.send(_message(RpcAction.REQUEST, request.name, request.id, request.data))

    def _answer(self, conn: Connection, msg: Message) -> None:
        request = self._requests.get(msg.correlation_id or "")
        if request is None or request.provider is not conn:
            conn.send(_error(msg, RpcAction.INVALID_RPC_CORRELATION_ID))
            return
        action = msg.action
        if action == RpcAction.ACCEPT:
            if request.accepted:
                conn.send(_message(RpcAction.MULTIPLE_ACCEPT, request.name, request.id))
                return
            request.accepted = True
            if request.ack_timer is not None:
                request.ack_timer.cancel()
            self._to_requester(request, RpcAction.ACCEPT)
        elif action == RpcAction.REJECT:
            self._reroute(request)
        elif not self._forwardable(msg):  # the request stays open for a good answer
            conn.send(_error(msg, RpcAction.INVALID_MESSAGE_DATA))
        else:  # RESPONSE or REQUEST_ERROR
            self._finish(request)
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
        untried = [p for p in self.providers.subscribers(request.name) if p not in request.tried]
        if untried:
            self._send_to(request, random.choice(untried))
        else:
            self._fail(request, RpcAction.NO_RPC_PROVIDER)

    def _fail(self, request: _Request, action: RpcAction) -> None:
        self._finish(request)
        self._to_requester(request, action)

    def _finish(self, request: _Request) -> None:
        self._release(request)
        del self._requests[request.id]

    def _release(self, request: _Request) -> None:
        """Detach ``request`` from its provider and stop its timers."""
        for timer in (request.ack_timer, request.response_timer):
            if timer is not None:
                timer.cancel()
        request.ack_timer = request.response_timer = None
        assigned = self._assigned.get(request.provider)
        if assigned is not None:
            assigned.discard(request.id)
            if not assigned:
                del self._assigned[request.provider]

    def _to_requester(self, request: _Request, action: int, data: str | None = None) -> None:
        request.requester.send(_message(action, request.name, request.correlation_id, data))
