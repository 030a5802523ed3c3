"""One client socket: WebSocket framing, the ordered hand-off of its messages to the server,
and the synchronous send path; plus the session state and who is logged in.

A ``Connection`` is the asyncio protocol of one TCP connection and drives websockets' sans-I/O
``ServerProtocol`` itself: bytes read are parsed into frames and each complete message goes to
the ``Service`` (the server) in the same callback, with no reader task or queue in between.
Once the WebSocket is open, the connection parses the client's data frames itself (a final,
masked binary or text frame is a few byte reads and one unmasking, where websockets' generator
parser costs several times that) and gives websockets every other frame whole (pings, close,
fragments, frames it must refuse), so websockets still answers and enforces everything else.
When the service answers a message with an awaitable (a storage load, a login), the messages
read meanwhile wait in order and reading pauses once ``MAX_QUEUE`` of them are waiting: a
client's messages are handled one after the other, in the order sent.

Sends never await. Everything a connection is sent while one read is handled goes to the
socket in one write when that read is done (and what is sent outside reads, from timers and
tasks, when the loop pass ends): a burst of messages (clients write many at a time) costs one
system call per subscriber rather than one per message, and a lone message is not held back.
A long read writes out as it goes, once it has handled ``FLUSH_EVERY`` messages per connection
waiting: a peer on another core (an RPC provider, a requester) starts on the first answers
while the rest are handled, instead of the two sides taking turns on one large batch, and a
fan-out, which has many connections waiting, still writes each of them once per read.
A fan-out sends the same bytes to every subscriber, and since a server neither masks nor (no
extension is negotiated) transforms them, the WebSocket frame is built once per broadcast, not
once per subscriber.
Frames join the websockets protocol's own write queue, so whatever websockets writes itself (a
pong, a close frame) goes out in order with them.

Output is bounded as it is produced, never after: each frame queued adds its length to what
the connection holds, and a connection whose replies and unsent bytes pass ``max_send_buffer``
is closed (1008) at that frame, so no request, however amplifying, queues more than that; a
client that reads its answers as fast as they come is not, but once a read has been answered
past ``max_send_buffer``, the rest of it waits a loop pass (reading paused), so one burst of
amplifying requests does not hold up every other client until it is all answered. All
connections together hold at most the ``Outbox``'s ``max_total``: past it the ones holding the
most are dropped first. Inbound, messages that wait behind a slow one pause reading once they
hold ``max_receive_queue`` bytes (or ``MAX_QUEUE`` messages).

HTTP requests: the first bytes decide. A GET (the WebSocket handshake, health, metrics) goes to
websockets' protocol; any other method to the HTTP API's strict reader (``httpapi.request``):
one request per connection, answered (or refused with a 4xx) and closed. Either way the socket
counts toward the connection caps, must send its request within ``OPEN_TIMEOUT``, and is
dropped at shutdown (an API request being answered gets ``HTTP_SHUTDOWN_GRACE`` seconds).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Awaitable
from typing import Any, Protocol, cast

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import SERVER, Request, Response
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

from .auth import OPEN_USER
from .httpapi.request import HttpRefusal, HttpRequest, HttpResponse, RequestReader
from .limits import LimitTrips, ThrottledLog
from .protocol import Message, encode
from .protocol.session import Session
from .store.slots import READER

__all__ = [
    "CLOSE_TIMEOUT",
    "MAX_QUEUE",
    "OPEN_TIMEOUT",
    "BufferedConnection",
    "Connection",
    "Outbox",
    "Service",
]

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)
_ids = itertools.count(1)

OPEN_TIMEOUT = 10.0
"""Seconds a TCP connection may take to complete its opening handshake."""
REFUSAL_TIMEOUT = 1.0
"""Seconds a refused TCP connection (too many) keeps its socket to read its 503."""
CLOSE_TIMEOUT = 10.0
"""Seconds the peer has to finish the closing handshake before the socket is dropped."""
MAX_QUEUE = 64
"""Messages that may wait behind a slow one before reading pauses."""
FLUSH_EVERY = 32
"""Messages a read handles per connection with output waiting before it writes that output
out, without waiting for the read's end: one extra write per this many messages at most."""
HTTP_SHUTDOWN_GRACE = 2.0
"""Seconds an HTTP request being answered at shutdown has to finish before its socket drops."""
OVERFLOW_GRACE = 1.0
"""Seconds a connection closed for its send buffer has to take the close frame."""
CLOSE_POLICY = 1008

_OPEN = WsState.OPEN
"""Compared with ``protocol._state``, the attribute websockets' ``state`` property returns:
read per frame and per send, the property's call would cost twenty times the read."""
_HIGH_WATER = 64 * 1024
"""Socket buffers above this count toward the outbox's budget (asyncio's default high-water
mark: below it the transport writes as fast as the peer reads)."""
_BINARY, _TEXT, _CONT, _CLOSE = Opcode.BINARY, Opcode.TEXT, Opcode.CONT, Opcode.CLOSE
_READ_VIEW = memoryview(bytearray(256 * 1024))
"""Where a ``BufferedConnection``'s reads land: the loop reads into it and hands it over in
the same callback, which copies the bytes read out, so one buffer serves all connections.
With ``data_received`` asyncio allocates 256 KiB per read, which glibc maps and unmaps each
time (an mmap, a page fault and a munmap per read)."""
_AT_EOF = StreamReader.at_eof.__code__
"""Where websockets' parser waits between frames (``Connection._take_framing``)."""


class Service(Protocol):
    """What a connection asks of the server."""

    @property
    def serving(self) -> bool:
        """False once the server is shutting down: new WebSockets are refused (503)."""

    def admit(self, conn: Connection, peer: str) -> str | None:
        """A new TCP connection from address ``peer``: why it must be refused, or None."""

    def refusals_full(self) -> bool:
        """True when refused sockets already hold the descriptors set aside for them: the
        next refusal is answered and closed at once instead of waiting to be read."""

    def respond(self, protocol: ServerProtocol, request: Request) -> Response | None:
        """The HTTP response to ``request``, or None to open the WebSocket."""

    def opened(self, conn: Connection, request: Request) -> None:
        """The WebSocket opened by ``request`` is open (the request is not kept)."""

    def received(self, conn: Connection, data: bytes | str) -> Awaitable[None] | None:
        """Handle one message; an awaitable holds back the connection's next messages."""

    def closed(self, conn: Connection) -> None:
        """No more messages will come (called once, after the last one is handled)."""

    def http_reader(self) -> RequestReader:
        """A reader for a request that is not a GET (the API's POSTs)."""

    def http_request(self, conn: Connection, request: HttpRequest) -> Awaitable[HttpResponse]:
        """The answer to a request read by ``http_reader``."""

    @property
    def http_timeout(self) -> float:
        """Seconds an HTTP request, once read, may take before its socket is dropped."""


_SMALL_HEADS = [bytes((0x82, size)) for size in range(126)]
"""The framing of a frame of each size that fits the header's first length byte."""
_framed: tuple[bytes, bytes] = (b"", b"\x82\x00")
"""The last frame and its WebSocket framing; a fan-out asks for the same object many times."""


def _ws_frame(frame: bytes) -> bytes:
    """``frame`` as one final, unmasked binary WebSocket frame (RFC 6455, section 5.2)."""
    global _framed
    last, framed = _framed
    if frame is last:
        return framed
    size = len(frame)
    if size < 126:
        head = _SMALL_HEADS[size]
    elif size < 1 << 16:
        head = b"\x82\x7e" + size.to_bytes(2, "big")
    else:
        head = b"\x82\x7f" + size.to_bytes(8, "big")
    framed = head + frame
    _framed = (frame, framed)
    return framed


class Outbox:
    """The connections with frames waiting, written together: at the end of the read that
    queued them (or in a long read, every ``FLUSH_EVERY`` messages per connection waiting),
    else when the loop pass ends (one callback for a whole fan-out, none for a read's).

    It also keeps the server-wide output budget: ``held`` is what the connections whose socket
    buffers are over the transport's high-water mark hold (as of their last write); past
    ``max_total`` the largest holders are dropped until the total is back under.
    """

    def __init__(self, *, max_total: int = 1 << 62, trips: LimitTrips | None = None) -> None:
        self.waiting: list[Connection] = []
        """The connections to write when the read ends or the loop pass does (``flush``)."""
        self._scheduled = False  # a flush is queued on the loop
        self.reading = False
        """True while a connection handles what it read (``Connection.data_received``)."""
        self.max_total = max_total
        self.trips = trips if trips is not None else LimitTrips()
        self.held = 0
        self._holders: set[Connection] = set()
        self.sent = [0] * 128
        """Messages queued to clients, by topic (``/metrics``)."""

    def hold(self, conn: Connection, size: int) -> None:
        """``conn``'s socket buffer now holds ``size`` bytes (0: drained, or gone)."""
        self._count(conn, size)
        if self.held > self.max_total:
            self._shed()

    def _count(self, conn: Connection, size: int) -> None:
        self.held += size - conn._held
        conn._held = size
        if size:
            self._holders.add(conn)
        else:
            self._holders.discard(conn)

    def _shed(self) -> None:
        for conn in list(self._holders):  # as of their last write: some have drained since
            transport = conn.transport
            self._count(conn, 0 if transport is None else transport.get_write_buffer_size())
        for conn in sorted(self._holders, key=lambda c: c._held, reverse=True):
            if self.held <= self.max_total:
                break
            self.trips.trip("server.max_send_buffer_total")
            _throttled.warning(
                "%r holds %d bytes while all clients hold over server.max_send_buffer_total; "
                "dropping it",
                conn,
                conn._held,
            )
            conn.abort()
            self._count(conn, 0)

    def add(self, conn: Connection) -> None:
        self.waiting.append(conn)
        # a read's own flush comes at its end: a callback for it would only cost the loop a
        # pass (an extra epoll_wait) after every read
        if not self.reading and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_later)

    def _flush_later(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        waiting, self.waiting = self.waiting, []
        for conn in waiting:
            conn._flush()


class Connection(asyncio.Protocol):
    __slots__ = (
        "_busy",
        "_done",
        "_ended",
        "_fragmented",
        "_fragments",
        "_frame_limit",
        "_held",
        "_http",
        "_http_task",
        "_in_outbox",
        "_inbound",
        "_loop",
        "_opened",
        "_outbox",
        "_overflowed",
        "_paused",
        "_put_off",
        "_queue",
        "_queued_bytes",
        "_room",
        "_service",
        "_sniffed",
        "_timer",
        "auth_timer",
        "authenticated",
        "client_data",
        "closed",
        "headers",
        "id",
        "last_seen",
        "max_receive_queue",
        "max_send_buffer",
        "peer",
        "protocol",
        "read_at",
        "refusal",
        "server_data",
        "session",
        "tokens",
        "transport",
        "unsent",
        "user_id",
    )

    def __init__(
        self,
        service: Service,
        outbox: Outbox,
        session: Session,
        *,
        max_size: int,
        max_send_buffer: int,
        max_receive_queue: int = 1 << 62,
    ) -> None:
        self.id = next(_ids)
        self.session = session
        self.user_id = OPEN_USER
        self.authenticated = False
        self.client_data: Any = None
        self.server_data: Any = None
        self.last_seen = 0.0
        self.read_at = 0.0
        """When the last read from the socket was handled (the loop's clock): the arrival time
        of every message it carried, read once per read rather than once per message."""
        self.tokens = 0.0
        """Messages the client may still send at once (``server.max_messages_per_second``)."""
        self.auth_timer: asyncio.TimerHandle | None = None
        self.max_send_buffer = max_send_buffer
        self.peer: str | None = None
        self.headers: dict[str, str] | None = None
        """The handshake's headers, kept only when authentication asks for them."""
        """The remote address, while the service counts this connection."""
        self.refusal: str | None = None
        """Why the connection was refused (503) as it was made, if it was."""
        self.max_receive_queue = max_receive_queue
        self.unsent = 0
        """Bytes queued since the last write to the socket."""
        self._room = max_send_buffer
        """What may be queued before the next write: ``max_send_buffer`` less the socket's
        buffer at the last write."""
        self._held = 0  # the socket buffer as the outbox's budget counts it
        self._overflowed = False
        self.protocol = ServerProtocol(max_size=max_size)
        self._frame_limit = max_size
        """The largest data frame ``_frames_received`` takes itself (websockets' max_size:
        its messages are single frames, and any fragment goes to websockets)."""
        self.transport: asyncio.Transport | None = None
        self._service = service
        self._outbox = outbox
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        """Done once the socket is gone and the service has been told."""
        self._in_outbox = False
        self._fragments: list[bytes] = []
        self._fragmented = _BINARY  # the opcode of the fragmented message being read
        self._inbound: bytes | bytearray | None = None
        """While this connection parses its own frames (``_frames_received``), the start of
        a frame not yet complete, or the frames of a read put off (a bytearray, or b""); None
        while websockets parses them."""
        self._queue: deque[bytes | str] | None = None  # made when a message must wait
        self._queued_bytes = 0
        self._busy: asyncio.Task[None] | None = None  # handling an awaitable; messages queue
        self._opened = False
        self._paused = False
        self._put_off = False  # the rest of a read waits for _read_on; reading is paused
        self._ended = False  # no more messages will come
        self._done = False  # the service was told
        self._timer: asyncio.TimerHandle | None = None
        self._sniffed: bytes | None = b""
        """The first bytes, until they tell a GET (WebSocket, health, metrics) from another
        method (the HTTP API); None once decided."""
        self._http: RequestReader | None = None
        self._http_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Connection #{self.id} user={self.user_id!r}>"

    @property
    def is_open(self) -> bool:
        return self.protocol._state is _OPEN

    # -- sending ---------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        self.send_frame(encode(msg))

    def send_frame(self, frame: bytes) -> None:
        """Queue one encoded frame; never blocks. Dropped silently if the socket is closing."""
        protocol = self.protocol
        if protocol._state is not _OPEN:
            return
        framed = _ws_frame(frame)
        self.unsent += len(framed)
        # checked per frame: no read can queue past the limit
        if self.unsent > self._room and self._still_over():
            self._overflow()
            return
        protocol.writes.append(framed)  # what protocol.send_binary(frame) would add
        outbox = self._outbox
        # The topic, read from the frame: a varint length (1 to 3 bytes), tag 0x10, topic.
        outbox.sent[frame[2 if frame[0] < 0x80 else 3 if frame[1] < 0x80 else 4] & 0x7F] += 1
        if not self._in_outbox:  # _flush_soon, inlined: this runs once per subscriber
            self._in_outbox = True
            if outbox.reading:  # (Outbox.add's common case)
                outbox.waiting.append(self)
            else:
                outbox.add(self)

    def _still_over(self) -> bool:
        """Whether what is unsent plus what the socket holds *now* passes ``max_send_buffer``.

        ``_room`` is as of the last write: a subscriber that was busy for a moment has often
        drained since, and the bytes the socket has written must not count against it."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        self._room = self.max_send_buffer - buffered
        return self.unsent > self._room

    def _overflow(self) -> None:
        """Replies would pass ``max_send_buffer``: drop what is unsent and close (1008)."""
        self._overflowed = True
        self._outbox.trips.trip("server.max_send_buffer")
        _throttled.warning(
            "%r would hold more than server.max_send_buffer (%d bytes); closing it",
            self,
            self.max_send_buffer,
        )
        self.protocol.writes.clear()
        self.unsent = 0
        self.protocol.send_close(CLOSE_POLICY, "send buffer limit exceeded")
        self._flush_soon()
        self._drop_after(OVERFLOW_GRACE)

    def flush_session(self) -> None:
        """Send what the session state machine queued."""
        if self.session.outbox:
            for msg in self.session.take_outbox():
                self.send(msg)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake, after what is already queued; never waits."""
        if self.protocol._state is _OPEN:
            self.protocol.send_close(code, reason)
            self._flush_soon()

    def _flush_soon(self) -> None:
        if not self._in_outbox:
            self._in_outbox = True
            self._outbox.add(self)

    def _flush(self) -> None:
        self._in_outbox = False
        self.unsent = 0
        protocol = self.protocol
        writes = protocol.writes  # what protocol.data_to_send() returns, without the call
        protocol.writes = []
        transport = self.transport
        if not writes or transport is None or transport.is_closing():
            return
        try:
            if len(writes) == 1 and writes[0]:  # most often: one frame of a fan-out
                transport.write(writes[0])
            elif all(writes):
                transport.write(b"".join(writes))
            else:  # the end of the stream: half-close; the peer closes its side in turn
                for data in writes:
                    if data:
                        transport.write(data)
                    elif transport.can_write_eof():
                        transport.write_eof()
                    else:
                        transport.close()
        except Exception as exc:  # the transport is going away; connection_lost follows
            log.debug("send to %r failed: %s", self, exc)
            return
        buffered = transport.get_write_buffer_size()
        self._room = self.max_send_buffer - buffered
        if self._held or buffered > _HIGH_WATER:
            self._outbox.hold(self, buffered)
        if buffered > self.max_send_buffer:
            self._outbox.trips.trip("server.max_send_buffer")
            _throttled.warning("%r is too slow to keep up; disconnecting", self)
            transport.abort()
        elif protocol._state is not _OPEN and protocol.close_expected():  # (False when open)
            self._drop_after(CLOSE_TIMEOUT)

    def _drop_after(self, delay: float) -> None:
        """Abort the socket in ``delay`` seconds unless it is gone by then (or an earlier
        deadline is already set)."""
        timer = self._timer
        if timer is not None:
            if not timer.cancelled() and timer.when() <= self._loop.time() + delay:
                return
            timer.cancel()
        self._timer = self._loop.call_later(delay, self.abort)

    def abort(self) -> None:
        """Drop the socket at once, without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self.refusal = self._service.admit(self, str(peername[0]) if peername else "?")
        if self.refusal is None:
            self._drop_after(OPEN_TIMEOUT)
            return
        # Refused (too many connections): answer 503 at once, before the request is even
        # read, so the socket (a file descriptor) is released as soon as the client reads it.
        response = self.protocol.reject(503, self.refusal)
        response.headers["Server"] = SERVER
        self.protocol.send_response(response)  # then discards whatever the client sends
        if self._service.refusals_full():
            # A burst of refusals would otherwise hold descriptors up to the process's limit;
            # the 503 is written before the close (the socket buffer takes it at once).
            self._flush()
            self.transport.close()
            return
        self._flush_soon()
        self._drop_after(REFUSAL_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        if self._sniffed is not None:
            data = self._sniff(data)
            if not data:
                return
        if self._http is not None:
            self._http_received(data)
            return
        self.read_at = self._loop.time()
        outbox = self._outbox
        outbox.reading = True
        # Storage reads the messages of this read start are this connection's (fair shares,
        # store/slots); tasks created meanwhile inherit it. Set once per read, not per message.
        token = READER.set(self)
        try:
            if self._inbound is not None or self._take_framing():
                self._frames_received(data)
            else:
                self._ws_received(data)
        finally:
            READER.reset(token)
            outbox.reading = False
            outbox.flush()  # the replies and fan-outs of this read, without waiting a pass

    def _ws_received(self, data: bytes | bytearray) -> None:
        """Hand ``data`` to websockets' protocol and handle what it parsed."""
        protocol = self.protocol
        protocol.receive_data(data)
        if protocol.writes:  # a pong, the echo of a close frame, a refused handshake
            self._flush_soon()
        for event in protocol.events_received():
            if type(event) is Frame:
                if self._opened:
                    self._frame(event)
            else:
                self._handshake(cast(Request, event))

    def _take_framing(self) -> bool:
        """Whether this connection can parse its frames itself from now on: the WebSocket is
        open, no fragmented message is under way, and websockets' parser holds no bytes and
        waits for the next frame (suspended in its reader's ``at_eof``: any other place, e.g.
        in the middle of a frame, and websockets keeps parsing)."""
        protocol = self.protocol
        if (
            not self._opened
            or protocol._state is not _OPEN
            or protocol.current_size is not None
            or protocol.reader.buffer
            or protocol.extensions
        ):
            return False
        waiting = protocol.parser  # ServerProtocol.parse, in Protocol.parse, in ...
        while (inner := getattr(waiting, "gi_yieldfrom", None)) is not None:
            waiting = inner
        if getattr(waiting, "gi_code", None) is not _AT_EOF:
            return False
        self._inbound = b""
        return True

    def _frames_received(self, data: bytes) -> None:
        """Parse what the client sends here, frame by frame, as long as each is a final,
        masked data frame within ``max_size`` (what clients send; websockets' parser costs
        several times more per frame). Any other complete frame (ping, close, a fragment, one
        websockets refuses) goes to websockets whole, so its parser ends where the frame ends;
        once one cannot be (a control frame or a bad header cut off by the read), or the
        WebSocket is no longer open, websockets gets all the rest and parses from there."""
        buf: bytes | bytearray = data
        if self._inbound:  # the start of a frame: a bytearray, so a frame read in many
            self._inbound += data  # pieces is copied once, not once per piece
            buf = self._inbound
        protocol = self.protocol
        limit = self._frame_limit
        handled = 0  # messages since the output was last written
        answered = 0  # bytes this connection was sent, as of the last write
        end, pos = len(buf), 0
        while pos < end and protocol._state is _OPEN:  # closing: websockets has the rest
            head1 = buf[pos]
            head2 = buf[pos + 1] if pos + 1 < end else 0
            length = head2 & 0x7F
            start = pos + 6 if head2 & 0x80 else pos + 2  # after the mask key, if any
            if length > 125:  # the length follows in 2 or 8 bytes, before the mask key
                size = 2 if length == 126 else 8
                start += size
                at = pos + 2 + size
                length = int.from_bytes(buf[pos + 2 : at], "big") if at <= end else 0
            stop = start + length
            simple = (head1 == 0x82 or head1 == 0x81) and head2 & 0x80 and length <= limit
            if simple and stop <= end and protocol.current_size is None:
                payload = apply_mask(buf[start:stop], buf[start - 4 : start])
                if head1 != 0x82:
                    self._data(False, payload)
                elif self._busy is None and not self._overflowed:  # _message's common case
                    pending = self._service.received(self, payload)
                    if pending is not None:
                        self._busy = self._loop.create_task(self._in_order(pending))
                    handled += 1
                    if handled >= FLUSH_EVERY and (
                        handled >= FLUSH_EVERY * len(self._outbox.waiting)
                    ):
                        handled = 0
                        answered += self.unsent
                        if self._written_mid_read(buf, stop, answered):
                            return
                else:
                    self._message(payload)
            elif start > end or (stop > end and simple):  # wait for the rest of the frame
                self._keep(buf, pos)  # (within max_size: websockets would hold it too)
                return
            elif stop > end:  # an incomplete frame websockets must see as it comes
                break
            else:  # a frame websockets must see: a control frame, a fragment, a bad one
                self._ws_received(buf[pos:stop])
            pos = stop
        if pos == end:
            self._inbound = b""
            return
        self._inbound = None
        self._ws_received(buf[pos:])

    def _written_mid_read(self, buf: bytes | bytearray, stop: int, answered: int) -> bool:
        """Write out what a long read has produced so far (``FLUSH_EVERY``); whether the read
        must stop there (the rest of ``buf`` from ``stop`` is dropped or kept for later).
        ``answered``: the bytes this read has sent its own connection, this write's included."""
        self._outbox.flush()
        transport = self.transport
        if transport is None or transport.is_closing():
            # Dropped by that write (shed for max_send_buffer_total, a reset socket): the rest
            # of the read would be answered for nobody, and max_send_buffer, whose count each
            # write empties, would never stop it. Nothing more is read from a dropped socket,
            # so the rest goes too.
            self._inbound = b""
            return True
        if answered > self.max_send_buffer and stop < len(buf):
            # A client that reads as fast as it is answered is never over max_send_buffer:
            # the rest of its read waits a loop pass, so its requests (a few bytes, each
            # answered with a record) do not hold up every other client meanwhile.
            self._keep(buf, stop)
            self._put_off = True
            transport.pause_reading()
            self._loop.call_soon(self._read_on)
            return True
        return False

    def _keep(self, buf: bytes | bytearray, pos: int) -> None:
        """Keep ``buf[pos:]``, the start of a frame (or frames put off), for the next read."""
        if isinstance(buf, bytearray):  # it is _inbound
            del buf[:pos]
        else:
            self._inbound = bytearray(memoryview(buf)[pos:])

    def _read_on(self) -> None:
        """Handle the rest of a read that was put off (``_frames_received``), then read on."""
        self._put_off = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.data_received(b"")
        if not self._put_off and not self._paused and not transport.is_closing():
            transport.resume_reading()

    def _sniff(self, data: bytes) -> bytes:
        """Route the connection by its request method: GET to the WebSocket protocol (which
        answers health, metrics and the handshake), anything else to the HTTP API's reader.
        Returns the bytes to process now (none while undecided)."""
        assert self._sniffed is not None
        data = self._sniffed + data
        if self.refusal is None and len(data) < 4 and b"GET ".startswith(data):
            self._sniffed = data
            return b""
        self._sniffed = None
        if self.refusal is None and not data.startswith(b"GET "):
            self._http = self._service.http_reader()
        return data

    def _http_received(self, data: bytes) -> None:
        assert self._http is not None
        if self._http_task is not None:
            return  # one request per connection: anything after it is ignored
        outcome = self._http.feed(data)
        if outcome is None:
            if self._http.continue_now and self.transport is not None:
                self._http.continue_now = False
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        if self.transport is not None:
            self.transport.pause_reading()
        if isinstance(outcome, HttpRefusal):
            if outcome.status == 413:
                self._outbox.trips.trip("http.max_body_size")
            self._http_task = self._loop.create_task(self._http_refuse(outcome))
        else:
            if self._timer is not None:  # read in time: OPEN_TIMEOUT no longer applies
                self._timer.cancel()
                self._timer = None
            self._drop_after(self._service.http_timeout)
            self._http_task = self._loop.create_task(self._http_serve(outcome))

    async def _http_refuse(self, refusal: HttpRefusal) -> None:
        self._http_answer(HttpResponse.text(refusal.status, refusal.reason))

    async def _http_serve(self, request: HttpRequest) -> None:
        READER.set(self)  # this task's storage reads are this connection's (store/slots)
        try:
            response = await self._service.http_request(self, request)
        except Exception:
            _throttled.exception("answering HTTP %s %s failed", request.method, request.path)
            response = HttpResponse.text(500, "Internal server error.")
        self._http_answer(response)

    def _http_answer(self, response: HttpResponse) -> None:
        """Send ``response`` and close: the transport flushes it first; a peer that does not
        read it is dropped after ``CLOSE_TIMEOUT``."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(response.wire(SERVER))
        transport.close()
        self._drop_after(CLOSE_TIMEOUT)

    def shutdown(self) -> None:
        """The server stops: close a WebSocket with 1001 (going away); give an HTTP request
        being answered ``HTTP_SHUTDOWN_GRACE`` seconds; drop any other socket now."""
        if self.is_open:
            self.close(1001)
        elif self._http_task is not None and not self._http_task.done():
            self._drop_after(HTTP_SHUTDOWN_GRACE)
        elif self.transport is not None and not self.protocol.close_expected():
            self.transport.close()  # still in its opening handshake, or reading a request
            self._drop_after(CLOSE_TIMEOUT)

    def resume_writing(self) -> None:
        if self._held:  # the socket buffer drained below the low-water mark
            self._outbox.hold(self, 0)

    def eof_received(self) -> bool | None:
        if self._http_task is not None:
            return True  # the client half-closed after its request: still send the answer
        self.protocol.receive_eof()
        self._flush()
        # Returning None closes the transport: WebSocket endpoints never write after EOF.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent; the protocol state becomes CLOSED
        if isinstance(self.protocol.parser_exc, PayloadTooBig):  # closed 1009, unread
            self._outbox.trips.trip("server.max_message_size")
        if self._timer is not None:
            self._timer.cancel()
        if self._held:
            self._outbox.hold(self, 0)
        self._end()
        if (self._done or not self._opened) and not self.closed.done():
            self.closed.set_result(None)  # never a WebSocket: nothing else to wait for

    # -- receiving -------------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        protocol = self.protocol
        try:
            response = self._service.respond(protocol, request)
        except Exception:
            _throttled.exception("answering %s failed", request.path)
            response = protocol.reject(500, "Failed to open a WebSocket connection.\n")
        if response is None:
            response = protocol.accept(request)
            if response.status_code == 101 and not self._service.serving:
                response = protocol.reject(503, "Server is shutting down.\n")
        response.headers["Server"] = SERVER
        protocol.send_response(response)
        self._flush_soon()
        if protocol.state is _OPEN:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None  # a cancelled handle and its context: ~250 B a connection
            self._opened = True
            self._service.opened(self, request)
            # websockets' parser keeps the handshake request for the connection's life; its
            # headers are most of what an idle connection costs (~1.9 kB), and no longer needed
            request.headers.clear()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _CLOSE:
            self._end()
            return
        if opcode is not _BINARY and opcode is not _TEXT and opcode is not _CONT:
            return  # ping or pong: websockets answered a ping already
        data = frame.data if type(frame.data) is bytes else bytes(frame.data)
        if opcode is _CONT or not frame.fin:  # the protocol checked their order and size
            if opcode is not _CONT:
                self._fragmented = opcode
            if data:  # empty fragments cost nothing to drop, and cannot pile up then
                self._fragments.append(data)
            if not frame.fin:
                return
            opcode, data = self._fragmented, b"".join(self._fragments)
            self._fragments = []
        self._data(opcode is _BINARY, data)

    def _data(self, binary: bool, data: bytes) -> None:
        """One whole message, binary or text, as the client sent it."""
        if binary:
            self._message(data)
            return
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            self.protocol.fail(1007, f"{exc.reason} at position {exc.start}")  # as websockets
            self._flush_soon()
            self._end()
            return
        self._message(text)

    def _message(self, data: bytes | str) -> None:
        if self._overflowed:
            return  # closed for its send buffer: the replies to the rest would be dropped
        if self._busy is not None:
            queue = self._queue
            if queue is None:
                queue = self._queue = deque()
            queue.append(data)
            self._queued_bytes += len(data)
            if (
                (len(queue) >= MAX_QUEUE or self._queued_bytes >= self.max_receive_queue)
                and not self._paused
                and self.transport
            ):
                self._paused = True
                self.transport.pause_reading()
            return
        pending = self._service.received(self, data)  # READER is this connection (a read)
        if pending is not None:
            self._busy = self._loop.create_task(self._in_order(pending))

    async def _in_order(self, pending: Awaitable[None]) -> None:
        """Await ``pending``, then handle the messages that queued behind it, in order."""
        while True:
            try:
                await pending
            except Exception:  # the service guards its awaitables; this is the last resort
                _throttled.exception("handling a message from %r failed", self)
            while True:
                queue = self._queue
                if (
                    self._paused
                    and (queue is None or len(queue) < MAX_QUEUE)
                    and self._queued_bytes < self.max_receive_queue
                    and self.transport
                ):
                    self._paused = False
                    self.transport.resume_reading()
                if not queue:
                    self._busy = None
                    self._queue = None  # idle connections keep no deque
                    if self._ended:
                        self._tell_service()
                    return
                data = queue.popleft()
                self._queued_bytes -= len(data)
                next_pending = self._service.received(self, data)
                if next_pending is not None:
                    pending = next_pending
                    break

    def _end(self) -> None:
        """No more messages will come: tell the service once those waiting are handled."""
        if self._ended:
            return
        self._ended = True
        if self._busy is None:
            self._tell_service()

    def _tell_service(self) -> None:
        self._done = True
        if self._opened:
            self._service.closed(self)
        if self.protocol.state is WsState.CLOSED and not self.closed.done():
            self.closed.set_result(None)


class BufferedConnection(Connection, asyncio.BufferedProtocol):
    """A ``Connection`` the loop reads into ``_READ_VIEW``: for the standard loop, whose
    ``data_received`` path allocates 256 KiB per read. uvloop reads into a buffer of its own
    and hands ``data_received`` the bytes read, which costs less than these two callbacks and
    the copy, so the server gives it a plain ``Connection``."""

    __slots__ = ()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_VIEW[:nbytes]))  # out before the next read lands
