"""The SQLite write path: a batch straight through the aiosqlite connection, no SQLAlchemy.

aiosqlite runs every call in the connection's worker thread, so each call costs a thread hop
each way; SQLAlchemy's execution adds a cursor, its close and its own bookkeeping per statement.
Here a batch of puts is one ``executemany`` of the conditional upsert (one atomic statement per
row, in the batch's implicit transaction) and one ``commit``: two hops, positional tuples, the
statement text prepared once (sqlite3 caches the compiled statement by its text).

The summed row count proves every put written when it equals the number of rows (a refused row
counts 0); only otherwise, and for deletes, are the names read back in the same transaction.
If anything fails before the commit, the pool's reset on return rolls the transaction back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from connectors._common import dump_json, load_json
from connectors.base import Delete, Put, Snapshot, WriteResult, collection_of
from connectors.sql.outcomes import outcomes

__all__ = ["SQLiteWriter"]

_CHUNK = 500  # names per IN (...) list of the read-back; SQLite allows 32766 parameters


class SQLiteWriter:
    """Writes batches into ``target`` (a quoted table name) of an SQLite engine."""

    def __init__(self, target: str) -> None:
        self._upsert = (
            f"INSERT INTO {target} AS cur (name, collection, version, data, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
            "data = excluded.data, updated_at = excluded.updated_at "
            "WHERE cur.version < excluded.version"
        )
        self._delete = f"DELETE FROM {target} WHERE name = ? AND version <= ?"
        self._select = f"SELECT name, version, data FROM {target} WHERE name IN "

    @staticmethod
    def rows(ops: Sequence[Put | Delete], now: datetime) -> list[tuple[str, str, int, str, str]]:
        """The upsert's parameters for the puts in ``ops``. Serialising here, before the
        database is touched, refuses non-JSON data with ``StorageRejected`` up front."""
        # As SQLAlchemy's SQLite DateTime stores it (UTC, ISO-like text); one per batch.
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        return [
            (op.name, collection_of(op.name), op.version, dump_json(op.data), stamp)
            for op in ops
            if isinstance(op, Put)
        ]

    async def write(
        self,
        conn: AsyncConnection,
        ops: Sequence[Put | Delete],
        rows: list[tuple[str, str, int, str, str]],
    ) -> list[WriteResult]:
        """Apply ``ops`` (whose puts ``rows`` holds) in one transaction on ``conn``."""
        db: Any = (await conn.get_raw_connection()).driver_connection  # aiosqlite.Connection
        unresolved: list[str] = []
        applied: set[str] | None = None  # None: every put written
        if rows:
            cursor = await db.executemany(self._upsert, rows)
            if cursor.rowcount != len(rows):  # some refused; which ones, the read-back tells
                applied = set()
                unresolved = [row[0] for row in rows]
        deletes = [(op.name, op.version) for op in ops if isinstance(op, Delete)]
        if deletes:
            await db.executemany(self._delete, deletes)
            unresolved += [name for name, _ in deletes]
        stored = await self._read(db, unresolved) if unresolved else {}
        await db.commit()
        texts = {row[0]: row[3] for row in rows} if applied is not None else {}
        return outcomes(ops, texts, applied, stored)

    async def _read(self, db: Any, names: list[str]) -> dict[str, Snapshot]:
        found: dict[str, Snapshot] = {}
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            query = f"{self._select}({', '.join('?' * len(chunk))})"
            for name, version, data in await db.execute_fetchall(query, chunk):
                found[name] = Snapshot(name, int(version), load_json(data))
        return found
