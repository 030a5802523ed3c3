"""The conditional write statements of the server databases, hand-tuned for bulk throughput
(SQLite's write path is ``sqlite.py``).

Every upsert is one atomic statement per row that writes only over an older version. They differ
in syntax and in how a batch travels:

* PostgreSQL: ``INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE cur.version <
  excluded.version``, the whole batch one statement over ``unnest`` of parameter arrays, with
  ``RETURNING name`` naming the rows it wrote: one round trip per batch.
* MariaDB/MySQL: ``INSERT ... ON DUPLICATE KEY UPDATE col = IF(VALUES(version) > version, ...)``
  with multi-row ``VALUES`` lists of up to about a megabyte. On MariaDB, ``RETURNING`` tells
  which rows now hold what was sent. MySQL has no ``RETURNING``: there the server counts 1 per
  inserted row, 2 per updated one and 0 per row left alone (the engine turns off "found rows"),
  so a sum of twice the batch (all updated) or a single row's 1 or 2 proves every row written.

Rows not known to be written are then read back by the caller in the same transaction. Rows
arrive in name order (see the connector), and each statement keeps it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from hashlib import sha256
from typing import Any

from sqlalchemy import ARRAY, BigInteger, DateTime, Delete, Table, Text, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connectors.base import StorageRejected
from connectors.sql.schema import MYSQL_FAMILY

__all__ = ["Row", "Upsert", "build_delete", "build_upsert"]

Row = tuple[str, str, int, str, datetime]
"""name, collection, version, data as JSON text, updated_at."""

Upsert = Callable[[Any, list[Row]], Awaitable["set[str] | None"]]
"""Writes the rows on a PostgreSQL ``AsyncConnection`` or a MariaDB/MySQL asyncmy cursor (see
``mysql.py``); returns the names written, or ``None`` if some were not (unknown which)."""

_STATEMENT_CHARS = 1_000_000  # per multi-row statement: well below the 16 MiB max_allowed_packet

_COLUMNS = "name, collection, version, data, updated_at"
_ON_CONFLICT = (
    "ON CONFLICT (name) DO UPDATE SET version = excluded.version, data = excluded.data, "
    "updated_at = excluded.updated_at WHERE cur.version < excluded.version"
)


def build_upsert(engine: AsyncEngine, table: Table) -> Upsert:
    target = engine.dialect.identifier_preparer.format_table(table)
    if engine.dialect.name == "postgresql":
        return _postgresql_upsert(target)
    if engine.dialect.name in MYSQL_FAMILY:
        # INSERT ... RETURNING came with MariaDB 10.5; MySQL has none.
        is_mariadb = getattr(engine.dialect, "is_mariadb", False)
        version = engine.dialect.server_version_info or (0,)
        return _mysql_upsert(target, returning=is_mariadb and version >= (10, 5))
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


def _mysql_upsert(target: str, *, returning: bool) -> Upsert:
    newer = "VALUES(version) > version"  # VALUES(): this row's proposed value; bare: the stored
    # Assignments run left to right and each sees the ones before it: version goes last, so the
    # other columns still compare against the stored version.
    on_duplicate = (
        "ON DUPLICATE KEY UPDATE "
        f"data = IF({newer}, VALUES(data), data), "
        f"updated_at = IF({newer}, VALUES(updated_at), updated_at), "
        f"version = IF({newer}, VALUES(version), version)"
    )
    insert = f"INSERT INTO {target} ({_COLUMNS}) VALUES "
    packet: list[int] = []  # the server's max_allowed_packet, read on first use

    async def refuse_oversized(cursor: Any, rows: list[Row]) -> None:
        # Sent anyway, such a row makes the server drop the connection: an apparent outage that
        # the flusher would retry forever, where it should fail that one record.
        if not packet:
            await cursor.execute("SELECT @@max_allowed_packet")
            [(size,)] = await cursor.fetchall()
            packet.append(int(size))
        room = packet[0] - 1024  # the rest of the statement around one row
        for name, _, _, data, _ in rows:
            # Escaped UTF-8 takes at most 8 bytes a character; measure only what might not fit.
            if 8 * (len(name) + len(data)) > room:
                size = 2 * len(name.encode()) + len(data.encode())
                size += data.count('"') + data.count("\\") + data.count("'")
                if size > room:
                    raise StorageRejected(
                        f"record {name[:100]!r} needs {size} bytes in a statement, over the "
                        f"server's max_allowed_packet of {packet[0]}"
                    )

    async def upsert(cursor: Any, rows: list[Row]) -> set[str] | None:
        """On an asyncmy cursor, in the caller's transaction."""
        await refuse_oversized(cursor, rows)
        # One timestamp per batch (UTC; DATETIME has no zone), written into the statement once
        # rather than escaped for every row.
        values = f"(%s, %s, %s, %s, '{rows[0][4].strftime('%Y-%m-%d %H:%M:%S.%f')}')"
        tail = " RETURNING name, version, SHA2(data, 256)" if returning else ""
        # With RETURNING: every row's stored version and a digest of its JSON text, which MariaDB
        # keeps as sent; a row holding exactly what was sent was written (or is a retry).
        sent = {n: (v, sha256(d.encode()).hexdigest()) for n, _, v, d, _ in rows if returning}
        written: set[str] = set()
        count = 0
        for chunk in _chunks(rows):
            params = tuple(item for n, c, v, d, _ in chunk for item in (n, c, v, d))
            sql = f"{insert}{', '.join([values] * len(chunk))} {on_duplicate}{tail}"
            affected = await cursor.execute(sql, params)
            if not returning:
                count += affected
                continue
            stored: Sequence[Any] = await cursor.fetchall()
            for name, version, digest in stored:
                if sent[name] == (version, digest):
                    written.add(name)
        if returning:
            return written
        # Without: the server's count (1 inserted, 2 updated, 0 left alone) is decisive when
        # every row counted 2, or for a single row; n rows counting n may be all inserted, or as
        # many updated as left alone.
        if count == 2 * len(rows) or (len(rows) == 1 and count in (1, 2)):
            return {row[0] for row in rows}
        return None

    return upsert


def _chunks(rows: list[Row]) -> Iterator[list[Row]]:
    """Rows in statements of about ``_STATEMENT_CHARS`` at most (at least one row each)."""
    chunk: list[Row] = []
    size = 0
    for row in rows:
        cost = len(row[0]) + len(row[3])  # name and data; up to 4 bytes a character in UTF-8
        if chunk and size + cost > _STATEMENT_CHARS:
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += cost
    if chunk:
        yield chunk


def build_delete(table: Table) -> Delete:
    """Remove the row unless a newer version is stored (executed with many parameter sets)."""
    return table.delete().where(
        table.c.name == bindparam("b_name"), table.c.version <= bindparam("b_version")
    )
