"""The stored layout: one table, one row per record, keyed by the full name; beside it the
fence table ``<table>_fences`` (``name`` primary key, ``fence`` bigint): the highest fence applied
per name, kept after the record is deleted, so the records table never holds a tombstone.

``name`` compares in code-point order on every backend, so scans order like Python's ``sorted``
and a prefix scan can be an index range: PostgreSQL uses collation "C", SQLite's default BINARY
collation already does, MariaDB/MySQL use a binary utf8mb4 collation without padding (with the
usual PAD SPACE collations ``'a'`` and ``'a '`` would be the same key).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.mysql import DATETIME as MYSQL_DATETIME
from sqlalchemy.dialects.mysql import VARCHAR as MYSQL_VARCHAR
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "FENCES_SUFFIX",
    "MYSQL_FAMILY",
    "NAME_CHARS_MYSQL",
    "build_table",
    "check_identifier",
    "check_table_name",
    "fence_table",
]

MYSQL_FAMILY = frozenset({"mysql", "mariadb"})
"""Dialect names of MariaDB and MySQL in SQLAlchemy (``mysql+...`` or ``mariadb+...`` URLs)."""

NAME_CHARS_MYSQL = 768
"""Longest name on MariaDB/MySQL, in characters: 768 x 4 bytes of utf8mb4 is InnoDB's 3072-byte
index key limit. Every name of up to 768 characters fits, so every name of up to 3072 bytes."""

FENCES_SUFFIX = "_fences"
"""The fence table of table ``records`` is ``records_fences``."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_TABLE_CHARS = 63 - len(FENCES_SUFFIX)  # PostgreSQL cuts identifiers at 63 bytes, silently


def check_identifier(value: str, what: str) -> str:
    """Table and schema names are interpolated by the raw reader; allow plain identifiers only."""
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"{what} must be a plain SQL identifier (letters, digits, _): {value!r}")
    return value


def check_table_name(value: str) -> str:
    """A plain identifier short enough that ``<table>_fences`` is one too."""
    check_identifier(value, "table")
    if len(value) > _TABLE_CHARS:
        raise ValueError(
            f"table must be at most {_TABLE_CHARS} characters (its fence table is "
            f"<table>{FENCES_SUFFIX}): {value!r}"
        )
    return value


def fence_table(records: Table) -> Table:
    """The fence table built with ``records`` (same metadata, so created and dropped with it)."""
    return records.metadata.tables[f"{records.fullname}{FENCES_SUFFIX}"]


def build_table(table: str, schema: str | None, dialect: Dialect) -> Table:
    """The records table as ``dialect`` (of a connected engine) should create it, with its
    fence table in the same metadata (:func:`fence_table`)."""
    name_type: Any = Text()
    data_type: Any = JSON()
    stamp_type: Any = DateTime(timezone=True)
    options: dict[str, Any] = {}
    if dialect.name == "postgresql":
        name_type, data_type = Text(collation="C"), JSONB()
    elif dialect.name in MYSQL_FAMILY:
        # NO PAD binary collations: MariaDB names one utf8mb4_nopad_bin, MySQL 8 utf8mb4_0900_bin.
        is_mariadb = getattr(dialect, "is_mariadb", False)
        collation = "utf8mb4_nopad_bin" if is_mariadb else "utf8mb4_0900_bin"
        name_type = MYSQL_VARCHAR(NAME_CHARS_MYSQL, charset="utf8mb4", collation=collation)
        stamp_type = MYSQL_DATETIME(fsp=6)  # UTC, to the microsecond
        options = {f"{dialect.name}_charset": "utf8mb4", f"{dialect.name}_engine": "InnoDB"}
    metadata = MetaData(schema=schema)
    Table(
        f"{table}{FENCES_SUFFIX}",
        metadata,
        Column("name", name_type, primary_key=True),
        # NULL only inside a writing transaction: the placeholder row that locks a new name.
        Column("fence", BigInteger, nullable=True),
        **options,
    )
    return Table(
        table,
        metadata,
        Column("name", name_type, primary_key=True),
        Column("collection", name_type, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("data", data_type, nullable=False),
        Column("updated_at", stamp_type, nullable=False),
        Index(f"ix_{table}_collection", "collection"),
        **options,
    )
