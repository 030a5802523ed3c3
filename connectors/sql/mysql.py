"""The MariaDB/MySQL write path: each batch is one transaction straight on an asyncmy connection.

Through SQLAlchemy every batch checks a connection out of the pool (a ``COM_PING`` round trip),
begins and commits through the greenlet bridge, and rolls back again when the connection goes
back (a second extra round trip). Here the writer holds one connection of the engine's pool, so
it has the engine's connect arguments and session settings (``init_command``, utf8mb4, READ
COMMITTED, no "found rows"), and runs a batch on its asyncmy cursor: the upsert statements of
``statements.py``, the deletes, the read-back if needed, then ``COMMIT``; two round trips for a
batch of puts. Concurrent batches take turns on it (a lock).

A batch with fenced operations locks their fence rows first (``fences.py``), then writes the
records, settles the outcomes and the fences, all in its one transaction.

Any error rolls the transaction back. A connection that was lost, or whose batch was cancelled
(the call's timeout) part way through a statement, is closed rather than reused: the next batch
takes a new one from the pool. A batch whose held connection turns out lost is run once more on a
new one, as the pool's pre-ping would have done; running a batch again is safe, since every
statement is conditional on the version and the read-back tells a retry from a conflict.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connectors._common import dump_json, load_json
from connectors.base import Delete, Put, Snapshot, StorageUnavailable, WriteResult, collection_of
from connectors.sql.fences import (
    FenceSQL,
    fenced_names,
    is_fenced,
    kept_fences,
    refusals,
    settlement,
)
from connectors.sql.outcomes import outcomes
from connectors.sql.statements import Row, Upsert

T = TypeVar("T")

__all__ = ["MySQLWriter"]

logger = logging.getLogger(__name__)

_CHUNK = 500  # names per IN (...) list of the read-back
# Client errors of a connection that is gone: server gone away, lost during a query, lost.
_LOST = frozenset({2006, 2013, 2055})


class MySQLWriter:
    """Writes batches into ``target`` (a quoted table name); ``open`` before, ``close`` after."""

    def __init__(self, target: str, fences: str) -> None:
        self._fences = FenceSQL(fences, "%s", mysql=True)
        self._delete = f"DELETE FROM {target} WHERE name = %s AND version <= %s"
        self._select = f"SELECT name, version, data FROM {target} WHERE name IN "
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None  # the pooled connection held
        self._db: Any = None  # its asyncmy Connection; None: take a new one first
        self._dropped: list[AsyncConnection] = []  # closed sockets, still to hand back
        self._lock = asyncio.Lock()

    async def open(self, engine: AsyncEngine) -> None:
        self._engine = engine
        await self._connect()

    async def close(self) -> None:
        conn, self._conn, self._db, self._engine = self._conn, None, None, None
        if conn is not None:
            await conn.close()  # back to the pool, which the engine's disposal then closes
        await self._release()

    async def write(
        self, ops: Sequence[Put | Delete], now: datetime, upsert: Upsert
    ) -> list[WriteResult]:
        """Apply ``ops`` in one transaction, stamped ``now``."""
        # In name order: rows are locked in the order they are written, so concurrent batches
        # sharing names (two gateways, a retry) lock them in one order and cannot deadlock.
        by_name = sorted(ops, key=lambda op: op.name)
        # Serialised before the database is touched: non-JSON data is StorageRejected up front.
        texts = {op.name: dump_json(op.data) for op in by_name if isinstance(op, Put)}
        rows: list[Row] = [
            (op.name, collection_of(op.name), op.version, texts[op.name], now)
            for op in by_name
            if isinstance(op, Put)
        ]
        deletes = [(op.name, op.version) for op in by_name if isinstance(op, Delete)]
        if is_fenced(ops):

            def fenced(cursor: Any) -> Awaitable[list[WriteResult]]:
                return self._fenced_transaction(cursor, upsert, ops, by_name, texts, now)

            return await self._retrying(fenced)

        def plain(cursor: Any) -> Awaitable[tuple[set[str] | None, dict[str, Snapshot]]]:
            return self._transaction(cursor, upsert, rows, deletes)

        applied, stored = await self._retrying(plain)
        return outcomes(ops, texts, applied, stored)

    async def _retrying(self, body: Callable[[Any], Awaitable[T]]) -> T:
        """``body`` run as the batch's transaction, once more on a new connection if the held
        one turns out lost."""
        async with self._lock:
            reused = self._db is not None
            try:
                return await self._run(body)
            except Exception:
                if not reused or self._db is not None:
                    raise
                logger.info("the held MariaDB/MySQL connection was lost; retrying on a new one")
                return await self._run(body)

    async def _run(self, body: Callable[[Any], Awaitable[T]]) -> T:
        """The batch's transaction; on any error rolled back, or the connection dropped."""
        db = self._db if self._db is not None else await self._connect()
        try:
            return await body(db.cursor())
        except asyncio.CancelledError:
            self._drop()  # possibly mid-statement: the protocol state is unknown
            raise
        except BaseException as exc:
            if _lost(db, exc):
                self._drop()
                raise
            try:
                await db.rollback()
            except BaseException:
                self._drop()
            raise

    async def _fenced_transaction(
        self,
        cursor: Any,
        upsert: Upsert,
        ops: Sequence[Put | Delete],
        by_name: list[Put | Delete],
        texts: dict[str, str],
        now: datetime,
    ) -> list[WriteResult]:
        fences = self._fences
        names = fenced_names(by_name)
        # Placeholders for new names and an exclusive lock on existing rows, in name order;
        # then the locking read of their fences.
        for query, chunk in fences.insert_queries(names):
            await cursor.execute(query, chunk)
        locked: list[tuple[str, int | None]] = []
        for query, chunk in fences.lock_queries(names):
            await cursor.execute(query, chunk)
            locked += await cursor.fetchall()
        kept = kept_fences(names, locked)
        refused = refusals(by_name, kept)
        todo = [op for op in by_name if op.name not in refused]
        rows: list[Row] = [
            (op.name, collection_of(op.name), op.version, texts[op.name], now)
            for op in todo
            if isinstance(op, Put)
        ]
        deletes = [(op.name, op.version) for op in todo if isinstance(op, Delete)]
        applied, stored = await self._statements(cursor, upsert, rows, deletes, list(refused))
        results = outcomes(ops, texts, applied, stored, refused)
        raise_to, placeholders = settlement(results, kept)
        if raise_to:
            await cursor.executemany(fences.update, [(f, n) for n, f in raise_to])
        for query, chunk in fences.delete_queries(placeholders):
            await cursor.execute(query, chunk)
        await cursor.connection.commit()
        return results

    async def _transaction(
        self, cursor: Any, upsert: Upsert, rows: list[Row], deletes: list[tuple[str, int]]
    ) -> tuple[set[str] | None, dict[str, Snapshot]]:
        result = await self._statements(cursor, upsert, rows, deletes, [])
        await cursor.connection.commit()
        return result

    async def _statements(
        self,
        cursor: Any,
        upsert: Upsert,
        rows: list[Row],
        deletes: list[tuple[str, int]],
        unresolved: list[str],
    ) -> tuple[set[str] | None, dict[str, Snapshot]]:
        """The conditional upserts and deletes, and the read-back of the names not known
        written (and of ``unresolved``), in the caller's transaction."""
        applied: set[str] | None = None  # None: every put written
        if rows:
            written = await upsert(cursor, rows)
            if written is None or len(written) < len(rows):
                # Some rows were refused; which ones, the read-back tells.
                applied = written or set()
                unresolved += [row[0] for row in rows if row[0] not in applied]
        if deletes:
            await cursor.executemany(self._delete, deletes)
            unresolved += [name for name, _ in deletes]
        stored: dict[str, Snapshot] = {}
        for start in range(0, len(unresolved), _CHUNK):
            chunk = unresolved[start : start + _CHUNK]
            await cursor.execute(f"{self._select}({', '.join(['%s'] * len(chunk))})", chunk)
            for name, version, data in await cursor.fetchall():
                stored[name] = Snapshot(name, int(version), load_json(data))
        return applied, stored

    async def _connect(self) -> Any:
        await self._release()
        if self._engine is None:
            raise StorageUnavailable("the MariaDB/MySQL writer is closed")
        conn = await self._engine.connect()  # with the engine's connect args and session
        try:
            db = (await conn.get_raw_connection()).driver_connection
        except BaseException:
            await conn.close()
            raise
        self._conn, self._db = conn, db
        return db

    def _drop(self) -> None:
        """Close the held connection's socket now (no I/O, so safe while being cancelled); the
        pool learns of it on the next ``_release``."""
        conn, db, self._conn, self._db = self._conn, self._db, None, None
        if db is not None:
            db.close()
        if conn is not None:
            self._dropped.append(conn)

    async def _release(self) -> None:
        while self._dropped:
            conn = self._dropped.pop()
            try:
                await conn.invalidate()  # the socket is closed: the pool must not reuse it
                await conn.close()
            except Exception:
                logger.debug("releasing a dropped connection failed", exc_info=True)


def _lost(db: Any, exc: BaseException) -> bool:
    if not db.connected or isinstance(exc, OSError | EOFError):
        return True
    from asyncmy.errors import DatabaseError, InterfaceError

    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, DatabaseError):
        return bool(exc.args) and exc.args[0] in _LOST
    return False  # raised by our own code (StorageRejected): the connection is fine
