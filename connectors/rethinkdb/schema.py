"""Create the database, table and secondary indexes if missing; idempotent and race-safe.

Each step is "create unless listed"; two servers opening at once may both try, and the loser's
"already exists" is success. Indexes: ``name`` (lookups by record name, prefix scans in name
order) and ``collection`` (what data teams filter on).
"""

from __future__ import annotations

from typing import Any

from connectors.base import StorageError
from connectors.rethinkdb.driver import reql
from connectors.rethinkdb.session import Session

__all__ = ["INDEXES", "check_name", "ensure_schema"]

INDEXES = ("name", "collection")


def check_name(value: str, what: str) -> str:
    """RethinkDB database and table names: letters, digits and underscores (``ValueError``)."""
    if not value or len(value) > 64 or not all(ch.isascii() and (ch.isalnum() or ch == "_")
                                               for ch in value):  # fmt: skip
        raise ValueError(f"{what} {value!r}: use 1-64 ASCII letters, digits or underscores")
    return value


async def ensure_schema(session: Session, database: str, table: str, durability: str) -> None:
    r = reql()
    await _create(session, r.db_list().contains(database), r.db_create(database), "database")
    db = r.db(database)
    await _create(
        session,
        db.table_list().contains(table),
        db.table_create(table, primary_key="id", durability=durability),
        "table",
    )
    target = db.table(table)
    for index in INDEXES:
        await _create(session, target.index_list().contains(index), target.index_create(index),
                      f"index {index}")  # fmt: skip
    await session.run(target.index_wait(*INDEXES), f"wait for the indexes of {table}")


async def _create(session: Session, exists: Any, create: Any, what: str) -> None:
    if await session.run(exists, f"look up {what}"):
        return
    try:
        await session.run(create, f"create {what}")
    except StorageError as exc:  # OpFailed on RethinkDB 2.4, a runtime error elsewhere
        if "already exists" not in str(exc):  # created meanwhile by another server: fine
            raise
