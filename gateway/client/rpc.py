"""Remote procedure calls: provide named handlers, make calls to whichever client provides.

A provider is ``handler(data)`` returning the result or an awaitable of it; it is accepted at
once (as the official client auto-accepts), runs as a task, and an exception it raises goes back
to the caller as REQUEST_ERROR with the exception's text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ..exceptions import ClientError, NotConnected, RpcError
from ..protocol import Message, RpcAction, Topic
from .callbacks import outcome, spawn
from .connection import Connection

__all__ = ["RpcHandler", "RpcProvider"]

log = logging.getLogger(__name__)

RpcProvider = Callable[[Any], Any]

_FAILURES = frozenset(
    {
        RpcAction.NO_RPC_PROVIDER,
        RpcAction.ACCEPT_TIMEOUT,
        RpcAction.RESPONSE_TIMEOUT,
        RpcAction.MESSAGE_DENIED,
        RpcAction.MESSAGE_PERMISSION_ERROR,
        RpcAction.INVALID_MESSAGE_DATA,
        RpcAction.ERROR,
    }
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class RpcHandler:
    def __init__(self, conn: Connection, *, timeout: float = 30.0) -> None:
        self._conn = conn
        self.timeout = timeout
        self._providers: dict[str, RpcProvider] = {}
        conn.register(Topic.RPC, self._handle)
        conn.on_reestablished(self._on_reestablished)

    def names(self) -> list[str]:
        """The RPC names this client provides."""
        return list(self._providers)

    async def provide(self, name: str, handler: RpcProvider) -> Callable[[], Awaitable[None]]:
        """Serve RPC ``name`` with ``handler``; returns ``unprovide``."""
        if not name:
            raise ValueError("RPC name must not be empty")
        if name in self._providers:
            raise ClientError(f"RPC {name!r} is already provided")
        self._providers[name] = handler
        try:
            await self._conn.request_bulk(
                Topic.RPC, RpcAction.PROVIDE, [name], ("denied", Topic.RPC, name)
            )
        except BaseException:
            self._providers.pop(name, None)
            raise
        return partial(self.unprovide, name)

    async def unprovide(self, name: str) -> None:
        if self._providers.pop(name, None) is None or not self._conn.is_open:
            return
        await self._conn.request_bulk(Topic.RPC, RpcAction.UNPROVIDE, [name])

    async def make(self, name: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Call RPC ``name`` with JSON ``data``: its result, or ``RpcError``/``RequestTimeout``."""
        if not name:
            raise ValueError("RPC name must not be empty")
        cid = self._conn.next_id()
        msg = Message(
            Topic.RPC,
            RpcAction.REQUEST,
            name=name,
            correlation_id=cid,
            data=None if data is None else _dumps(data),
        )
        return await self._conn.request(
            msg, ("rpc", cid), timeout=self.timeout if timeout is None else timeout
        )

    def _handle(self, msg: Message) -> None:
        action, cid, name = msg.action, msg.correlation_id, msg.name or ""
        if action == RpcAction.REQUEST:
            self._serve(msg)
        elif action == RpcAction.ACCEPT:
            pass
        elif action == RpcAction.RESPONSE:
            result = None if msg.data is None else json.loads(msg.data)
            self._conn.pending.resolve(("rpc", cid), result)
        elif action == RpcAction.REQUEST_ERROR:
            detail = None if msg.data is None else json.loads(msg.data)
            code = detail if isinstance(detail, str) else _dumps(detail)
            self._conn.pending.reject(("rpc", cid), RpcError(code, name))
        elif action in (RpcAction.MULTIPLE_PROVIDERS, RpcAction.NOT_PROVIDED):
            pass  # harmless: the server's view already matches what we asked for
        else:
            error = RpcError(RpcAction(action).name, name)
            if msg.original_action == RpcAction.PROVIDE:
                self._providers.pop(name, None)
                key: tuple[Any, ...] = ("denied", Topic.RPC, name)
            elif action in _FAILURES:
                key = ("rpc", cid)
            else:
                key = ()
            if not self._conn.pending.reject(key, error):
                self._conn.report(error)

    def _serve(self, msg: Message) -> None:
        name, cid = msg.name or "", msg.correlation_id
        handler = self._providers.get(name)
        if handler is None:  # unprovided while the request was on its way
            self._conn.send(Message(Topic.RPC, RpcAction.REJECT, name=name, correlation_id=cid))
            return
        self._conn.send(Message(Topic.RPC, RpcAction.ACCEPT, name=name, correlation_id=cid))
        data = None if msg.data is None else json.loads(msg.data)
        spawn(self._run(handler, name, cid, data))

    async def _run(self, handler: RpcProvider, name: str, cid: str | None, data: Any) -> None:
        try:
            result = await outcome(handler, data)
            reply = Message(
                Topic.RPC, RpcAction.RESPONSE, name=name, correlation_id=cid, data=_dumps(result)
            )
        except Exception as exc:
            log.info("RPC provider %r failed: %r", name, exc)
            reply = Message(
                Topic.RPC,
                RpcAction.REQUEST_ERROR,
                name=name,
                correlation_id=cid,
                data=_dumps(str(exc) or type(exc).__name__),
            )
        try:
            self._conn.send(reply)
        except NotConnected:
            log.info("the connection dropped before RPC %r could answer", name)

    def _on_reestablished(self) -> None:
        if self._providers:
            self._conn.send(self._conn.bulk(Topic.RPC, RpcAction.PROVIDE, self._providers))
