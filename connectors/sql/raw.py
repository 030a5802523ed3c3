"""Raw readers: the stored rows through the native driver (stdlib ``sqlite3``, ``asyncpg``,
``asyncmy``).

They share nothing with the connector (own connection, hand-written SQL), so the conformance
suite sees what a data team would see.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import URL, make_url

from connectors.base import RawReader
from connectors.sql.schema import MYSQL_FAMILY

__all__ = ["MySQLRawReader", "PostgresRawReader", "SQLiteRawReader", "raw_reader_for"]


def raw_reader_for(url: str, table: str, schema: str | None, timeout: float) -> RawReader:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("an in-memory SQLite database cannot be read from outside")
        return SQLiteRawReader(parsed.database, table)
    if backend == "postgresql":
        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresRawReader(dsn, f"{schema}.{table}" if schema else table, timeout)
    if backend in MYSQL_FAMILY:
        return MySQLRawReader(parsed, f"{schema}.{table}" if schema else table, timeout)
    raise ValueError(f"no raw reader for {backend!r}")


def _row(name: str, collection: str, version: int, data: str, updated: Any) -> dict[str, Any]:
    if isinstance(updated, str):  # SQLite keeps timestamps as ISO text, in UTC
        updated = datetime.fromisoformat(updated)
    if isinstance(updated, datetime) and updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return {
        "name": name,
        "collection": collection,
        "version": int(version),
        "data": json.loads(data),
        "updated_at": updated,
    }


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class SQLiteRawReader:
    def __init__(self, path: str, table: str) -> None:
        self._path = path
        self._table = table

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self._path)) as db:
            # LIKE is case-insensitive in SQLite by default; a raw check must be exact.
            db.execute("PRAGMA case_sensitive_like = ON")
            return db.execute(sql, params).fetchall()

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        sql = (
            f"SELECT name, collection, version, data, updated_at FROM {self._table} WHERE name = ?"
        )
        rows = await asyncio.to_thread(self._query, sql, (name,))
        return _row(*rows[0]) if rows else None

    async def count_raw(self, prefix: str = "") -> int:
        sql = f"SELECT count(*) FROM {self._table} WHERE name LIKE ? ESCAPE '\\'"
        rows = await asyncio.to_thread(self._query, sql, (_like_prefix(prefix),))
        return int(rows[0][0])

    async def close(self) -> None:
        return None


class PostgresRawReader:
    def __init__(self, dsn: str, table: str, timeout: float) -> None:
        self._dsn = dsn
        self._table = table
        self._timeout = timeout
        self._conn: Any = None

    async def _connection(self) -> Any:
        if self._conn is None:
            import asyncpg

            self._conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
        return self._conn

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        conn = await self._connection()
        row = await conn.fetchrow(
            f"SELECT name, collection, version, data::text, updated_at FROM {self._table} "
            "WHERE name = $1",
            name,
        )
        return None if row is None else _row(*row)

    async def count_raw(self, prefix: str = "") -> int:
        conn = await self._connection()
        count = await conn.fetchval(
            f"SELECT count(*) FROM {self._table} WHERE name LIKE $1 ESCAPE '\\'",
            _like_prefix(prefix),
        )
        return int(count)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class MySQLRawReader:
    """MariaDB/MySQL through ``asyncmy``, whatever driver the connector's URL names."""

    def __init__(self, url: URL, table: str, timeout: float) -> None:
        self._url = url
        self._table = table
        self._timeout = timeout
        self._conn: Any = None

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._conn is None:
            import asyncmy

            url = self._url
            self._conn = await asyncmy.connect(
                host=url.host or "127.0.0.1",
                port=url.port or 3306,
                user=url.username,
                password=url.password or "",
                database=url.database,
                unix_socket=url.query.get("unix_socket"),
                charset="utf8mb4",
                connect_timeout=self._timeout,
                autocommit=True,  # every read sees the latest commits, not a held snapshot
            )
        async with self._conn.cursor() as cursor:
            await cursor.execute(sql, params)
            return list(await cursor.fetchall())

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        rows = await self._query(
            f"SELECT name, collection, version, data, updated_at FROM {self._table} "
            "WHERE name = %s",
            (name,),
        )
        return _row(*rows[0]) if rows else None

    async def count_raw(self, prefix: str = "") -> int:
        # Backslash is LIKE's default escape character here.
        rows = await self._query(
            f"SELECT count(*) FROM {self._table} WHERE name LIKE %s", (_like_prefix(prefix),)
        )
        return int(rows[0][0])

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.ensure_closed()
