"""The stored layout: one table, one row per record, keyed by the full name.

``name`` compares in code-point order on every backend (PostgreSQL: collation "C"; SQLite's
default BINARY collation already does), so scans order like Python's ``sorted`` and a prefix
scan can be an index range.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["build_table", "check_identifier"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_identifier(value: str, what: str) -> str:
    """Table and schema names are interpolated by the raw reader; allow plain identifiers only."""
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"{what} must be a plain SQL identifier (letters, digits, _): {value!r}")
    return value


def build_table(table: str, schema: str | None = None) -> Table:
    name_type: Any = Text().with_variant(Text(collation="C"), "postgresql")
    metadata = MetaData(schema=schema)
    return Table(
        table,
        metadata,
        Column("name", name_type, primary_key=True),
        Column("collection", name_type, nullable=False),
        Column("version", BigInteger, nullable=False),
        Column("data", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Index(f"ix_{table}_collection", "collection"),
    )
