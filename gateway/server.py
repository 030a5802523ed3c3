"""The server: listen, answer HTTP, run each connection's session, dispatch by topic.

Everything protocol-shaped happens in ``protocol`` (sans-I/O) and in the topic handlers, and
the WebSocket itself in ``connection``; this module owns the listening socket and the timers,
and ties lifetimes together.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import time
from collections.abc import Awaitable
from typing import Any

from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from . import metrics
from .auth import Authenticator, OpenAuthenticator
from .config import Config
from .connection import Connection, Outbox
from .events import EventHandler
from .handler import Handler
from .presence import PresenceHandler
from .protocol import Message, ParserAction, Topic
from .protocol.session import AuthRequest, Session, State
from .records import RecordHandler
from .rpc import RpcHandler
from .store import RecordStore, create_store

__all__ = ["Server"]

log = logging.getLogger(__name__)


class Server:
    """A recordgate server. Use as ``async with Server(config) as server: ...``.

    ``port`` is the bound port once started (useful with port 0).
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        authenticator: Authenticator | None = None,
        store: RecordStore | None = None,
    ) -> None:
        self.config = config or Config()
        self.authenticator: Authenticator = authenticator or OpenAuthenticator()
        self.store = store if store is not None else create_store(self.config)
        self.connections: set[Connection] = set()
        self.events = EventHandler(listen_timeout=self.config.listen.response_timeout)
        self.records = RecordHandler(
            self.store,
            listen_timeout=self.config.listen.response_timeout,
            max_json_depth=self.config.server.max_json_depth,
        )
        self.rpc = RpcHandler(
            ack_timeout=self.config.rpc.ack_timeout,
            response_timeout=self.config.rpc.response_timeout,
        )
        self.presence = PresenceHandler()
        self.handlers: dict[int, Handler] = {
            Topic.EVENT: self.events,
            Topic.RECORD: self.records,
            Topic.RPC: self.rpc,
            Topic.PRESENCE: self.presence,
        }
        self._tcp_server: asyncio.Server | None = None
        self._sockets: set[Connection] = set()
        self._outbox = Outbox()
        """Every TCP connection, open WebSocket or not (``connections``: the open ones)."""
        self.serving = False
        self._clock = time.monotonic  # the event loop's clock, once started
        self._heartbeat: asyncio.Task[None] | None = None
        self.port: int = self.config.server.port

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        cfg = self.config.server
        loop = asyncio.get_running_loop()
        self._clock = loop.time
        self._tcp_server = await loop.create_server(self._new_socket, cfg.host, cfg.port)
        self.serving = True
        sock = next(iter(self._tcp_server.sockets))
        self.port = sock.getsockname()[1]
        self._heartbeat = asyncio.create_task(self._check_heartbeats())
        log.info("recordgate listening on %s:%s%s", cfg.host, self.port, cfg.path)

    async def close(self) -> None:
        """Stop listening, close every WebSocket with 1001 (going away), wait for them all."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._tcp_server is not None:
            self.serving = False
            self._tcp_server.close()
            for conn in list(self._sockets):
                if conn.is_open:
                    conn.close(1001)
                elif conn.transport is not None and not conn.protocol.close_expected():
                    conn.transport.close()  # still in its opening handshake
            if self._sockets:
                await asyncio.wait([conn.closed for conn in self._sockets])
            await self._tcp_server.wait_closed()
        await self.store.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        assert self._tcp_server is not None
        await self._tcp_server.serve_forever()

    # -- HTTP ----------------------------------------------------------------------------

    def respond(self, protocol: ServerProtocol, request: Request) -> Response | None:
        """The answer to a plain HTTP request; None for the WebSocket path."""
        path = request.path.split("?", 1)[0]
        cfg = self.config.server
        if path == cfg.health_path:
            return protocol.reject(http.HTTPStatus.OK, "OK\n")
        if path == cfg.metrics_path:
            body = metrics.render(connections=len(self.connections), store=self.store.stats)
            response = protocol.reject(http.HTTPStatus.OK, body)
            response.headers["Content-Type"] = metrics.CONTENT_TYPE
            return response
        if path != cfg.path:
            return protocol.reject(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    # -- connections ---------------------------------------------------------------------

    def _new_socket(self) -> Connection:
        cfg = self.config.server
        session = Session(
            max_message_size=cfg.max_message_size,
            max_auth_attempts=cfg.max_auth_attempts,
            max_json_depth=cfg.max_json_depth,
        )
        # Size policy: up to the limit, served; up to twice the limit, answered with PARSER
        # MAXIMUM_MESSAGE_SIZE_EXCEEDED and the connection (with its subscriptions) kept;
        # beyond that, closed with 1009 unread, as the reference closes anything over it.
        conn = Connection(
            self,
            self._outbox,
            session,
            max_size=cfg.max_message_size * 2,
            max_send_buffer=cfg.max_send_buffer,
        )
        self._sockets.add(conn)
        conn.closed.add_done_callback(lambda _: self._sockets.discard(conn))
        return conn

    def opened(self, conn: Connection) -> None:
        conn.last_seen = self._clock()
        conn.auth_timer = asyncio.get_running_loop().call_later(
            self.config.server.unauthenticated_timeout, self._auth_timeout, conn
        )
        self.connections.add(conn)

    def received(self, conn: Connection, frame: bytes | str) -> Awaitable[None] | None:
        """One message from ``conn``: through its session to a topic handler."""
        conn.last_seen = self._clock()
        session = conn.session
        result = session.receive(frame)
        if session.outbox:
            conn.flush_session()
        pending: Awaitable[None] | None = None
        if type(result) is Message:
            pending = self._dispatch(conn, result)
        elif result is not None:
            assert isinstance(result, AuthRequest)
            pending = self._authenticate(conn, result.auth_data)
        if session.closing:
            conn.close(session.close_code, session.close_reason)
        return pending

    def closed(self, conn: Connection) -> None:
        if conn.auth_timer is not None:
            conn.auth_timer.cancel()
        self.connections.discard(conn)
        if conn.authenticated:
            for handler in self.handlers.values():
                try:
                    handler.on_disconnect(conn)
                except Exception:
                    log.exception("cleanup of %r failed", conn)

    def _dispatch(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        handler = self.handlers.get(msg.topic)
        if handler is None:  # a known topic recordgate does not serve (LOCK, MONITORING, ...)
            conn.send(Message(Topic.PARSER, ParserAction.UNKNOWN_TOPIC, original_topic=msg.topic))
            return None
        try:
            pending = handler.handle(conn, msg)
        except Exception:
            log.exception("handling %r from %r failed", msg, conn)
            return None
        if pending is None:
            return None
        return self._guard(conn, msg, pending)

    async def _guard(self, conn: Connection, msg: Message, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception:
            log.exception("handling %r from %r failed", msg, conn)

    async def _authenticate(self, conn: Connection, auth_data: dict[str, Any]) -> None:
        try:
            await self._login(conn, auth_data)
        finally:
            session = conn.session
            if session.closing:
                conn.close(session.close_code, session.close_reason)

    async def _login(self, conn: Connection, auth_data: dict[str, Any]) -> None:
        try:
            result = await self.authenticator.authenticate(auth_data)
        except Exception:
            log.exception("authenticator failed")  # never log auth_data: it holds secrets
            conn.session.auth_failed()
            conn.flush_session()
            return
        if result.ok:
            conn.session.auth_succeeded(result.client_data)
            conn.flush_session()
            if conn.session.state is not State.OPEN:  # timed out while the login was checked
                return
            if conn.auth_timer is not None:
                conn.auth_timer.cancel()
            conn.user_id = result.user_id
            conn.client_data = result.client_data
            conn.server_data = result.server_data
            conn.authenticated = True
            self.presence.on_login(conn)
        else:
            conn.session.auth_failed(result.client_data)
            conn.flush_session()

    def _auth_timeout(self, conn: Connection) -> None:
        session = conn.session
        session.auth_timed_out()
        conn.flush_session()
        if session.closing:
            conn.close(session.close_code, session.close_reason)

    async def _check_heartbeats(self) -> None:
        """Drop sockets silent for two heartbeat intervals; one sweep per interval."""
        interval = self.config.server.heartbeat_interval
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            deadline = loop.time() - 2 * interval
            for conn in [c for c in self.connections if c.last_seen < deadline]:
                log.info("%r missed its heartbeats; closing", conn)
                conn.last_seen = float("inf")  # one close per connection, not one per sweep
                conn.close(reason="heartbeat missed")
