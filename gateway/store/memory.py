"""A record store with nothing behind the cache: records live as long as the process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .base import Record, StoreStats

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self.on_external_change: Callable[[str, Record | None], None] | None = None

    @property
    def stats(self) -> StoreStats:
        cached = len(self._records)
        return StoreStats(
            pending=0, dirty=0, cached=cached, flushed=0, retried=0, failed=0, conflicts=0
        )

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def cached(self, name: str) -> Record | None:
        return self._records.get(name)

    async def load(self, name: str) -> Record | None:
        return self._records.get(name)

    async def load_many(self, names: list[str]) -> dict[str, Record | None]:
        return {name: await self.load(name) for name in names}

    def put(self, record: Record) -> None:
        self._records[record.name] = record

    async def durable(self, name: str, version: int) -> None:
        pass

    def watch(self, name: str, version: int) -> Awaitable[None]:
        return self.durable(name, version)

    async def delete(self, name: str) -> asyncio.Future[None]:
        self._records.pop(name, None)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)  # nothing behind the memory: deleted for good
        return done

    def forget(self, name: str) -> None:
        pass  # the memory is the storage: forgetting would lose the record
