"""The conditional write statements, hand-tuned per dialect for bulk throughput.

Both upserts are one atomic statement per row: ``INSERT ... ON CONFLICT (name) DO UPDATE ...
WHERE cur.version < excluded.version``. They differ in how a batch travels:

* PostgreSQL: the whole batch is one statement over ``unnest`` of parameter arrays, with
  ``RETURNING name`` naming the rows it wrote: one round trip per batch.
* SQLite: ``executemany`` of the single-row statement inside the batch's transaction (no
  network, so round trips are free); the summed row count tells whether every row was written.

Rows not known to be written are then read back by the caller in the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, BigInteger, DateTime, Delete, Table, Text, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["Row", "Upsert", "build_delete", "build_upsert"]

Row = tuple[str, str, int, str, datetime]
"""name, collection, version, data as JSON text, updated_at."""

Upsert = Callable[[AsyncConnection, list[Row]], Awaitable["set[str] | None"]]
"""Writes the rows; returns the names written, or ``None`` if some were not (unknown which)."""

_COLUMNS = "name, collection, version, data, updated_at"
_ON_CONFLICT = (
    "ON CONFLICT (name) DO UPDATE SET version = excluded.version, data = excluded.data, "
    "updated_at = excluded.updated_at WHERE cur.version < excluded.version"
)


def build_upsert(engine: AsyncEngine, table: Table) -> Upsert:
    target = engine.dialect.identifier_preparer.format_table(table)
    if engine.dialect.name == "postgresql":
        return _postgresql_upsert(target)
    if engine.dialect.name == "sqlite":
        return _sqlite_upsert(target)
    raise ValueError(f"the sql connector does not support the {engine.dialect.name!r} dialect")


def _postgresql_upsert(target: str) -> Upsert:
    statement = text(
        f"INSERT INTO {target} AS cur ({_COLUMNS}) "
        "SELECT u.name, u.collection, u.version, u.data::jsonb, :updated_at "
        "FROM unnest(:names, :collections, :versions, :datas) "
        "AS u(name, collection, version, data) "
        f"{_ON_CONFLICT} RETURNING cur.name"
    ).bindparams(
        bindparam("names", type_=ARRAY(Text)),
        bindparam("collections", type_=ARRAY(Text)),
        bindparam("versions", type_=ARRAY(BigInteger)),
        bindparam("datas", type_=ARRAY(Text)),
        bindparam("updated_at", type_=DateTime(timezone=True)),
    )

    async def upsert(conn: AsyncConnection, rows: list[Row]) -> set[str] | None:
        names, collections, versions, datas, stamps = zip(*rows, strict=True)
        params: dict[str, Any] = {
            "names": list(names),
            "collections": list(collections),
            "versions": list(versions),
            "datas": list(datas),
            "updated_at": stamps[0],
        }
        result = await conn.execute(statement, params)
        return {row[0] for row in result}

    return upsert


def _sqlite_upsert(target: str) -> Upsert:
    sql = f"INSERT INTO {target} AS cur ({_COLUMNS}) VALUES (?, ?, ?, ?, ?) {_ON_CONFLICT}"

    async def upsert(conn: AsyncConnection, rows: list[Row]) -> set[str] | None:
        # Timestamps as SQLAlchemy's SQLite DateTime stores them (UTC, ISO-like text).
        stamp = rows[0][4].strftime("%Y-%m-%d %H:%M:%S.%f")  # one timestamp per batch
        params = [(n, c, v, d, stamp) for n, c, v, d, _ in rows]
        result = await conn.exec_driver_sql(sql, params)
        return {row[0] for row in rows} if result.rowcount == len(rows) else None

    return upsert


def build_delete(table: Table) -> Delete:
    """Remove the row unless a newer version is stored (executed with many parameter sets)."""
    return table.delete().where(
        table.c.name == bindparam("b_name"), table.c.version <= bindparam("b_version")
    )
