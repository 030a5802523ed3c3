"""``MemoryConnector``: the reference implementation of the connector contract.

Stores are shared per URL within the process (``memory://a`` opened twice sees the same data),
so "reopen sees data" and "separate instances race on one record" hold as for a database.
Data is kept as JSON text: copying in and out by (de)serialising means the caller's objects
are never shared or mutated, and non-JSON data is rejected exactly where a database would.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors._common import dump_json, load_json, option_float, option_int
from connectors.base import (
    CAPABILITY_FENCED,
    CAPABILITY_RAW,
    Delete,
    Outcome,
    Put,
    Snapshot,
    StorageUnavailable,
    WriteResult,
    collection_of,
    data_equal,
)

__all__ = ["MemoryConnector", "MemoryRawReader"]


@dataclass(slots=True)
class _Item:
    version: int
    text: str
    updated_at: datetime


@dataclass(slots=True)
class _Store:
    items: dict[str, _Item] = field(default_factory=dict)
    # The highest fence applied per name, kept apart from the items: a deleted record's fence
    # (a tombstone) stays here and is never seen as a record.
    fences: dict[str, int] = field(default_factory=dict)
    # A threading lock, not an asyncio one: critical sections never await, and a store may be
    # shared by connectors living on different event loops (e.g. one per test).
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemoryConnector:
    """Records in a process-wide dict keyed by the URL's name part (``memory://NAME``)."""

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[frozenset[str]] = frozenset({CAPABILITY_RAW, CAPABILITY_FENCED})
    default_url: ClassVar[str] = "memory://"

    _stores: ClassVar[dict[str, _Store]] = {}
    _stores_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, url: str = "memory://", *, timeout: float | str = 5.0, page_size: int | str = 500
    ) -> None:
        scheme, sep, key = url.partition("://")
        if scheme != "memory" or not sep:
            raise ValueError(f"memory connector URL must look like 'memory://NAME', got {url!r}")
        self.url = url
        # Accepted for a uniform configuration: nothing here waits or pages.
        self.timeout = option_float(timeout, "timeout")
        self.page_size = option_int(page_size, "page_size")
        self._key = key
        self._store: _Store | None = None

    async def open(self) -> None:
        with self._stores_lock:
            self._store = self._stores.setdefault(self._key, _Store())

    async def close(self) -> None:
        self._store = None

    async def __aenter__(self) -> MemoryConnector:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @classmethod
    def drop_store(cls, url: str) -> None:
        """Forget everything stored under ``url`` (tests)."""
        with cls._stores_lock:
            cls._stores.pop(url.partition("://")[2], None)

    def _open_store(self) -> _Store:
        if self._store is None:
            raise StorageUnavailable("memory connector is not open")
        return self._store

    async def get(self, name: str) -> Snapshot | None:
        store = self._open_store()
        with store.lock:
            item = store.items.get(name)
        return None if item is None else _snapshot(name, item)

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        store = self._open_store()
        with store.lock:
            found = {n: store.items[n] for n in names if n in store.items}
        return {n: _snapshot(n, item) for n, item in found.items()}

    async def head(self, name: str) -> int | None:
        store = self._open_store()
        with store.lock:
            item = store.items.get(name)
        return None if item is None else item.version

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        store = self._open_store()
        # Serialise before taking the lock: a bad payload rejects the batch before any change.
        texts = {i: dump_json(op.data) for i, op in enumerate(ops) if isinstance(op, Put)}
        now = datetime.now(UTC)
        results: list[WriteResult] = []
        with store.lock:
            for i, op in enumerate(ops):
                results.append(self._apply(store, op, texts.get(i), now))
        return results

    @staticmethod
    def _apply(store: _Store, op: Put | Delete, text: str | None, now: datetime) -> WriteResult:
        """One operation under the store's lock: the fence check, the version check, the write."""
        stored = store.items.get(op.name)
        kept = store.fences.get(op.name)
        if op.fence is not None and kept is not None and op.fence < kept:
            current = None if stored is None else _snapshot(op.name, stored)
            return WriteResult(op, Outcome.FENCED, current, fence=kept)
        if isinstance(op, Put):
            assert text is not None
            if stored is None or stored.version < op.version:
                store.items[op.name] = _Item(op.version, text, now)
            elif not (
                stored.version == op.version and data_equal(load_json(stored.text), load_json(text))
            ):
                return WriteResult(op, Outcome.CONFLICT, _snapshot(op.name, stored))
        elif stored is not None and stored.version > op.version:
            return WriteResult(op, Outcome.CONFLICT, _snapshot(op.name, stored))
        else:
            store.items.pop(op.name, None)
        if op.fence is not None and (kept is None or kept < op.fence):
            store.fences[op.name] = op.fence
        return WriteResult(op, Outcome.APPLIED)

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        store = self._open_store()
        with store.lock:
            found = sorted((n, i) for n, i in store.items.items() if n.startswith(prefix))
        for name, item in found:
            yield _snapshot(name, item)

    def raw_reader(self) -> MemoryRawReader:
        return MemoryRawReader(self._key)


class MemoryRawReader:
    """Reads the stored items of one ``memory://`` store directly, without the connector."""

    def __init__(self, key: str) -> None:
        self._key = key

    def _items(self) -> dict[str, _Item]:
        store = MemoryConnector._stores.get(self._key)
        return {} if store is None else store.items

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        item = self._items().get(name)
        if item is None:
            return None
        return {
            "name": name,
            "collection": collection_of(name),
            "version": item.version,
            "data": load_json(item.text),
            "updated_at": item.updated_at,
        }

    async def count_raw(self, prefix: str = "") -> int:
        return sum(1 for n in list(self._items()) if n.startswith(prefix))

    async def close(self) -> None:
        return None


def _snapshot(name: str, item: _Item) -> Snapshot:
    return Snapshot(name, item.version, load_json(item.text))
