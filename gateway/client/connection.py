"""The client's socket: handshake and login, heartbeat, reconnect with backoff, and dispatch.

Topic modules register one handler per topic plus hooks run when the connection is lost and
when it is re-established (to replay their subscriptions). Sends are synchronous: a frame goes
straight into the socket's write buffer, in call order. Requests wait on futures in
:class:`Pending`; losing the connection fails them all with ``NotConnected``.

States: CLOSED -> CONNECTING -> OPEN -> (RECONNECTING -> OPEN)* -> CLOSED.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import ssl
from collections.abc import Callable, Hashable, Iterable, Iterator
from enum import Enum
from typing import Any, TypedDict

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .. import __version__
from ..exceptions import (
    AuthenticationFailed,
    ClientError,
    NotConnected,
    ProtocolError,
    RequestTimeout,
)
from ..protocol import AuthAction, ConnectionAction, Message, Topic, decode, encode
from .callbacks import invoke
from .pending import Pending

__all__ = [
    "Connection",
    "ConnectionOptions",
    "ConnectionState",
    "ack_key",
    "backoff",
    "normalize_url",
]

log = logging.getLogger(__name__)

_PING = encode(Message(Topic.CONNECTION, ConnectionAction.PING))
_PONG = encode(Message(Topic.CONNECTION, ConnectionAction.PONG))


class ConnectionState(Enum):
    CLOSED = "closed"
    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"


def normalize_url(url: str) -> str:
    """``host:port`` -> ``ws://host:port/deepstream``, as the official client does."""
    if "://" not in url:
        url = "ws://" + url
    scheme, rest = url.split("://", 1)
    if "/" not in rest:
        rest += "/deepstream"
    return f"{scheme}://{rest}"


def backoff(base: float, cap: float) -> Iterator[float]:
    """Delays before reconnect attempts: 0 first, then doubling from ``base`` up to ``cap``.

    Each delay after the first is jittered down by up to half, so many clients dropped at once
    do not all come back in the same instant.
    """
    yield 0.0
    delay = base
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(cap, delay * 2)


def ack_key(topic: int, action: int, tag: str | None) -> Hashable:
    """The pending key an ack settles; ``tag`` is its correlation id, or name when it has none."""
    return ("ack", topic, action, tag)


class ConnectionOptions(TypedDict, total=False):
    """The keyword options of :class:`Connection`, for callers that pass them on."""

    auth: dict[str, Any] | None
    heartbeat_interval: float
    request_timeout: float
    reconnect: bool
    reconnect_delay: float
    max_reconnect_delay: float
    max_reconnect_attempts: int | None
    ssl: ssl.SSLContext | None


class Connection:
    def __init__(
        self,
        url: str,
        *,
        auth: dict[str, Any] | None = None,
        heartbeat_interval: float = 30.0,
        request_timeout: float = 10.0,
        reconnect: bool = True,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 30.0,
        max_reconnect_attempts: int | None = None,
        ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.ssl = ssl
        """For ``wss://`` URLs: the context to verify the server (default: the system's CAs)."""
        self.auth = dict(auth or {})
        self.heartbeat_interval = heartbeat_interval
        self.request_timeout = request_timeout
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.max_reconnect_attempts = max_reconnect_attempts
        self.state = ConnectionState.CLOSED
        self.client_data: Any = None
        self.pending = Pending()
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._last_seen = 0.0
        self._handlers: dict[int, Callable[[Message], None]] = {}
        self._lost_hooks: list[Callable[[], None]] = []
        self._reestablished_hooks: list[Callable[[], None]] = []
        self._state_listeners: list[Callable[[ConnectionState], Any]] = []
        self._error_listeners: list[Callable[[ClientError], Any]] = []

    # -- wiring --------------------------------------------------------------------------

    def register(self, topic: int, handler: Callable[[Message], None]) -> None:
        self._handlers[topic] = handler

    def on_lost(self, hook: Callable[[], None]) -> None:
        self._lost_hooks.append(hook)

    def on_reestablished(self, hook: Callable[[], None]) -> None:
        self._reestablished_hooks.append(hook)

    def on_state_change(self, listener: Callable[[ConnectionState], Any]) -> Callable[[], None]:
        """Call ``listener(state)`` on every change; returns a function that stops it."""
        self._state_listeners.append(listener)
        return lambda: self._state_listeners.remove(listener)

    def on_error(self, listener: Callable[[ClientError], Any]) -> Callable[[], None]:
        """Call ``listener(error)`` for errors the server reports outside any awaited request."""
        self._error_listeners.append(listener)
        return lambda: self._error_listeners.remove(listener)

    def report(self, error: ClientError) -> None:
        log.warning("%s", error)
        for listener in list(self._error_listeners):
            invoke(listener, error)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self.state:
            return
        self.state = state
        for listener in list(self._state_listeners):
            invoke(listener, state)

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and log in; raises ``AuthenticationFailed``, ``NotConnected``, ..."""
        if self.state is not ConnectionState.CLOSED:
            raise ClientError(f"connection is already {self.state.value}")
        self._closing = False
        self._set_state(ConnectionState.CONNECTING)
        try:
            ws = await self._establish()
        except BaseException:
            self._set_state(ConnectionState.CLOSED)
            raise
        self._ws = ws
        self._set_state(ConnectionState.OPEN)
        self._replay()  # after a close(), whatever the client still holds is subscribed again
        self._runner = asyncio.create_task(self._run(ws))

    async def close(self) -> None:
        """Say goodbye to the server and stop reconnecting; pending requests fail."""
        self._closing = True
        ws, self._ws = self._ws, None
        if ws is not None:
            # Like the official client, just close the socket: no CLOSING message.
            with contextlib.suppress(Exception):
                await ws.close()
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if self.state is not ConnectionState.CLOSED:
            self._forget(NotConnected("the client was closed"))
        self._set_state(ConnectionState.CLOSED)

    async def _establish(self) -> ClientConnection:
        """Open a socket, pass the challenge, log in. On any failure the socket is closed."""
        try:
            async with asyncio.timeout(self.request_timeout):
                tls: dict[str, Any] = {} if self.ssl is None else {"ssl": self.ssl}
                ws = await connect(
                    self.url, max_size=None, compression=None, ping_interval=None, **tls
                )
        except TimeoutError as exc:
            raise RequestTimeout(f"no connection to {self.url} in time") from exc
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            raise NotConnected(f"cannot connect to {self.url}: {exc}") from exc
        try:
            async with asyncio.timeout(self.request_timeout):
                await self._handshake(ws)
        except BaseException as exc:
            ws.transport.abort()
            if isinstance(exc, TimeoutError):
                raise RequestTimeout("the server did not finish the handshake in time") from exc
            if isinstance(exc, ConnectionClosed):
                raise NotConnected("the server closed the connection during login") from exc
            raise
        return ws

    async def _handshake(self, ws: ClientConnection) -> None:
        self._write(
            ws,
            encode(
                Message(
                    Topic.CONNECTION,
                    ConnectionAction.CHALLENGE,
                    url=self.url,
                    protocol_version="0.1a",
                    sdk_version=__version__,
                    sdk_type="python",
                )
            ),
        )
        reply = await self._recv_control(ws)
        if (reply.topic, reply.action) != (Topic.CONNECTION, ConnectionAction.ACCEPT):
            raise NotConnected(f"the server refused the connection: {reply!r}")
        self._write(ws, encode(Message(Topic.AUTH, AuthAction.REQUEST, data=json.dumps(self.auth))))
        reply = await self._recv_control(ws)
        if reply.topic == Topic.AUTH and reply.action == AuthAction.AUTH_SUCCESSFUL:
            self.client_data = json.loads(reply.data) if reply.data else None
            return
        reason = reply.data if reply.topic == Topic.AUTH and reply.data else None
        action = (
            AuthAction(reply.action).name
            if reply.topic == Topic.AUTH and reply.action in AuthAction._value2member_map_
            else repr(reply)
        )
        raise AuthenticationFailed(f"login refused: {action}" + (f" {reason}" if reason else ""))

    async def _recv_control(self, ws: ClientConnection) -> Message:
        """The next handshake answer, skipping heartbeats."""
        while True:
            frame = await ws.recv()
            if isinstance(frame, str):
                raise NotConnected("the server sent a text frame")
            msg = decode(frame, max_size=1 << 62)
            if msg.topic == Topic.CONNECTION and msg.action in (
                ConnectionAction.PING,
                ConnectionAction.PONG,
            ):
                continue
            return msg

    async def _run(self, ws: ClientConnection) -> None:
        """Read the socket; when it drops, reconnect and replay subscriptions, until closed."""
        while True:
            await self._read(ws)
            if self._closing:
                return
            self._lost()
            if not self.reconnect:
                self._set_state(ConnectionState.CLOSED)
                return
            new_ws = await self._reconnect()
            if new_ws is None:
                self._set_state(ConnectionState.CLOSED)
                return
            ws = self._ws = new_ws
            self._set_state(ConnectionState.OPEN)
            log.info("reconnected to %s", self.url)
            self._replay()

    def _replay(self) -> None:
        for hook in self._reestablished_hooks:
            try:
                hook()
            except Exception:
                log.exception("replaying subscriptions failed in %r", hook)

    def _lost(self) -> None:
        log.info("connection to %s lost", self.url)
        self._ws = None
        self._set_state(ConnectionState.RECONNECTING if self.reconnect else ConnectionState.CLOSED)
        self._forget(NotConnected("the connection was lost"))

    def _forget(self, error: NotConnected) -> None:
        """Fail what waits on the server and tell the topic handlers it is gone."""
        self.pending.reject_all(error)
        for hook in self._lost_hooks:
            try:
                hook()
            except Exception:
                log.exception("connection-lost hook %r failed", hook)

    async def _reconnect(self) -> ClientConnection | None:
        delays = backoff(self.reconnect_delay, self.max_reconnect_delay)
        for attempt in itertools.count(1):
            if self.max_reconnect_attempts is not None and attempt > self.max_reconnect_attempts:
                self.report(NotConnected(f"gave up reconnecting after {attempt - 1} attempts"))
                return None
            await asyncio.sleep(next(delays))
            try:
                return await self._establish()
            except AuthenticationFailed as exc:
                self.report(exc)  # retrying the same credentials cannot help
                return None
            except ClientError as exc:
                log.info("reconnect attempt %d failed: %s", attempt, exc)
        raise AssertionError("unreachable")

    # -- reading -------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        self._last_seen = loop.time()
        heartbeat = asyncio.create_task(self._heartbeat(ws))
        try:
            async for frame in ws:
                self._last_seen = loop.time()
                if isinstance(frame, bytes):
                    self._dispatch(frame)
        except ConnectionClosed:
            pass
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """PING every interval; a server silent for two intervals is gone: drop the socket."""
        loop = asyncio.get_running_loop()
        interval = self.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            if loop.time() - self._last_seen > 2 * interval:
                log.warning("no message from %s for %.1f s; reconnecting", self.url, 2 * interval)
                ws.transport.abort()
                return
            with contextlib.suppress(Exception):
                self._write(ws, _PING)

    def _dispatch(self, frame: bytes) -> None:
        try:
            msg = decode(frame, max_size=1 << 62)
        except ProtocolError as exc:
            log.warning("undecodable message from the server: %s", exc)
            return
        if msg.topic == Topic.CONNECTION:
            if msg.action == ConnectionAction.PING and self._ws is not None:
                self._write(self._ws, _PONG)
            elif (
                msg.action == ConnectionAction.ERROR
            ):  # e.g. the message rate limit; a close follows
                self.report(ClientError(f"the server reported a connection error: {msg.data}"))
            elif msg.action != ConnectionAction.PONG:
                log.info("connection message from the server: %r", msg)
            return
        if msg.is_ack:
            self.pending.resolve(ack_key(msg.topic, msg.action, msg.correlation_id or msg.name))
            return
        handler = self._handlers.get(msg.topic)
        if handler is None:
            self.report(ClientError(f"the server reported {msg!r}"))
            return
        try:
            handler(msg)
        except Exception:
            log.exception("handling %r failed", msg)

    # -- sending -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state is ConnectionState.OPEN and self._ws is not None

    def next_id(self) -> str:
        return str(next(self._ids))

    def bulk(self, topic: int, action: int, names: Iterable[str]) -> Message:
        """A bulk message (SUBSCRIBE, PROVIDE, ...) for ``names`` with a new correlation id."""
        return Message(topic, action, names=list(names), correlation_id=self.next_id())

    def send(self, msg: Message) -> None:
        """Queue ``msg`` for the server now; raises ``NotConnected`` while not open."""
        ws = self._ws
        if ws is None or self.state is not ConnectionState.OPEN:
            raise NotConnected(f"not connected (state {self.state.value})")
        try:
            self._write(ws, encode(msg))
        except Exception as exc:  # the socket is going away; its reader notices
            raise NotConnected("the connection is closing") from exc

    @staticmethod
    def _write(ws: ClientConnection, frame: bytes) -> None:
        ws.protocol.send_binary(frame)
        ws.send_data()

    async def request_bulk(
        self, topic: int, action: int, names: Iterable[str], *keys: Hashable
    ) -> None:
        """Send a bulk message and wait for its ack, or until one of ``keys`` is settled."""
        msg = self.bulk(topic, action, names)
        await self.request(msg, ack_key(topic, action, msg.correlation_id), *keys)

    async def request(self, msg: Message, *keys: Hashable, timeout: float | None = None) -> Any:
        """Send ``msg`` and wait until one of ``keys`` is settled; raises ``RequestTimeout``."""
        future = self.pending.add(*keys)
        try:
            self.send(msg)
            async with asyncio.timeout(self.request_timeout if timeout is None else timeout):
                return await future
        except TimeoutError as exc:
            raise RequestTimeout(f"no answer to {msg!r} in time") from exc
        finally:
            self.pending.discard(future)
