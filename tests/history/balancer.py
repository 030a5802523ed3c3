"""A round-robin TCP load balancer for the history runs, in the test's event loop.

Each accepted connection goes to the next backend that accepts a TCP connection (a SIGKILLed
node refuses, so it is skipped) and bytes are piped both ways; when either side closes, the
other is closed too, so a client whose node died sees its connection drop and reconnects
through the balancer to a live node, as behind any TCP/WebSocket balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

__all__ = ["Balancer"]


class Balancer:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.routed: list[int] = []
        """The backend port of each connection accepted, in order."""
        self._next = itertools.cycle(range(len(backends)))
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> Balancer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.backends)):
            port = self.backends[next(self._next)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.routed.append(port)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            return
        writer.close()  # no live backend

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
