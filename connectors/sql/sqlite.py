"""The SQLite write path: each batch is one plain ``sqlite3`` transaction in aiosqlite's thread.

aiosqlite runs every call on the connection in its worker thread, and each call costs a thread
hop each way; SQLAlchemy's execution adds a pool checkout, a cursor and its close, and a reset
on return. Here a whole batch is one function run in that thread on the ``sqlite3`` connection
(aiosqlite's ``Connection._execute`` and ``_conn``: internals, but SQLAlchemy's own aiosqlite
dialect reaches into the same ones): ``executemany`` of the conditional upsert (one atomic
statement per row, in the batch's transaction), the read-back if needed, then ``COMMIT``, or
``ROLLBACK`` on any error. One hop per batch; and since the function always runs to its end, a
caller that times out or is cancelled never leaves a transaction half done.

The writer holds one connection of the engine's pool for its lifetime; aiosqlite runs the
functions queued on it one after another, so concurrent batches need no lock of ours.

The summed row count proves every put written when it equals the number of rows (a refused row
counts 0); only otherwise, and for deletes, are the names read back in the same transaction.

A batch with fenced operations runs ``_fenced_transaction`` instead: the fence rows first (see
``fences.py``; SQLite's single writer makes the insert of the placeholders the lock), then the
records, the outcomes and the fences, all in the thread and the one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connectors._common import dump_json, load_json
from connectors.base import Delete, Put, Snapshot, WriteResult, collection_of
from connectors.sql.fences import (
    FenceSQL,
    fenced_names,
    is_fenced,
    kept_fences,
    refusals,
    settlement,
)
from connectors.sql.outcomes import outcomes

__all__ = ["SQLiteWriter"]

Row = tuple[str, str, int, str, str]
"""name, collection, version, data as JSON text, updated_at as text."""
Stored = list[tuple[str, int, str]]
"""Read back: name, version, data as JSON text."""

_CHUNK = 500  # names per IN (...) list of the read-back; SQLite allows 32766 parameters


class SQLiteWriter:
    """Writes batches into ``target`` (a quoted table name); ``open`` before, ``close`` after."""

    def __init__(self, target: str, fences: str) -> None:
        self._fences = FenceSQL(fences, "?", mysql=False)
        self._upsert = (
            f"INSERT INTO {target} AS cur (name, collection, version, data, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
            "data = excluded.data, updated_at = excluded.updated_at "
            "WHERE cur.version < excluded.version"
        )
        self._delete = f"DELETE FROM {target} WHERE name = ? AND version <= ?"
        self._select = f"SELECT name, version, data FROM {target} WHERE name IN "
        self._conn: AsyncConnection | None = None
        self._db: Any = None  # the aiosqlite.Connection

    async def open(self, engine: AsyncEngine) -> None:
        conn = await engine.connect()  # with the engine's pragmas, like every connection
        try:
            db = (await conn.get_raw_connection()).driver_connection
            if not callable(getattr(db, "_execute", None)):
                raise RuntimeError("this aiosqlite has no Connection._execute; use 0.20 to 0.22")
        except BaseException:
            await conn.close()
            raise
        self._conn, self._db = conn, db

    async def close(self) -> None:
        conn, self._conn, self._db = self._conn, None, None
        if conn is not None:
            await conn.close()

    async def write(self, ops: Sequence[Put | Delete], now: datetime) -> list[WriteResult]:
        """Apply ``ops`` in one transaction, stamped ``now``."""
        db = self._db
        if db is None:
            raise sqlite3.InterfaceError("the SQLite writer is closed")
        # Serialised before the database is touched: non-JSON data is StorageRejected up front.
        # Timestamps as SQLAlchemy's SQLite DateTime stores them (UTC, ISO-like text).
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        if is_fenced(ops):
            texts = {op.name: dump_json(op.data) for op in ops if isinstance(op, Put)}
            results: list[WriteResult] = await db._execute(
                self._fenced_transaction, db._conn, ops, texts, stamp
            )
            return results
        rows = [
            (op.name, collection_of(op.name), op.version, dump_json(op.data), stamp)
            for op in ops
            if isinstance(op, Put)
        ]
        deletes: list[tuple[str, int]] = []
        if len(rows) < len(ops):
            deletes = [(op.name, op.version) for op in ops if isinstance(op, Delete)]
        all_written, stored = await db._execute(self._transaction, db._conn, rows, deletes)
        if all_written and not stored:
            return outcomes(ops, {}, None, {})
        found = {
            name: Snapshot(name, int(version), load_json(data)) for name, version, data in stored
        }
        texts = {row[0]: row[3] for row in rows}
        return outcomes(ops, texts, None if all_written else set(), found)

    def _transaction(
        self, db: sqlite3.Connection, rows: list[Row], deletes: list[tuple[str, int]]
    ) -> tuple[bool, Stored]:
        """In aiosqlite's thread: the batch's transaction. Returns whether every put was
        written, and the stored rows of the names that need reading back."""
        try:
            all_written, stored = self._rows(db, rows, deletes, [])
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return all_written, stored

    def _rows(
        self,
        db: sqlite3.Connection,
        rows: list[Row],
        deletes: list[tuple[str, int]],
        unresolved: list[str],
    ) -> tuple[bool, Stored]:
        """The conditional upserts and deletes, and the read-back of the names not known
        written (and of ``unresolved``), in the caller's transaction."""
        all_written = True
        # sqlite3 opens the transaction (BEGIN DEFERRED) before the first write statement.
        if rows and db.executemany(self._upsert, rows).rowcount != len(rows):
            all_written = False
            unresolved += [row[0] for row in rows]
        if deletes:
            db.executemany(self._delete, deletes)
            unresolved += [name for name, _ in deletes]
        stored: Stored = []
        for start in range(0, len(unresolved), _CHUNK):
            chunk = unresolved[start : start + _CHUNK]
            query = f"{self._select}({', '.join('?' * len(chunk))})"
            stored += db.execute(query, chunk).fetchall()
        return all_written, stored

    def _fenced_transaction(
        self, db: sqlite3.Connection, ops: Sequence[Put | Delete], texts: dict[str, str], stamp: str
    ) -> list[WriteResult]:
        """In aiosqlite's thread: a batch with fenced operations, fence rows first."""
        fences = self._fences
        try:
            names = fenced_names(ops)
            # The first statement writes: the transaction holds SQLite's write lock from here.
            for query, chunk in fences.insert_queries(names):
                db.execute(query, chunk)
            locked: list[tuple[str, int | None]] = []
            for query, chunk in fences.lock_queries(names):
                locked += db.execute(query, chunk).fetchall()
            kept = kept_fences(names, locked)
            refused = refusals(ops, kept)
            todo = [op for op in ops if op.name not in refused]
            rows = [
                (op.name, collection_of(op.name), op.version, texts[op.name], stamp)
                for op in todo
                if isinstance(op, Put)
            ]
            deletes = [(op.name, op.version) for op in todo if isinstance(op, Delete)]
            all_written, stored = self._rows(db, rows, deletes, list(refused))
            found = {n: Snapshot(n, int(v), load_json(d)) for n, v, d in stored}
            results = outcomes(ops, texts, None if all_written else set(), found, refused)
            raise_to, placeholders = settlement(results, kept)
            if raise_to:
                db.executemany(fences.update, [(f, n) for n, f in raise_to])
            for query, chunk in fences.delete_queries(placeholders):
                db.execute(query, chunk)
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return results
