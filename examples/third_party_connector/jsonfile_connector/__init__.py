"""``JSONFileConnector``: records in one JSON file, ``jsonfile:///path/to/store.json``.

Layout of the file: ``{"records": {name: {"collection", "version", "data", "updated_at"}}}``.
Each call takes an exclusive ``flock`` on ``<file>.lock`` for its whole read-modify-write, which
makes the conditional write atomic across threads and processes; the file is replaced
atomically (write a temporary file, then ``os.replace``). File work runs in a thread.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

from connectors.base import (
    CAPABILITY_RAW,
    Delete,
    Outcome,
    Put,
    Snapshot,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
    WriteResult,
    collection_of,
    data_equal,
)

__all__ = ["JSONFileConnector", "JSONFileRawReader"]

T = TypeVar("T")
Items = dict[str, dict[str, Any]]


class _File:
    """The store file and its lock; every method runs in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    @contextmanager
    def locked(self) -> Iterator[Items]:
        try:
            lock = open(self.lock_path, "a")  # noqa: SIM115 - closed below, after unlocking
        except OSError as exc:
            raise StorageUnavailable(f"cannot open {self.lock_path}: {exc}") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self.load()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def load(self) -> Items:
        try:
            with open(self.path, encoding="utf-8") as f:
                records: Items = json.load(f)["records"]
                return records
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError) as exc:
            raise StorageUnavailable(f"cannot read {self.path}: {exc}") from exc

    def save(self, items: Items) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"records": items}, f, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {self.path}: {exc}") from exc


class JSONFileConnector:
    name: ClassVar[str] = "jsonfile"
    capabilities: ClassVar[frozenset[str]] = frozenset({CAPABILITY_RAW})

    def __init__(self, url: str, *, timeout: float | str = 5.0, page_size: int | str = 0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "jsonfile" or not parts.path:
            raise ValueError(f"expected jsonfile:///path/to/store.json, got {url!r}")
        self.url = url
        self.timeout = float(timeout)
        self.page_size = int(page_size)  # accepted as the contract asks; a file has no pages
        self._file = _File(Path(unquote(parts.path)))
        self._open = False

    async def _run(self, func: Callable[[], T]) -> T:
        if not self._open:
            raise StorageUnavailable("jsonfile connector is not open")
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.to_thread(func)
        except TimeoutError as exc:
            raise StorageTimeout(f"{self._file.path} busy for {self.timeout:g}s") from exc

    async def open(self) -> None:
        self._open = True

        def create() -> None:
            if not self._file.path.parent.is_dir():
                raise StorageUnavailable(f"no directory {self._file.path.parent}")
            with self._file.locked() as items:
                if not self._file.path.exists():
                    self._file.save(items)

        try:
            await self._run(create)
        except BaseException:
            self._open = False
            raise

    async def close(self) -> None:
        self._open = False

    async def __aenter__(self) -> JSONFileConnector:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def get(self, name: str) -> Snapshot | None:
        return (await self.get_many([name])).get(name)

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        wanted = list(names)
        items = await self._run(self._file.load)
        return {n: _snapshot(n, items[n]) for n in wanted if n in items}

    async def head(self, name: str) -> int | None:
        snapshot = await self.get(name)
        return None if snapshot is None else snapshot.version

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        items = await self._run(self._file.load)
        for name in sorted(n for n in items if n.startswith(prefix)):
            yield _snapshot(name, items[name])

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        # Copy the data in by serialising it now: later changes by the caller cannot leak in.
        copies: dict[str, Any] = {}
        for op in ops:
            if isinstance(op, Put):
                try:
                    copies[op.name] = json.loads(json.dumps(op.data, allow_nan=False))
                except (TypeError, ValueError) as exc:
                    raise StorageRejected(f"{op.name}: data is not JSON: {exc}") from exc
        return await self._run(lambda: self._write(ops, copies))

    def _write(self, ops: Sequence[Put | Delete], copies: dict[str, Any]) -> list[WriteResult]:
        now = datetime.now(UTC).isoformat()
        results = []
        with self._file.locked() as items:
            for op in ops:
                stored = items.get(op.name)
                current = None if stored is None else _snapshot(op.name, stored)
                if isinstance(op, Put):
                    data = copies[op.name]
                    if current is None or current.version < op.version:
                        items[op.name] = {
                            "collection": collection_of(op.name),
                            "version": op.version,
                            "data": data,
                            "updated_at": now,
                        }
                        results.append(WriteResult(op, Outcome.APPLIED))
                    elif current.version == op.version and data_equal(current.data, data):
                        results.append(WriteResult(op, Outcome.APPLIED))
                    else:
                        results.append(WriteResult(op, Outcome.CONFLICT, current))
                elif current is not None and current.version > op.version:
                    results.append(WriteResult(op, Outcome.CONFLICT, current))
                else:
                    items.pop(op.name, None)
                    results.append(WriteResult(op, Outcome.APPLIED))
            self._file.save(items)
        return results

    def raw_reader(self) -> JSONFileRawReader:
        return JSONFileRawReader(self._file.path)


class JSONFileRawReader:
    """Reads the file with plain ``json``, not through the connector."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _items(self) -> Items:
        with open(self._path, encoding="utf-8") as f:
            records: Items = json.load(f)["records"]
            return records

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        item = (await asyncio.to_thread(self._items)).get(name)
        if item is None:
            return None
        return {**item, "name": name, "updated_at": datetime.fromisoformat(item["updated_at"])}

    async def count_raw(self, prefix: str = "") -> int:
        return sum(1 for n in await asyncio.to_thread(self._items) if n.startswith(prefix))

    async def close(self) -> None:
        return None


def _snapshot(name: str, item: dict[str, Any]) -> Snapshot:
    # Stored items are freshly parsed from the file, so nothing here is shared with a caller.
    return Snapshot(name, item["version"], item["data"])
