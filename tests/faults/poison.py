"""A test double around the real SQL connector, named as such: it smuggles past the gateway's
JSON edge what that edge now refuses, so the real driver meets it and raises its real error.

A put whose data has the key ``"poison"`` gets, on its way to the driver, a lone surrogate
(``"surrogate"``) or a set (``"set"``) there. SQLite's driver then raises ``UnicodeEncodeError``,
the JSON serializer ``TypeError``: errors that are not storage errors, which the flusher must
fail for that one operation instead of retrying the batch forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from connectors.base import Delete, Put, Snapshot, WriteResult
from connectors.sql import SQLConnector

POISONS: dict[str, Any] = {"surrogate": "\ud800", "set": {1, 2}}


def _poisoned(op: Put | Delete) -> Put | Delete:
    if isinstance(op, Delete) or not isinstance(op.data, dict) or "poison" not in op.data:
        return op
    return Snapshot(op.name, op.version, {**op.data, "poison": POISONS[op.data["poison"]]})


class PoisonSQLConnector(SQLConnector):
    name: ClassVar[str] = "poison-sql"

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        return await super().write([_poisoned(op) for op in ops])


class UndeclaringSQLConnector(SQLConnector):
    """The SQL connector declaring nothing it cannot hold (``cannot_hold`` empty), so the
    gateway lets U+0000 reach PostgreSQL, which refuses it at flush time: how a connector that
    cannot foresee a refusal behaves, to test the gateway's safety net (the revert)."""

    name: ClassVar[str] = "undeclaring-sql"

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.cannot_hold = frozenset()
