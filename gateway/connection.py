"""One client connection: the session state, who is logged in, and the synchronous send path.

Sends never await. Everything a connection is sent during one pass of the event loop goes to
the socket in one write when the pass ends: a burst of messages (clients write many at a time)
costs one system call per subscriber rather than one per message. A fan-out sends the same
bytes to every subscriber, and since a server neither masks nor (with compression off, as
``server.py`` sets it) transforms them, the WebSocket frame is built once per broadcast, not
once per subscriber. Frames join the websockets protocol's own write queue, so whatever
websockets writes itself (a close frame) goes out in order, after them.
A client whose buffer passes ``max_send_buffer`` is too slow to keep up and is disconnected
instead of growing memory without bound.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State as WsState

from .auth import OPEN_USER
from .protocol import Message, encode
from .protocol.session import Session

__all__ = ["Connection"]

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_closing: set[asyncio.Task[None]] = set()
"""Close handshakes in flight; held so that the tasks are not collected half-way."""


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
        head = bytes((0x82, size))
    elif size < 1 << 16:
        head = b"\x82\x7e" + size.to_bytes(2, "big")
    else:
        head = b"\x82\x7f" + size.to_bytes(8, "big")
    framed = head + frame
    _framed = (frame, framed)
    return framed


class Connection:
    __slots__ = (
        "_flush_scheduled",
        "_loop",
        "authenticated",
        "client_data",
        "id",
        "last_seen",
        "max_send_buffer",
        "server_data",
        "session",
        "user_id",
        "ws",
    )

    def __init__(self, ws: ServerConnection, session: Session, *, max_send_buffer: int) -> None:
        self.id = next(_ids)
        self.ws = ws
        self.session = session
        self.user_id = OPEN_USER
        self.authenticated = False
        self.client_data: Any = None
        self.server_data: Any = None
        self.last_seen = 0.0
        self.max_send_buffer = max_send_buffer
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False

    def __repr__(self) -> str:
        return f"<Connection #{self.id} user={self.user_id!r}>"

    @property
    def is_open(self) -> bool:
        return self.ws.protocol.state is WsState.OPEN

    def send(self, msg: Message) -> None:
        self.send_frame(encode(msg))

    def send_frame(self, frame: bytes) -> None:
        """Queue one encoded frame; never blocks. Dropped silently if the socket is closing."""
        protocol = self.ws.protocol
        if protocol.state is not WsState.OPEN:
            return
        protocol.writes.append(_ws_frame(frame))  # what protocol.send_binary(frame) would add
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        ws = self.ws
        writes = ws.protocol.data_to_send()
        if not writes:
            return  # websockets flushed them already, e.g. with a close frame
        try:
            if all(writes):
                ws.transport.write(b"".join(writes))
            else:  # an end-of-stream marker (never seen while open): websockets' own way
                for data in writes:
                    if data:
                        ws.transport.write(data)
                    elif ws.transport.can_write_eof():
                        ws.transport.write_eof()
        except Exception as exc:  # the transport is going away; its reader notices
            log.debug("send to %r failed: %s", self, exc)
            return
        if ws.transport.get_write_buffer_size() > self.max_send_buffer:
            log.warning("%r is too slow to keep up; disconnecting", self)
            ws.transport.abort()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake without waiting for it; the reader loop then ends."""
        task = asyncio.ensure_future(self.ws.close(code, reason))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    def flush_session(self) -> None:
        """Send what the session state machine queued."""
        if self.session.outbox:
            for msg in self.session.take_outbox():
                self.send(msg)
