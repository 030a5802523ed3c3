"""The server: listen, answer HTTP, run each connection's session, dispatch by topic.

Everything protocol-shaped happens in ``protocol`` (sans-I/O) and in the topic handlers, and
the WebSocket itself in ``connection``; this module owns the listening socket and the timers,
and ties lifetimes together.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import ipaddress
import json
import logging
import resource
import socket
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from . import metrics
from .auth import AuthChain, Authenticator, create_authenticator
from .bind import authority, client_address, dual_stack_socket
from .config import Config
from .connection import CLOSE_POLICY, BufferedConnection, Connection, Outbox
from .events import EventHandler
from .exceptions import ConfigError
from .handler import Handler
from .httpapi.api import HttpApi
from .httpapi.request import HttpRequest, HttpResponse, RequestReader
from .limits import LimitTrips, ThrottledLog
from .loops import running_loop_name
from .permissions import Permissions
from .permissions.gate import Gate
from .presence import PresenceHandler
from .protocol import (
    ConnectionAction,
    EventAction,
    Message,
    ParserAction,
    PresenceAction,
    RecordAction,
    RpcAction,
    Topic,
)
from .protocol.codec import decode_rpc
from .protocol.session import AuthRequest, Session, State
from .records import RecordHandler
from .rpc import RpcHandler
from .store import RecordStore, create_store
from .subscriptions import SubscriptionRegistry
from .tls import server_context

if TYPE_CHECKING:
    from .cluster import ClusterNode

__all__ = ["Server"]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)
_RPC = Topic.RPC.value  # read per message: a global costs a fifth of an enum member's read
_OPEN = State.OPEN

_INVALID_DATA: dict[int, int] = {
    Topic.EVENT: EventAction.INVALID_MESSAGE_DATA,
    Topic.RECORD: RecordAction.INVALID_MESSAGE_DATA,
    Topic.RPC: RpcAction.INVALID_MESSAGE_DATA,
    Topic.PRESENCE: PresenceAction.INVALID_PRESENCE_USERS,
}
"""Each topic's answer to a message over a limit of ``limits`` (a name too long, too many)."""


def client_key(peer: str) -> str:
    """What ``server.max_connections_per_ip`` counts a peer under: its IPv4 address, or the /64
    of its IPv6 address (one host or site is given a whole /64, so counting single addresses
    would let one client open 2^64 times the cap)."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:  # not an IP address (a unix socket): as is
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return peer


_RECORD_SUBSCRIBES = (
    RecordAction.SUBSCRIBE,
    RecordAction.SUBSCRIBEANDHEAD,
    RecordAction.SUBSCRIBEANDREAD,
    RecordAction.SUBSCRIBECREATEANDREAD,
    RecordAction.SUBSCRIBECREATEANDUPDATE,
)

FD_RESERVE = 64
"""File descriptors kept free beyond the last connection: storage, logs, a refusal's socket."""


_loop_errors = ThrottledLog(logging.getLogger("asyncio"))


def _throttled_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's default handler, throttled: at the file-descriptor limit it would log an
    accept() traceback per waiting client per second."""
    _loop_errors.log(
        logging.ERROR,
        "%s",
        context.get("message", "unhandled exception in the event loop"),
        exc_info=context.get("exception"),
    )


def refusals_held_max(cap: int) -> int:
    """Refused sockets kept open at once (each until its client reads its 503): half of the
    descriptors the limit leaves beyond ``cap``, so the rest stay for storage and logs and
    the process never reaches the limit, where uvloop's accept would close waiting clients
    unanswered (libuv's EMFILE trick). No limit: no bound either."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 62
    return max(0, (soft - cap) // 2)


def connection_cap(configured: int) -> int:
    """``server.max_connections``, lowered to stay below the file-descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - max(FD_RESERVE, soft // 8)))


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
        self.trips = LimitTrips()
        self.messages_received = [0] * 128
        """Messages received from clients, by topic (``/metrics``)."""
        """Limits that refused something, by configuration key (``/metrics``)."""
        tls = self.config.server.tls
        self._ssl = server_context(tls) if tls is not None else None
        self.authenticator: Authenticator = authenticator or create_authenticator(self.config.auth)
        self._keep_headers = any(entry.get("headers") for entry in self.config.auth)
        if store is None:
            cluster = self.config.cluster is not None
            store = _cluster_store(self.config) if cluster else create_store(self.config)
        self.store = store
        self.connections: set[Connection] = set()
        limits = self.config.limits
        self.events = EventHandler(
            listen_timeout=self.config.listen.response_timeout,
            limits=limits,
            trips=self.trips,
            max_json_depth=self.config.server.max_json_depth,
        )
        self.records = RecordHandler(
            self.store,
            listen_timeout=self.config.listen.response_timeout,
            limits=limits,
            max_record_size=self.config.max_record_size,
            trips=self.trips,
            max_json_depth=self.config.server.max_json_depth,
            refuse_nul=_cannot_hold_nul(store),
        )
        self.rpc = RpcHandler(
            ack_timeout=self.config.rpc.ack_timeout,
            response_timeout=self.config.rpc.response_timeout,
            max_json_depth=self.config.server.max_json_depth,
        )
        self.presence = PresenceHandler()
        self._subscribing: dict[tuple[int, int], SubscriptionRegistry] = {
            (Topic.EVENT, EventAction.SUBSCRIBE): self.events.subscriptions,
            (Topic.RPC, RpcAction.PROVIDE): self.rpc.providers,
            (Topic.PRESENCE, PresenceAction.SUBSCRIBE): self.presence.subscriptions,
            **{(Topic.RECORD, action): self.records.subscriptions for action in _RECORD_SUBSCRIBES},
        }
        """The registry each subscribing message adds to (``limits.max_subscriptions_...``)."""
        self._subscribing_actions = frozenset(action for _, action in self._subscribing)
        """Their action numbers, of any topic: most messages are ruled out by the action alone,
        a cheaper test than the (topic, action) key."""
        for registry in (self.events.listen, self.records.listen):
            registry.shuffle = self.config.listen.shuffle_providers
            registry.rematch_interval = self.config.listen.rematch_interval
        self.gate: Gate | None = None
        """The permission file's checks; None (no ``permissions``): everything is allowed."""
        if self.config.permissions:
            self.gate = Gate(
                self._load_permissions(),
                self.store,
                max_json_depth=self.config.server.max_json_depth,
                trips=self.trips,
                refuse_nul=self.records.refuse_nul,
            )
        self.records.gate = self.gate
        self._direct_rpc = self.gate is None and self.config.server.max_message_size >= 0x80
        """Whether a client's plain RPC messages go to the handler without a ``Message``
        (``decode_rpc``): not under permissions, whose rules read one, nor with a size limit
        that a frame under 128 bytes could pass."""
        self.handlers: dict[int, Handler] = {
            Topic.EVENT: self.events,
            Topic.RECORD: self.records,
            Topic.RPC: self.rpc,
            Topic.PRESENCE: self.presence,
        }
        self.http_api = HttpApi(
            self.config.http,
            authenticator=self.authenticator,
            dispatch=self.dispatch,
            max_json_depth=self.config.server.max_json_depth,
            max_reply_bytes=self.config.server.max_send_buffer,
            trips=self.trips,
        )
        self.cluster: ClusterNode | None = None
        if self.config.cluster is not None:
            self._join_cluster()
        self._tcp_server: asyncio.Server | None = None
        self._sockets: set[Connection] = set()
        """Every TCP connection, open WebSocket or not (``connections``: the open ones)."""
        self._outbox = Outbox(max_total=self.config.server.max_send_buffer_total, trips=self.trips)
        self._per_ip: dict[str, int] = {}
        self.max_connections = connection_cap(self.config.server.max_connections)
        self._refusals_held_max = refusals_held_max(self.max_connections)
        self._max_name = limits.max_name_length
        self._max_name_chars = limits.max_name_length // 4  # no longer string can be too long
        self._max_names = limits.max_names_per_message
        self._rate = self.config.server.max_messages_per_second
        self._burst = float(self.config.server.message_burst)
        self.serving = False
        self._loop_name = "asyncio"  # the running loop's, once started (/metrics)
        self._connection_type: type[Connection] = BufferedConnection
        """What a socket's protocol is: read into a shared buffer, except on uvloop (see
        ``BufferedConnection``)."""
        self._heartbeat: asyncio.Task[None] | None = None
        self.port: int = self.config.server.port

    def _join_cluster(self) -> None:
        """Become a node of the cluster ``config.cluster`` names (docs/cluster.md)."""
        from .cluster import ClusterNode  # only a cluster node loads the driver
        from .cluster.records import ClusterRecords

        assert self.config.cluster is not None
        records = self.store if isinstance(self.store, ClusterRecords) else None
        cluster = ClusterNode(
            self.config.cluster,
            default_name=f"{socket.gethostname()}:{self.config.server.port}",
            on_event=self.events.deliver,
            on_presence=self.presence.announce,
            local_users=self.presence.local_users,
            records=records,
            subscribed_records=self.records.subscriptions.names,
            limits=self.config.limits,
        )
        self.events.cluster_publish = cluster.publish_event
        self.presence.shared = cluster.presence
        cluster.serve_rpc(self.rpc, self.trips)
        cluster.serve_listen(self.events.listen)
        cluster.serve_listen(self.records.listen)
        if records is not None:
            records.on_change = self.records.cluster_change
            records.interested = self.records.subscriptions.has_subscribers
            self.records.authority = records
            self.records.commit_retries = self.config.cluster.max_commit_retries
        self.cluster = cluster

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        if self.cluster is not None:
            try:
                await self.cluster.start()
            except BaseException:
                await self.store.close()
                raise
        cfg = self.config.server
        loop = asyncio.get_running_loop()
        self._loop_name = running_loop_name()
        if self._loop_name == "uvloop":
            self._connection_type = Connection
        if self.max_connections < cfg.max_connections:
            log.warning(
                "server.max_connections lowered to %d: the file-descriptor limit (ulimit -n) "
                "leaves no room for %d",
                self.max_connections,
                cfg.max_connections,
            )
        if loop.get_exception_handler() is None:  # the application's own handler stays
            loop.set_exception_handler(_throttled_exception_handler)
        dual = dual_stack_socket(cfg.host, cfg.port)  # "::": IPv4 too (gateway/bind.py)
        if dual is not None:
            try:
                self._tcp_server = await loop.create_server(
                    self._new_socket, sock=dual, ssl=self._ssl
                )
            except BaseException:
                dual.close()
                raise
        else:
            self._tcp_server = await loop.create_server(
                self._new_socket, cfg.host, cfg.port, ssl=self._ssl
            )
        self.serving = True
        sock = next(iter(self._tcp_server.sockets))
        self.port = sock.getsockname()[1]
        self._heartbeat = asyncio.create_task(self._check_heartbeats())
        log.info("recordgate listening on %s%s", authority(cfg.host, self.port), cfg.path)
        if not self.config.auth and not _loopback(cfg.host):
            log.warning(
                "authentication is open (no auth configured) and the server listens on %s: "
                "anyone who can reach it can log in as anyone (see 'Securing recordgate')",
                cfg.host,
            )

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
                conn.shutdown()
            if self._sockets:
                await asyncio.wait([conn.closed for conn in self._sockets])
            await self._tcp_server.wait_closed()
        if isinstance(self.authenticator, AuthChain):
            await self.authenticator.close()
        await self.store.close()  # a cluster node flushes through Redis: before leaving
        if self.cluster is not None:
            await self.cluster.close()

    def reload(self) -> None:
        """Re-read the files the server reads at startup (SIGHUP): users, key files and
        permissions. Connections stay; a broken file is logged and what was loaded before
        stays."""
        log.info("reloading (SIGHUP)")
        if isinstance(self.authenticator, AuthChain):
            self.authenticator.reload()
        if self.gate is not None:
            try:
                self.gate.permissions = self._load_permissions()
            except ConfigError as exc:
                log.error("%s; keeping the permissions loaded before", exc)
            else:
                log.info("permissions reloaded from %s", self.config.permissions)

    def _load_permissions(self) -> Permissions:
        return Permissions.load(
            self.config.permissions, max_cross_reads=self.config.permissions_max_cross_reads
        )

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
            body = metrics.render(
                connections=len(self.connections),
                store=self.store.stats,
                trips=self.trips,
                send_buffers=self._outbox.held,
                cluster=self.cluster.stats if self.cluster is not None else None,
                received=self.messages_received,
                sent=self._outbox.sent,
                records_subscribed=len(self.records.subscriptions),
                event_loop=self._loop_name,
                rule_read_errors=self.gate.read_errors if self.gate is not None else None,
            )
            response = protocol.reject(http.HTTPStatus.OK, body)
            del response.headers["Content-Type"]  # reject's text/plain: one Content-Type only
            response.headers["Content-Type"] = metrics.CONTENT_TYPE
            return response
        if path != cfg.path:
            return protocol.reject(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    def http_reader(self) -> RequestReader:
        return RequestReader(self.config.http.max_body_size)

    async def http_request(self, conn: Connection, request: HttpRequest) -> HttpResponse:
        """A request that is not a GET: the HTTP API's, or 404."""
        if not self.config.http.enabled or not self.http_api.serves(request.path):
            return HttpResponse.text(404, "Not Found")
        return await self.http_api.handle(request, conn.peer or "?")

    @property
    def http_timeout(self) -> float:
        # The API answers within its request_timeout; the margin covers logging in.
        return self.config.http.request_timeout + 10.0

    # -- connections ---------------------------------------------------------------------

    def _new_socket(self) -> Connection:
        cfg = self.config.server
        session = Session(
            max_message_size=cfg.max_message_size,
            max_auth_attempts=cfg.max_auth_attempts,
            max_json_depth=cfg.max_json_depth,
            trips=self.trips,
        )
        # Size policy: up to the limit, served; up to twice the limit, answered with PARSER
        # MAXIMUM_MESSAGE_SIZE_EXCEEDED and the connection (with its subscriptions) kept;
        # beyond that, closed with 1009 unread, as the reference closes anything over it.
        conn = self._connection_type(
            self,
            self._outbox,
            session,
            max_size=cfg.max_message_size * 2,
            max_send_buffer=cfg.max_send_buffer,
            max_receive_queue=cfg.max_receive_queue,
        )
        return conn

    def connection_count(self) -> int:
        """TCP connections counted against ``server.max_connections`` (WebSocket or not)."""
        return len(self._sockets)

    def admit(self, conn: Connection, peer: str) -> str | None:
        """Count ``conn`` from ``peer``; why it must be refused (HTTP 503), or None.

        Called once the transport is made (with TLS: once its handshake succeeded), so a
        socket that never gets that far is never counted nor waited for.
        """
        self._sockets.add(conn)
        conn.closed.add_done_callback(lambda _: self._forget_socket(conn))
        peer = client_address(peer)  # an IPv4 client of the "::" socket: its IPv4 address
        key = client_key(peer)
        count = self._per_ip.get(key, 0) + 1
        self._per_ip[key] = count
        conn.peer = peer
        if len(self._sockets) > self.max_connections:
            key = "server.max_connections"
        elif count > self.config.server.max_connections_per_ip:
            key = "server.max_connections_per_ip"
        else:
            return None
        self.trips.trip(key)
        _throttled.warning("refusing a connection from %s: %s reached", peer, key)
        return f"Too many connections ({key}).\n"

    def refusals_full(self) -> bool:
        # Refused sockets stay in ``_sockets`` until they close: those past the cap are them.
        return len(self._sockets) - self.max_connections > self._refusals_held_max

    def _forget_socket(self, conn: Connection) -> None:
        self._sockets.discard(conn)
        peer = conn.peer
        if peer is not None:
            conn.peer = None
            key = client_key(peer)
            count = self._per_ip.get(key, 0) - 1
            if count > 0:
                self._per_ip[key] = count
            else:
                self._per_ip.pop(key, None)

    def opened(self, conn: Connection, request: Request) -> None:
        if self._keep_headers:
            conn.headers = dict(request.headers.raw_items())
        conn.last_seen = conn.read_at  # the read that opened it
        conn.tokens = self._burst
        conn.auth_timer = asyncio.get_running_loop().call_later(
            self.config.server.unauthenticated_timeout, self._auth_timeout, conn
        )
        self.connections.add(conn)

    def received(self, conn: Connection, frame: bytes | str) -> Awaitable[None] | None:
        """One message from ``conn``: through its session to a topic handler (a short RPC
        request or answer of the common shape, ``decode_rpc``, straight to the RPC handler)."""
        now = conn.read_at  # when it arrived
        if self._rate:  # a token bucket; last_seen is when it was last filled
            tokens = conn.tokens + (now - conn.last_seen) * self._rate
            if tokens < 1.0:
                conn.tokens = tokens
                conn.last_seen = now
                self._too_fast(conn)
                return None
            conn.tokens = tokens - 1.0 if tokens < self._burst else self._burst - 1.0
        conn.last_seen = now
        session = conn.session
        if self._direct_rpc and len(frame) > 2 and frame[2] == _RPC and session.state is _OPEN:
            fields = decode_rpc(frame)  # type: ignore[arg-type]  # (a text frame's [2] is a str)
            if fields is not None and len(fields[1]) <= self._max_name_chars:
                # What session.receive, dispatch and handle do with the message decoded, but
                # without building it: it is open, under the size and name limits, of a
                # known action, and no permissions are configured; the handler's own checks
                # (the data's JSON, the correlation id) are the ones handle runs.
                self.messages_received[_RPC] += 1
                try:
                    self.rpc.received(conn, *fields)
                except Exception:
                    _throttled.exception("handling %r from %r failed", frame, conn)
                return None
        result = session.receive(frame)
        if session.outbox:
            conn.flush_session()
        pending: Awaitable[None] | None = None
        if type(result) is Message:
            pending = self.dispatch(conn, result)
        elif result is not None:
            assert isinstance(result, AuthRequest)
            pending = self._authenticate(conn, result.auth_data)
        if session.closing:
            conn.close(session.close_code, session.close_reason)
        return pending

    def _too_fast(self, conn: Connection) -> None:
        """Past ``server.max_messages_per_second``: say so and close; drop what follows."""
        if not conn.is_open or conn.protocol.close_expected():
            return
        key = "server.max_messages_per_second"
        self.trips.trip(key)
        _throttled.warning("%r sends faster than %s; closing it", conn, key)
        reason = f"message rate limit exceeded ({key}: {self._rate:g}/s)"
        conn.send(Message(Topic.CONNECTION, ConnectionAction.ERROR, data=json.dumps(reason)))
        conn.close(CLOSE_POLICY, "message rate limit exceeded")

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

    def dispatch(self, conn: Connection, msg: Message) -> Awaitable[None] | None:
        """Hand ``msg`` from ``conn`` (a client's, or the HTTP API's virtual connection) to
        its topic handler, within ``limits``."""
        topic = msg.topic
        self.messages_received[topic & 0x7F] += 1
        handler = self.handlers.get(topic)
        if handler is None:  # a known topic recordgate does not serve (LOCK, MONITORING, ...)
            conn.send(Message(Topic.PARSER, ParserAction.UNKNOWN_TOPIC, original_topic=topic))
            return None
        name = msg.name
        if (
            msg.names or (name is not None and len(name) > self._max_name_chars)
        ) and self._over_limits(conn, msg):
            return None
        action = msg.action
        if action in self._subscribing_actions:
            registry = self._subscribing.get((topic, action))
            if registry is not None and self._too_many_subscriptions(conn, msg, registry):
                return None
        if self.gate is not None:
            checked = self.gate.filter(conn, msg)
            if checked is None:
                return None
            if not isinstance(checked, Message):
                return self._guard(conn, msg, self._handle_checked(conn, handler, checked))
            msg = checked
        try:
            pending = handler.handle(conn, msg)
        except Exception:
            _throttled.exception("handling %r from %r failed", msg, conn)
            return None
        if pending is None:
            return None
        return self._guard(conn, msg, pending)

    def _over_limits(self, conn: Connection, msg: Message) -> bool:
        """Answer ``msg`` if its names pass ``limits``; records check their own name lengths."""
        names = msg.names
        if names and len(names) > self._max_names:
            key, reason = "limits.max_names_per_message", f"more than {self._max_names} names"
        elif msg.topic == Topic.RECORD or not self._too_long(msg.name, names):
            return False
        else:
            key, reason = "limits.max_name_length", f"a name over {self._max_name} bytes"
        self._refuse(conn, msg, key, reason)
        return True

    def _too_many_subscriptions(
        self, conn: Connection, msg: Message, registry: SubscriptionRegistry
    ) -> bool:
        """Answer ``msg`` if it would take ``conn`` past ``max_subscriptions_per_connection``
        (nothing of it is subscribed); names it already holds do not count twice."""
        names = msg.names or ([msg.name] if msg.name is not None else [])
        limit = self.config.limits.max_subscriptions_per_connection
        if len(names) <= limit and registry.new_for(conn, names) <= limit:
            return False
        key = "limits.max_subscriptions_per_connection"
        self._refuse(conn, msg, key, f"more than {limit} subscriptions on this connection")
        return True

    def _refuse(self, conn: Connection, msg: Message, key: str, reason: str) -> None:
        """Tell ``conn`` that ``msg`` passed limit ``key``, as its topic's invalid data."""
        self.trips.trip(key)
        conn.send(
            Message(
                msg.topic,
                _INVALID_DATA[msg.topic],
                original_action=msg.action,
                correlation_id=msg.correlation_id,
                data=json.dumps(f"{reason} ({key})"),
                is_error=True,
            )
        )

    def _too_long(self, name: str | None, names: list[str] | None) -> bool:
        limit, chars = self._max_name, self._max_name_chars
        for one in (name, *(names or ())):
            if one is not None and len(one) > chars and len(one.encode()) > limit:
                return True
        return False

    async def _handle_checked(
        self, conn: Connection, handler: Handler, checked: Awaitable[Message | None]
    ) -> None:
        """A message whose permission rule read other records: handle what it allows."""
        msg = await checked
        if msg is not None:
            pending = handler.handle(conn, msg)
            if pending is not None:
                await pending

    async def _guard(self, conn: Connection, msg: Message, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception:
            _throttled.exception("handling %r from %r failed", msg, conn)

    async def _authenticate(self, conn: Connection, auth_data: dict[str, Any]) -> None:
        try:
            await self._login(conn, auth_data)
        finally:
            session = conn.session
            if session.closing:
                conn.close(session.close_code, session.close_reason)

    async def _login(self, conn: Connection, auth_data: dict[str, Any]) -> None:
        try:
            connection = {"remoteAddress": conn.peer, "headers": conn.headers or {}}
            result = await self.authenticator.authenticate(auth_data, connection)
        except Exception:
            _throttled.exception("authenticator failed")  # never log auth_data: it holds secrets
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
                conn.auth_timer = None  # the loop drops cancelled timers; so does an idle conn
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
                _throttled.info("%r missed its heartbeats; closing", conn)
                conn.last_seen = float("inf")  # one close per connection, not one per sweep
                conn.close(reason="heartbeat missed")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _cannot_hold_nul(store: RecordStore) -> bool:
    """Whether the store's connector declares it cannot hold U+0000: then record writes that
    carry it are refused at once, instead of accepted and undone when the flush is refused."""
    from connectors.base import NUL, cannot_hold

    return NUL in cannot_hold(getattr(store, "connector", None))


def _cluster_store(config: Config) -> RecordStore:
    """A cluster node's store: records committed in Redis, written behind to the shared
    storage (``gateway.cluster.records``); bound to the node's Redis in ``_join_cluster``."""
    from connectors.registry import create_connector

    from .cluster.records import ClusterRecords
    from .store import storage_url

    assert config.cluster is not None
    storage = config.storage
    return ClusterRecords(
        create_connector(storage.type, storage_url(storage), **storage.options),
        cluster=config.cluster,
        cache=config.cache,
        write_behind=config.write_behind,
        max_concurrent_loads=config.limits.max_concurrent_loads,
    )
