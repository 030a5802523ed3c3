"""Servers that misbehave on purpose, on 127.0.0.1, for the network error tests.

* :class:`SilentServer` accepts connections and never sends a byte (a hung database, a
  half-open firewall). It reads what it is sent, so clients never block on a full buffer.
* :class:`FaultProxy` forwards to the real server until told to ``freeze`` (forward nothing,
  keep every connection open: the database stops answering mid-call) or ``cut`` (close every
  connection: the database is lost mid-batch). New connections after ``thaw`` work again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

from conformance.target import Address

__all__ = ["FaultProxy", "SilentServer"]

_CHUNK = 65536
_SENT_KEPT = 65536
"""Bytes of each connection's first requests kept for ``hold_replies_on``."""


class SilentServer:
    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await reader.read(_CHUNK):
                pass  # swallow requests, never answer
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 to ``upstream`` (a ``(host, port)`` or a unix socket path)."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        self.port = 0
        self.connections = 0
        """How many client connections it has accepted so far."""
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._replies = asyncio.Event()
        self._replies.set()
        self._hold_after = b""
        self._marked_replies = asyncio.Event()
        self._marked_replies.set()
        self._marker = b""
        self.reply_held = asyncio.Event()
        """Set once ``hold_replies`` holds bytes the upstream answered."""
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def freeze(self) -> None:
        """Forward nothing more, in either direction, on any connection (new ones included)."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def hold_replies(self, after: bytes = b"") -> None:
        """Forward requests upstream but hold its answers (a reply delayed in the network,
        or a client paused right after the server answered): the upstream acts at once, the
        client learns of it only at ``release_replies``. With ``after``, answers flow until
        a request containing those bytes went upstream (a query naming a record)."""
        self.reply_held.clear()
        self._hold_after = after
        self._replies.clear()

    def release_replies(self) -> None:
        self._replies.set()

    def hold_replies_on(self, marker: bytes) -> None:
        """Hold the answers (and pushed messages) only on connections whose requests, so far
        or later, contain ``marker`` (``b"SUBSCRIBE"``: a Redis client's Pub/Sub connection);
        the other connections flow. Until ``release_marked``."""
        self._marker = marker
        self._marked_replies.clear()

    def release_marked(self) -> None:
        self._marked_replies.set()

    def cut(self) -> None:
        """Close every connection now (a reset for the client), frozen or not."""
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            if isinstance(self.upstream, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        sent = bytearray()  # this connection's requests, for ``hold_replies_on``
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, sent=sent)),
            asyncio.create_task(self._pump(up_reader, writer, self._replies, sent=sent)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        replies: asyncio.Event | None = None,
        *,
        sent: bytearray,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    return
                await self._flowing.wait()  # frozen while reading: hold what was read
                if replies is None and len(sent) < _SENT_KEPT:
                    sent += data[: _SENT_KEPT - len(sent)]
                if replies is None and self._hold_after and self._hold_after in data:
                    self._hold_after = b""  # the awaited request: hold the answers from here
                if replies is not None and not replies.is_set() and not self._hold_after:
                    self.reply_held.set()
                    await replies.wait()
                if replies is not None and self._marker and self._marker in sent:
                    await self._marked_replies.wait()
                writer.write(data)
                await writer.drain()
