"""One driver connection per connector, shared by concurrent calls, replaced when it fails.

The driver multiplexes queries on one connection (a token per query). Two of its behaviours
shape this module:

* A query's future that is cancelled while the server still owes the answer breaks the
  connection for every other query when the answer arrives (the reader sets a result on a
  cancelled future). So a query runs in a task of its own and the caller waits for it through
  ``asyncio.shield``; a caller that gives up (its ``timeout``) discards the connection, which
  fails the abandoned query and every other one on it, instead of leaving it half-used.
* ``close()`` by default waits for the server's ``noreply_wait`` and for the transport to drain:
  a dead or hung server would hold it. Connections are closed without ``noreply_wait`` (no
  query here is sent with ``noreply``) and their transport aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from connectors.base import StorageUnavailable
from connectors.rethinkdb.driver import reql
from connectors.rethinkdb.errors import guard
from connectors.rethinkdb.url import Address

__all__ = ["Session"]

log = logging.getLogger(__name__)


class Session:
    """Runs ReQL queries on a lazily (re)opened connection; every call bounded by ``timeout``."""

    def __init__(self, address: Address, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._conn: Any = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False
        self._pending: set[asyncio.Task[Any]] = set()

    async def run(self, query: Any, what: str, **optargs: Any) -> Any:
        """The query's result (a cursor is read to the end: a list); storage errors only."""
        async with guard(what, self.timeout):
            conn = await self._connection()
            task = asyncio.ensure_future(_complete(query, conn, optargs))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                # Timed out (or the caller was cancelled): the answer may never come, or come
                # late and break the connection; either way this connection is done.
                self._discard(conn)
                raise
            except Exception:
                if not _is_open(conn):
                    self._discard(conn)
                raise

    async def _connection(self) -> Any:
        if self._closed:
            raise StorageUnavailable("rethinkdb connector is closed")
        conn = self._conn
        if conn is not None and _is_open(conn):
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and _is_open(self._conn):
                return self._conn
            if self._conn is not None:
                self._discard(self._conn)
            address = self.address
            self._conn = await reql().connect(
                host=address.host,
                port=address.port,
                db=address.database,
                user=address.user,
                password=address.password,
                # Below the call's own bound: the driver then gives up on a silent server itself
                # and closes the socket, which a cancelled handshake would leave open.
                timeout=self.timeout * 0.8,
            )
            return self._conn

    def _discard(self, conn: Any) -> None:
        if self._conn is conn:
            self._conn = None
        _abort(conn)
        task = asyncio.ensure_future(_close(conn))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """Idempotent; queries still running fail as ``StorageUnavailable``."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)
        for task in list(self._pending):
            task.cancel()
        for task in list(self._pending):
            with contextlib.suppress(BaseException):
                await task


async def _complete(query: Any, conn: Any, optargs: dict[str, Any]) -> Any:
    result = await query.run(conn, **optargs)
    if isinstance(result, list | dict) or result is None:
        return result
    if hasattr(result, "__aiter__"):  # a cursor (genuine RethinkDB streams sequences)
        try:
            return [item async for item in result]
        finally:
            with contextlib.suppress(Exception):
                await result.close()
    return result


def _is_open(conn: Any) -> bool:
    try:
        return bool(conn.is_open())
    except Exception:
        return False


def _abort(conn: Any) -> None:
    """Drop the socket at once: ``close()`` would first flush to a server that may not read."""
    instance = getattr(conn, "_instance", None)
    writer = getattr(instance, "_streamwriter", None)
    transport = getattr(writer, "transport", None)
    if transport is not None:
        transport.abort()


async def _close(conn: Any) -> None:
    try:
        async with asyncio.timeout(1.0):
            await conn.close(noreply_wait=False)
    except Exception as exc:  # nothing left to save on a connection being thrown away
        log.debug("closing a RethinkDB connection: %s", exc)
