"""The asyncio plumbing: accept WebSockets, run each connection's session, dispatch by topic.

Everything protocol-shaped happens in ``protocol`` (sans-I/O) and in the topic handlers; this
module only moves bytes, owns the timers, and ties lifetimes together.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections.abc import Awaitable
from typing import Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import metrics
from .auth import Authenticator, OpenAuthenticator
from .config import Config
from .connection import Connection
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
        self.records = RecordHandler(self.store, listen_timeout=self.config.listen.response_timeout)
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
        self._ws_server: WsServer | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.port: int = self.config.server.port

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        cfg = self.config.server
        self._ws_server = await serve(
            self._serve_connection,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            compression=None,  # per-subscriber compression would defeat encode-once fan-out
            # Size policy: up to the limit, served; up to twice the limit, answered with PARSER
            # MAXIMUM_MESSAGE_SIZE_EXCEEDED and the connection (with its subscriptions) kept;
            # beyond that, closed with 1009 unread, as the reference closes anything over it.
            max_size=cfg.max_message_size * 2,
            ping_interval=None,  # deepstream has its own heartbeat
            max_queue=64,
        )
        sock = next(iter(self._ws_server.sockets))
        self.port = sock.getsockname()[1]
        self._heartbeat = asyncio.create_task(self._check_heartbeats())
        log.info("recordgate listening on %s:%s%s", cfg.host, self.port, cfg.path)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        await self.store.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        assert self._ws_server is not None
        await self._ws_server.serve_forever()

    # -- HTTP ----------------------------------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        cfg = self.config.server
        if path == cfg.health_path:
            return ws.respond(http.HTTPStatus.OK, "OK\n")
        if path == cfg.metrics_path:
            body = metrics.render(connections=len(self.connections), store=self.store.stats)
            response = ws.respond(http.HTTPStatus.OK, body)
            response.headers["Content-Type"] = metrics.CONTENT_TYPE
            return response
        if path != cfg.path:
            return ws.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    # -- connections ---------------------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        cfg = self.config.server
        loop = asyncio.get_running_loop()
        session = Session(
            max_message_size=cfg.max_message_size, max_auth_attempts=cfg.max_auth_attempts
        )
        conn = Connection(ws, session, max_send_buffer=cfg.max_send_buffer)
        conn.last_seen = loop.time()
        self.connections.add(conn)
        auth_timer = loop.call_later(cfg.unauthenticated_timeout, self._auth_timeout, conn)
        try:
            async for frame in ws:
                conn.last_seen = loop.time()
                result = session.receive(frame)
                if session.outbox:
                    conn.flush_session()
                if type(result) is Message:
                    pending = self._dispatch(conn, result)
                    if pending is not None:
                        await pending
                elif result is not None:
                    assert isinstance(result, AuthRequest)
                    await self._authenticate(conn, result.auth_data, auth_timer)
                if session.closing:
                    break
        except ConnectionClosed:
            pass
        finally:
            auth_timer.cancel()
            self.connections.discard(conn)
            if conn.authenticated:
                for handler in self.handlers.values():
                    try:
                        handler.on_disconnect(conn)
                    except Exception:
                        log.exception("cleanup of %r failed", conn)
            await ws.close(session.close_code, session.close_reason)

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

    async def _authenticate(
        self, conn: Connection, auth_data: dict[str, Any], auth_timer: asyncio.TimerHandle
    ) -> None:
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
            auth_timer.cancel()
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
