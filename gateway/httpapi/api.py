"""The HTTP API: ``POST {http.path}`` runs a batch of operations, ``POST {http.path}/auth``
issues a token.

Each operation is the message a WebSocket client would send, dispatched through the server's
own path (its limits and topic handlers) on a ``VirtualConnection`` that collects the
handler's replies for that one operation: HTTP writes take the same record lanes, write-behind
and broadcasts as WebSocket writes, and a write answers once it is durable. Operations run one
after the other, in order, so a read after a write in one request sees it.

The data the operations' results carry is bounded by ``server.max_send_buffer``, as a
WebSocket client's queued replies are: a few hundred bytes of reads of one large record must
not make the server build gigabytes of answer. The operation that would pass it, and every one
after it (not run), fail with an error naming the key.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from ..auth import Authenticator, AuthResult
from ..config import HttpConfig
from ..exceptions import InvalidJSON
from ..limits import LimitTrips, ThrottledLog
from ..protocol import EventAction, Message, Topic, decode, payload
from .ops import BadOperation, to_message, to_result
from .request import HttpRequest, HttpResponse
from .tokens import TokenStore

if TYPE_CHECKING:  # the connection module imports this package
    from ..connection import Connection

__all__ = ["HttpApi", "VirtualConnection"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)
_ids = itertools.count(1)

Dispatch = Callable[["Connection", Message], Awaitable[None] | None]


class ReplyBudget:
    """Characters of reply data one HTTP request may still collect (``server.max_send_buffer``);
    once one reply would pass it, the request is over it for good."""

    __slots__ = ("left", "limit", "over", "trips")

    def __init__(self, limit: int, trips: LimitTrips) -> None:
        self.limit = self.left = limit
        self.over = False
        self.trips = trips

    def take(self, size: int) -> bool:
        if not self.over and size <= self.left:
            self.left -= size
            return True
        if not self.over:
            self.over = True
            self.trips.trip("server.max_send_buffer")
        return False

    def refusal(self, topic: int) -> dict[str, Any]:
        return {
            "errorTopic": Topic(topic).name.lower(),
            "success": False,
            "error": f"the answer would pass server.max_send_buffer ({self.limit} bytes): "
            "this operation and the ones after it were not answered",
        }


class VirtualConnection:
    """Stands in for a client connection for one HTTP operation: what the handlers send it
    becomes the operation's result (the first reply that finishes it; later ones are dropped).

    It never subscribes, so it is never part of a fan-out; handlers see it as a
    ``Connection`` through ``as_connection``.
    """

    def __init__(
        self, login: AuthResult, peer: str, headers: dict[str, str], budget: ReplyBudget
    ) -> None:
        self.id = f"http-{next(_ids)}"
        self.budget = budget
        self.user_id = login.user_id
        self.client_data = login.client_data
        self.server_data = login.server_data
        self.authenticated = True
        self.peer: str | None = peer
        self.headers: dict[str, str] | None = headers
        self.result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<VirtualConnection {self.id} user={self.user_id!r}>"

    @property
    def is_open(self) -> bool:
        return not self.result.done()

    def as_connection(self) -> Connection:
        return cast("Connection", self)

    def send(self, msg: Message) -> None:
        if self.result.done():
            return
        if not self.budget.take(len(msg.data or "") + sum(map(len, msg.names))):
            self.result.set_result(self.budget.refusal(msg.topic))
            return
        result = to_result(msg)
        if result is not None:
            self.result.set_result(result)

    def send_frame(self, frame: bytes) -> None:
        """An encoded message (an RPC's answer; this connection subscribes to nothing, so
        no fan-out comes here): taken as ``send`` takes it."""
        self.send(decode(frame))

    def close(self, code: int = 1000, reason: str = "") -> None:
        pass


class HttpApi:
    def __init__(
        self,
        config: HttpConfig,
        *,
        authenticator: Authenticator,
        dispatch: Dispatch,
        max_json_depth: int,
        max_reply_bytes: int = 1 << 24,
        trips: LimitTrips | None = None,
    ) -> None:
        self.config = config
        self.max_reply_bytes = max_reply_bytes
        self.trips = trips if trips is not None else LimitTrips()
        self.authenticator = authenticator
        self.dispatch = dispatch
        self.max_json_depth = max_json_depth
        self.tokens = TokenStore(ttl=config.token_ttl, max_tokens=config.max_tokens)

    def serves(self, path: str) -> bool:
        return path == self.config.path or path == self.config.auth_path

    async def handle(self, request: HttpRequest, peer: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse.text(405, f"Method {request.method} not allowed: use POST.")
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return HttpResponse.text(
                415, 'Invalid "Content-Type" header. Supported media types: "application/json"'
            )
        try:
            text = request.body.decode()
            parsed = payload.loads(text, max_depth=self.max_json_depth)
        except (UnicodeDecodeError, InvalidJSON) as exc:
            return HttpResponse.text(400, f"Failed to parse body of request: {exc}")
        if not isinstance(parsed, dict):
            return HttpResponse.text(400, "Invalid message: the request body must be an object.")
        connection = {"remoteAddress": peer, "headers": request.headers}
        if request.path == self.config.auth_path:
            return await self._auth(parsed, connection)
        return await self._batch(parsed, connection)

    async def _login(self, auth_data: dict[str, Any], connection: dict[str, Any]) -> AuthResult:
        try:
            return await self.authenticator.authenticate(auth_data, connection)
        except Exception:
            _throttled.exception("authenticator failed")  # never log auth_data: it holds secrets
            return AuthResult(False)

    async def _auth(self, auth_data: dict[str, Any], connection: dict[str, Any]) -> HttpResponse:
        login = await self._login(auth_data, connection)
        if not login.ok:
            return HttpResponse.text(401, "Invalid authentication data.")
        return HttpResponse.json(
            {"token": self.tokens.issue(login), "clientData": login.client_data}
        )

    async def _batch(self, request: dict[str, Any], connection: dict[str, Any]) -> HttpResponse:
        if "body" not in request:
            return HttpResponse.text(400, 'Invalid message: the "body" parameter must exist.')
        ops = request["body"]
        if not isinstance(ops, list) or not ops:
            return HttpResponse.text(
                400, 'Invalid message: the "body" parameter must be a non-empty array of Objects.'
            )
        messages = []
        for index, op in enumerate(ops):
            try:
                messages.append(to_message(op, str(index)))
            except BadOperation as exc:
                return HttpResponse.text(
                    400, f"Failed to parse JIF object at index {index}. Reason: {exc}"
                )
        login = await self._request_login(request, connection)
        if isinstance(login, HttpResponse):
            return login
        results = await self._run(messages, login, connection)
        succeeded = sum(1 for result in results if result.get("success"))
        outcome = (
            "SUCCESS"
            if succeeded == len(results)
            else "FAILURE"
            if succeeded == 0
            else "PARTIAL_SUCCESS"
        )
        return HttpResponse.json({"result": outcome, "body": results})

    async def _request_login(
        self, request: dict[str, Any], connection: dict[str, Any]
    ) -> AuthResult | HttpResponse:
        """The login of a batch: its ``token``, its ``authData``, or none (open auth only)."""
        if "token" in request:
            token = request["token"]
            if not isinstance(token, str) or not token:
                return HttpResponse.text(
                    400, 'Invalid message: the "token" parameter must be a non-empty string'
                )
            login = self.tokens.login(token)
            if login is None:
                return HttpResponse.text(401, "Unsuccessful authentication attempt.")
            return login
        auth_data = request.get("authData", {})
        if not isinstance(auth_data, dict):
            return HttpResponse.text(
                400, 'Invalid message: the "authData" parameter must be an object'
            )
        login = await self._login(auth_data, connection)
        if not login.ok:
            return HttpResponse.text(401, "Unsuccessful authentication attempt.")
        return login

    async def _run(
        self, messages: list[Message], login: AuthResult, connection: dict[str, Any]
    ) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout
        budget = ReplyBudget(self.max_reply_bytes, self.trips)
        results = []
        for msg in messages:
            if budget.over:  # not run: its answer could not be sent
                results.append(budget.refusal(msg.topic))
                continue
            conn = VirtualConnection(
                login, connection["remoteAddress"], connection["headers"], budget
            )
            results.append(await self._one(conn, msg, deadline - loop.time()))
        return results

    async def _one(self, conn: VirtualConnection, msg: Message, timeout: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                pending = self.dispatch(conn.as_connection(), msg)
                if pending is not None:
                    await pending
                if msg.topic == Topic.EVENT and msg.action == EventAction.EMIT:
                    # An emit has no answer: done unless the handler refused it already.
                    return conn.result.result() if conn.result.done() else {"success": True}
                return await asyncio.shield(conn.result)
        except TimeoutError:  # the reference's shape for its own request timeout
            return {
                "success": False,
                "error": "Request exceeded timeout before a response was received "
                f"(http.request_timeout, {self.config.request_timeout} s); a write may still "
                "become durable.",
                "errorTopic": "connection",
                "errorEvent": "HTTP_REQUEST_TIMEOUT",
            }
        finally:
            conn.result.cancel()  # later replies (a late RPC answer) are dropped
