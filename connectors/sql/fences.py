"""Fencing on SQL: the fence table ``<table>_fences`` written in the batch's transaction.

A batch holding fenced operations first locks the fence rows of their names, in name order:
it inserts a placeholder row (``fence`` NULL) for a name that has none, and then reads the rows
with a locking read (``SELECT ... FOR UPDATE``; SQLite's one writer at a time needs none). From
then until the commit no other fenced writer of those names can read their fences, so the
check ("is my fence lower than the stored one"), the record's conditional write and the raised
fence commit as one: a stale writer waiting for the lock reads the newer fence once it is
committed (a locking read at READ COMMITTED reads the newest committed row), never an older one.
After the outcomes are known, still in the transaction, applied fenced operations raise their
fence and placeholders of operations that did not apply are deleted, so a conflict changes
nothing. Unfenced operations take no fence lock and leave the fence table alone.

Lock order: fence rows before record rows, each in name order, in every batch, so concurrent
batches cannot deadlock on each other's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from connectors.base import Delete, Outcome, Put, WriteResult

__all__ = [
    "FenceSQL",
    "PostgresFences",
    "fenced_names",
    "is_fenced",
    "kept_fences",
    "refusals",
    "settlement",
]

_CHUNK = 500  # names per IN (...) list


def is_fenced(ops: Sequence[Put | Delete]) -> bool:
    return any(op.fence is not None for op in ops)


def fenced_names(ops: Iterable[Put | Delete]) -> list[str]:
    """The names of the fenced operations, in name (lock) order."""
    return sorted(op.name for op in ops if op.fence is not None)


def refusals(ops: Iterable[Put | Delete], kept: Mapping[str, int | None]) -> dict[str, int]:
    """The stored fence of each fenced operation whose fence is lower (refused, not written)."""
    refused: dict[str, int] = {}
    for op in ops:
        stored = kept.get(op.name)
        if op.fence is not None and stored is not None and op.fence < stored:
            refused[op.name] = stored
    return refused


def settlement(
    results: Iterable[WriteResult], kept: Mapping[str, int | None]
) -> tuple[list[tuple[str, int]], list[str]]:
    """After the outcomes: the fences to store (applied fenced ops above the stored fence),
    and the names whose placeholder row goes again (fenced ops on a name with no fence that
    did not apply)."""
    raise_to: list[tuple[str, int]] = []
    placeholders: list[str] = []
    for result in results:
        fence = result.op.fence
        if fence is None:
            continue
        stored = kept.get(result.op.name)
        if result.outcome is Outcome.APPLIED:
            if stored is None or stored < fence:
                raise_to.append((result.op.name, fence))
        elif stored is None:
            placeholders.append(result.op.name)
    return raise_to, placeholders


class FenceSQL:
    """The fence table's statements for one backend and paramstyle (``?`` or ``%s``), used on
    DB-API cursors (SQLite's ``sqlite3``, MariaDB's asyncmy). PostgreSQL has its own, over
    arrays (:class:`PostgresFences`)."""

    def __init__(self, target: str, marker: str, *, mysql: bool) -> None:
        self.marker = marker
        self.insert = f"INSERT INTO {target} (name) VALUES "
        if mysql:
            # ON DUPLICATE KEY UPDATE locks an existing row exclusively (INSERT IGNORE would
            # also hide other errors).
            self.on_duplicate = " ON DUPLICATE KEY UPDATE fence = fence"
            self.lock_suffix = " FOR UPDATE"
        else:
            self.on_duplicate = " ON CONFLICT DO NOTHING"
            self.lock_suffix = ""
        self.select = f"SELECT name, fence FROM {target} WHERE name IN "
        self.update = f"UPDATE {target} SET fence = {marker} WHERE name = {marker}"
        self.delete = f"DELETE FROM {target} WHERE fence IS NULL AND name IN "

    def chunks(self, names: list[str]) -> Iterable[tuple[str, list[str]]]:
        """``(IN list, names)`` per chunk of ``names``."""
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            yield f"({', '.join([self.marker] * len(chunk))})", chunk

    def insert_queries(self, names: list[str]) -> Iterable[tuple[str, list[str]]]:
        """Placeholder rows for names without one (and, on MariaDB, a lock on the others)."""
        for _, chunk in self.chunks(names):
            values = ", ".join([f"({self.marker})"] * len(chunk))
            yield f"{self.insert}{values}{self.on_duplicate}", chunk

    def lock_queries(self, names: list[str]) -> Iterable[tuple[str, list[str]]]:
        for in_list, chunk in self.chunks(names):
            yield f"{self.select}{in_list} ORDER BY name{self.lock_suffix}", chunk

    def delete_queries(self, names: list[str]) -> Iterable[tuple[str, list[str]]]:
        for in_list, chunk in self.chunks(names):
            yield f"{self.delete}{in_list}", chunk


def kept_fences(names: list[str], rows: Iterable[Sequence[Any]]) -> dict[str, int | None]:
    """The locked rows as ``name -> fence`` (``None``: a placeholder, no fence yet)."""
    kept: dict[str, int | None] = dict.fromkeys(names)
    for name, fence in rows:
        kept[name] = None if fence is None else int(fence)
    return kept


class PostgresFences:
    """The fence table's statements on PostgreSQL, each one round trip over arrays of names."""

    def __init__(self, target: str) -> None:
        from sqlalchemy import ARRAY, BigInteger, Text, bindparam, text

        names = bindparam("names", type_=ARRAY(Text))
        self._insert = text(
            f"INSERT INTO {target} (name) SELECT n FROM unnest(:names) AS n "
            "ON CONFLICT (name) DO NOTHING"
        ).bindparams(names)
        self._lock = text(
            f"SELECT name, fence FROM {target} WHERE name = ANY(:names) ORDER BY name FOR UPDATE"
        ).bindparams(names)
        self._update = text(
            f"UPDATE {target} AS f SET fence = u.fence "
            "FROM unnest(:names, :fences) AS u(name, fence) WHERE f.name = u.name"
        ).bindparams(names, bindparam("fences", type_=ARRAY(BigInteger)))
        self._delete = text(
            f"DELETE FROM {target} WHERE fence IS NULL AND name = ANY(:names)"
        ).bindparams(names)

    async def lock(self, conn: Any, names: list[str]) -> dict[str, int | None]:
        """Lock the fence rows of ``names`` (sorted) on an ``AsyncConnection`` in a transaction."""
        await conn.execute(self._insert, {"names": names})
        rows = await conn.execute(self._lock, {"names": names})
        return kept_fences(names, rows)

    async def settle(
        self, conn: Any, raise_to: list[tuple[str, int]], placeholders: list[str]
    ) -> None:
        if raise_to:
            names, fences = zip(*raise_to, strict=True)
            await conn.execute(self._update, {"names": list(names), "fences": list(fences)})
        if placeholders:
            await conn.execute(self._delete, {"names": placeholders})
