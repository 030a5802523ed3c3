"""Deliberately broken connectors: each makes one realistic mistake, and the suite must fail it.

``test_teeth.py`` runs the suite against each and checks that the test guarding the rule fails
with a message naming it; a suite that passes one of these checks nothing. Most are the memory
connector with one thing changed; ``HangingNetworkConnector`` talks to a real socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from connectors.base import (
    CAPABILITY_NETWORK,
    NUL,
    Delete,
    Outcome,
    Put,
    Snapshot,
    StorageRejected,
    StorageUnavailable,
    WriteResult,
)
from connectors.memory import MemoryConnector

Op = Put | Delete

_FORGET = 2**62  # a Delete of this version removes whatever is stored


class _Broken(MemoryConnector):
    """The memory connector, with helpers to store and read past its rules."""

    async def _stored(self, name: str) -> Snapshot | None:
        return await MemoryConnector.get(self, name)

    async def _force(self, op: Put) -> None:
        """Store ``op`` whatever is stored (last writer wins)."""
        await MemoryConnector.write(self, [Delete(op.name, _FORGET), op])

    async def _one_by_one(self, ops: Sequence[Op], each: Callable[[Op], Any]) -> list[WriteResult]:
        return [await each(op) for op in ops]


# -- versioning ------------------------------------------------------------------------------


class OverwritingConnector(_Broken):
    """Every put overwrites, whatever version is stored."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        results = []
        for op in ops:
            if isinstance(op, Put):
                await self._force(op)
                results.append(WriteResult(op, Outcome.APPLIED))
            else:
                results.extend(await super().write([op]))
        return results


class FloatVersionsConnector(_Broken):
    """Versions kept as doubles (Lua numbers, JavaScript): 2^53 + 1 is 2^53."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        rounded = [
            Put(op.name, int(float(op.version)), op.data)
            if isinstance(op, Put)
            else Delete(op.name, int(float(op.version)))
            for op in ops
        ]
        results = await super().write(rounded)
        return [WriteResult(op, r.outcome, r.current) for op, r in zip(ops, results, strict=True)]


class SameVersionAlwaysAppliedConnector(_Broken):
    """Takes any put of the stored version for a retry, without comparing the data."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        async def each(op: Op) -> WriteResult:
            stored = await self._stored(op.name)
            if isinstance(op, Put) and stored is not None and stored.version == op.version:
                return WriteResult(op, Outcome.APPLIED)
            [result] = await MemoryConnector.write(self, [op])
            return result

        return await self._one_by_one(ops, each)


class LooseEqualityConnector(_Broken):
    """Compares a retry's data with Python's ``==`` (1 == 1.0 == True), as MongoDB compares."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        async def each(op: Op) -> WriteResult:
            stored = await self._stored(op.name)
            if (
                isinstance(op, Put)
                and stored is not None
                and stored.version == op.version
                and stored.data == op.data
            ):
                return WriteResult(op, Outcome.APPLIED)
            [result] = await MemoryConnector.write(self, [op])
            return result

        return await self._one_by_one(ops, each)


class TextEqualityConnector(_Broken):
    """Compares a retry's data as JSON text, so another key order is a conflict."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        async def each(op: Op) -> WriteResult:
            stored = await self._stored(op.name)
            if (
                isinstance(op, Put)
                and stored is not None
                and stored.version == op.version
                and json.dumps(stored.data) != json.dumps(op.data)
            ):
                return WriteResult(op, Outcome.CONFLICT, stored)
            [result] = await MemoryConnector.write(self, [op])
            return result

        return await self._one_by_one(ops, each)


class ConflictWithoutCurrentConnector(_Broken):
    """Reports conflicts without the stored snapshot."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        results = await super().write(ops)
        return [WriteResult(r.op, r.outcome) for r in results]


class UnconditionalDeleteConnector(_Broken):
    """Deletes whatever version is stored."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        forced = [Delete(op.name, _FORGET) if isinstance(op, Delete) else op for op in ops]
        results = await super().write(forced)
        return [WriteResult(op, r.outcome, r.current) for op, r in zip(ops, results, strict=True)]


class RacyConnector(_Broken):
    """Reads the stored version, then writes: two steps, so concurrent writers all win."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        async def each(op: Op) -> WriteResult:
            stored = await self._stored(op.name)
            await asyncio.sleep(0.01)  # a round trip between the check and the write
            if isinstance(op, Put) and (stored is None or stored.version < op.version):
                await self._force(op)
                return WriteResult(op, Outcome.APPLIED)
            [result] = await MemoryConnector.write(self, [op])
            return result

        return await self._one_by_one(ops, each)


# -- batches ---------------------------------------------------------------------------------


class SortedResultsConnector(_Broken):
    """Returns results in the order the database worked (by name), not the order given."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        results = await super().write(ops)
        return sorted(results, key=lambda r: r.op.name)


class PartialWriteOnRejectConnector(_Broken):
    """Writes the valid puts of a batch, then refuses the one that is not JSON."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        results = []
        for op in ops:
            results.extend(await super().write([op]))
        return results


class RejectedAsUnavailableConnector(_Broken):
    """Reports data the database refuses as an outage: the flusher would retry it forever."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        try:
            return await super().write(ops)
        except StorageRejected as exc:
            raise StorageUnavailable(f"write failed: {exc}") from exc


class PoisonedAfterErrorConnector(_Broken):
    """A refused batch leaves its transaction open: every later write fails."""

    _aborted = False

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        if self._aborted:
            raise StorageUnavailable("current transaction is aborted")
        try:
            return await super().write(ops)
        except StorageRejected:
            self._aborted = True
            raise


# -- data ------------------------------------------------------------------------------------


class LenientJSONConnector(_Broken):
    """Serialises what JSON cannot hold as strings (``json.dumps(default=str)``)."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        lenient = [
            Put(op.name, op.version, json.loads(json.dumps(op.data, default=str)))
            if isinstance(op, Put)
            else op
            for op in ops
        ]
        results = await super().write(lenient)
        return [WriteResult(op, r.outcome, r.current) for op, r in zip(ops, results, strict=True)]


class FalseNulDeclarationConnector(_Broken):
    """Declares it cannot hold U+0000, yet stores it (the gateway would refuse good writes)."""

    cannot_hold = frozenset({NUL})


class UndeclaredNulRefusalConnector(_Broken):
    """Refuses U+0000 as PostgreSQL's JSONB does, without declaring it (``cannot_hold``)."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        if any(isinstance(op, Put) and "\\u0000" in json.dumps(op.data) for op in ops):
            raise StorageRejected("unsupported Unicode escape sequence")
        return await super().write(ops)


class FalseNulNameDeclarationConnector(UndeclaredNulRefusalConnector):
    """Declares NUL and refuses it in data, yet stores names holding it."""

    cannot_hold = frozenset({NUL})


class UndeclaredNulNameRefusalConnector(_Broken):
    """Refuses U+0000 in a name as PostgreSQL's text does, without declaring it."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        if any("\x00" in op.name for op in ops):
            raise StorageRejected("invalid byte sequence for encoding UTF8: 0x00")
        return await super().write(ops)


def _has_type_tag(value: Any) -> bool:
    if isinstance(value, dict):
        return "$reql_type$" in value or any(map(_has_type_tag, value.values()))
    return isinstance(value, list) and any(map(_has_type_tag, value))


class TypeTagRefusalConnector(_Broken):
    """Refuses data holding the object key ``$reql_type$`` without declaring it (RethinkDB's
    connector before it stored such data with ``data`` null and ``data_json`` exact)."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        if any(isinstance(op, Put) and _has_type_tag(op.data) for op in ops):
            raise StorageRejected("RethinkDB reserves the object key '$reql_type$'")
        return await super().write(ops)


def _as_database_types(value: Any) -> Any:
    """A tagged object read back as the database's own type (a time as text, as a driver's
    datetime would be); an unknown tag breaks the read, as it breaks RethinkDB's driver."""
    if isinstance(value, dict):
        tag = value.get("$reql_type$")
        if tag == "TIME":
            return f"time {value.get('epoch_time')} {value.get('timezone')}"
        if tag is not None and tag != "BINARY":
            raise StorageUnavailable(f"Unknown pseudo-type {tag!r}: connection closed")
        return {k: _as_database_types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_database_types(v) for v in value]
    return value


class TypeTagsReadAsTypesConnector(_Broken):
    """Stores data natively in a database that reads ``$reql_type$`` objects as its own types
    (RethinkDB's ``data`` field read instead of ``data_json``)."""

    async def get(self, name: str) -> Snapshot | None:
        found = await self._stored(name)
        if found is None:
            return None
        return Snapshot(found.name, found.version, _as_database_types(found.data))

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        return {n: s for n in names if (s := await self.get(n)) is not None}

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:  # type: ignore[override]
        async for found in MemoryConnector.scan(self, prefix):
            yield Snapshot(found.name, found.version, _as_database_types(found.data))


def _as_doubles(value: Any) -> Any:
    """Numbers as JavaScript keeps them: every number a double, integral ones printed as ints."""
    if isinstance(value, dict):
        return {k: _as_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_doubles(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    double = float(value)
    return int(double) if math.isfinite(double) and double.is_integer() else double


class DoubleNumbersConnector(_Broken):
    """Stores numbers as doubles: 1.0 comes back as 1, 2^53 + 1 as 2^53."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        js = [
            Put(op.name, op.version, _as_doubles(op.data)) if isinstance(op, Put) else op
            for op in ops
        ]
        results = await super().write(js)
        return [WriteResult(op, r.outcome, r.current) for op, r in zip(ops, results, strict=True)]


def _without_operator_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_operator_keys(v)
            for k, v in value.items()
            if "." not in k and not k.startswith("$")
        }
    if isinstance(value, list):
        return [_without_operator_keys(v) for v in value]
    return value


class OperatorKeysDroppedConnector(_Broken):
    """Silently drops keys with ``.`` or a leading ``$`` (an old MongoDB habit)."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        clean = [
            Put(op.name, op.version, _without_operator_keys(op.data)) if isinstance(op, Put) else op
            for op in ops
        ]
        results = await super().write(clean)
        return [WriteResult(op, r.outcome, r.current) for op, r in zip(ops, results, strict=True)]


class MutatingConnector(_Broken):
    """Adds ``_id`` to the caller's dict, as PyMongo's ``insert_one`` does."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        for op in ops:
            if isinstance(op, Put) and isinstance(op.data, dict):
                op.data.setdefault("_id", op.name)
        return await super().write(ops)


class SharedDataConnector(_Broken):
    """Keeps the caller's objects and hands them out again (no copy in, no copy out)."""

    _kept: ClassVar[dict[str, Any]] = {}

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        results = await super().write(ops)
        for result in results:
            if result.ok and isinstance(result.op, Put):
                self._kept[result.op.name] = result.op.data
        return results

    async def get(self, name: str) -> Snapshot | None:
        stored = await super().get(name)
        if stored is None or name not in self._kept:
            return stored
        return Snapshot(name, stored.version, self._kept[name])


# -- reads -----------------------------------------------------------------------------------


class IterableOnceConnector(_Broken):
    """Walks ``names`` twice (a count, then the lookup): a generator comes back empty."""

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        if sum(1 for _ in names) > 1000:
            raise StorageRejected("too many names")
        return await super().get_many(names)


class StaleHeadConnector(_Broken):
    """Answers ``head`` from a version index that deletes do not update."""

    _versions: ClassVar[dict[str, int]] = {}

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        results = await super().write(ops)
        for result in results:
            if result.ok and isinstance(result.op, Put):
                self._versions[result.op.name] = result.op.version
        return results

    async def head(self, name: str) -> int | None:
        self._open_store()
        return self._versions.get(name)


# -- names -----------------------------------------------------------------------------------


class _KeyedByName(_Broken):
    """Stores each name under ``key(name)``; reads find a stored name with the same key."""

    @staticmethod
    def key(name: str) -> str:
        raise NotImplementedError

    def _stored_name(self, name: str) -> str:
        wanted = self.key(name)
        for stored in list(self._open_store().items):
            if self.key(stored) == wanted:
                return stored
        return name

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        mapped = [
            Put(self._stored_name(op.name), op.version, op.data)
            if isinstance(op, Put)
            else Delete(self._stored_name(op.name), op.version)
            for op in ops
        ]
        results = await super().write(mapped)
        return [WriteResult(op, r.outcome, r.current) for op, r in zip(ops, results, strict=True)]

    async def get(self, name: str) -> Snapshot | None:
        stored = await super().get(self._stored_name(name))
        return None if stored is None else Snapshot(name, stored.version, stored.data)

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        found = {}
        for name in names:
            snapshot = await self.get(name)
            if snapshot is not None:
                found[name] = snapshot
        return found

    async def head(self, name: str) -> int | None:
        return await super().head(self._stored_name(name))


class CollatingConnector(_KeyedByName):
    """Names compared as a case-insensitive, PAD SPACE, normalising collation would."""

    @staticmethod
    def key(name: str) -> str:
        return unicodedata.normalize("NFKC", name).rstrip(" ").casefold()


class TruncatingConnector(_KeyedByName):
    """Names cut to 255 bytes (a key length limit), so long names collide."""

    @staticmethod
    def key(name: str) -> str:
        return name.encode()[:255].decode(errors="ignore")


class CStringNamesConnector(_KeyedByName):
    """Names cut at the first U+0000, as a C string is: ``a\\0b`` and ``a`` are one record."""

    @staticmethod
    def key(name: str) -> str:
        return name.partition("\x00")[0]


# -- scans -----------------------------------------------------------------------------------


class _Listing(_Broken):
    """Scans built from a listing of every stored snapshot."""

    async def _all(self) -> list[Snapshot]:
        return [s async for s in MemoryConnector.scan(self, "")]


class RegexScanConnector(_Listing):
    """Matches the prefix as a regular expression (``$regex: "^" + prefix``, unescaped)."""

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        import re

        try:
            pattern = re.compile(prefix)
        except re.error as exc:
            raise StorageRejected(f"bad prefix: {exc}") from exc
        for snapshot in await self._all():
            if pattern.match(snapshot.name):
                yield snapshot


class CollectionScanConnector(_Listing):
    """Scans by collection when the prefix has no ``/`` (``WHERE collection = prefix``)."""

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        for snapshot in await self._all():
            head = snapshot.name.partition("/")[0]
            if (
                (head == prefix)
                if prefix and "/" not in prefix
                else snapshot.name.startswith(prefix)
            ):
                yield snapshot


class Utf16OrderConnector(_Listing):
    """Orders names by UTF-16 code units (JavaScript, Java): U+1F642 before U+FF21."""

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        found = [s for s in await self._all() if s.name.startswith(prefix)]
        for snapshot in sorted(found, key=lambda s: s.name.encode("utf-16-be")):
            yield snapshot


class OffsetPagingConnector(_Listing):
    """Pages by offset (``LIMIT n OFFSET k``): a delete behind the cursor skips a name."""

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        offset = 0
        while True:
            matching = [s for s in await self._all() if s.name.startswith(prefix)]
            page = matching[offset : offset + self.page_size]
            for snapshot in page:
                yield snapshot
            if len(page) < self.page_size:
                return
            offset += self.page_size


class InclusivePagingConnector(_Listing):
    """Continues each page from the last name *inclusive* (``name >= last``)."""

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        after = prefix
        while True:
            matching = [s for s in await self._all() if s.name.startswith(prefix)]
            page = [s for s in matching if s.name >= after][: self.page_size]
            for snapshot in page:
                yield snapshot
            if len(page) < self.page_size:
                return
            after = page[-1].name


class FirstPageOnlyConnector(_Listing):
    """Stops after a full page, taking it for the last one."""

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        matching = [s for s in await self._all() if s.name.startswith(prefix)]
        for snapshot in matching[: self.page_size]:
            yield snapshot


# -- lifecycle -------------------------------------------------------------------------------


class UncleanBeforeOpenConnector(_Broken):
    """Before ``open`` its calls fail with whatever Python raises (``AttributeError``)."""

    def _open_store(self) -> Any:
        return self._store  # None before open: `None.lock` raises AttributeError


class NoReopenConnector(_Broken):
    """Once closed, ``open`` does nothing (the client object was already made)."""

    _closed_once = False

    async def open(self) -> None:
        if not self._closed_once:
            await super().open()

    async def close(self) -> None:
        self._closed_once = True
        await super().close()


class SingleConnectionConnector(_Broken):
    """One connection that cannot run two commands at once ("another operation is in
    progress"), no pool, no lock."""

    _busy = False

    async def _exclusive(self, call: Any) -> Any:
        if self._busy:
            raise StorageUnavailable("another operation is in progress")
        self._busy = True
        try:
            await asyncio.sleep(0.001)  # the round trip
            return await call
        finally:
            self._busy = False

    async def get(self, name: str) -> Snapshot | None:
        return await self._exclusive(super().get(name))  # type: ignore[no-any-return]

    async def head(self, name: str) -> int | None:
        return await self._exclusive(super().head(name))  # type: ignore[no-any-return]

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        return await self._exclusive(super().write(ops))  # type: ignore[no-any-return]


# -- layout ----------------------------------------------------------------------------------


class FrozenTimestampConnector(_Broken):
    """Sets ``updated_at`` when a record is created, never when it is updated."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        store = self._open_store()
        before = {op.name: store.items[op.name].updated_at for op in ops if op.name in store.items}
        results = await super().write(ops)
        for name, stamp in before.items():
            if name in store.items:
                store.items[name].updated_at = stamp
        return results


class TouchOnRefusalConnector(_Broken):
    """Stamps ``updated_at`` on every write, refused ones included."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        from datetime import UTC, datetime

        results = await super().write(ops)
        store = self._open_store()
        for op in ops:
            if op.name in store.items:
                store.items[op.name].updated_at = datetime.now(UTC)
        return results


class SelfCheckingRawReaderConnector(_Broken):
    """Its "raw" reader reads through the connector itself, so it checks nothing."""

    def raw_reader(self) -> Any:
        connector = self

        class Reader:
            async def read_raw(self, name: str) -> dict[str, Any] | None:
                snapshot = await connector.get(name)
                if snapshot is None:
                    return None
                item = await MemoryConnector.raw_reader(connector).read_raw(name)
                return {**(item or {}), "version": snapshot.version, "data": snapshot.data}

            async def count_raw(self, prefix: str = "") -> int:
                return len([s async for s in connector.scan(prefix)])

            async def close(self) -> None:
                return None

        return Reader()


# -- namespaces and networks -----------------------------------------------------------------


class NoDropConnector(_Broken):
    """Has a namespace option but no ``drop()``: the suite's namespaces would pile up."""

    namespace_option: ClassVar[str] = "namespace"

    def __init__(self, url: str = "memory://", *, namespace: str = "", **options: Any) -> None:
        super().__init__(url, **options)


class HangingNetworkConnector(_Broken):
    """A network connector that waits for the server's greeting without a timeout, and lets
    the socket's own errors escape untranslated. URL: ``hang://host:port``."""

    capabilities: ClassVar[frozenset[str]] = frozenset({CAPABILITY_NETWORK})
    default_url: ClassVar[str] = "hang://127.0.0.1:9"

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__("memory://hanging", **options)
        self.address = urlsplit(url)

    async def open(self) -> None:
        host, port = self.address.hostname, self.address.port
        reader, writer = await asyncio.open_connection(host, port)  # no timeout
        try:
            await reader.readexactly(1)  # the greeting: waits forever on a silent server
        finally:
            writer.close()
        await super().open()


class HangingGetConnector(_Broken):
    """``get`` never returns."""

    async def get(self, name: str) -> Snapshot | None:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class PingingConnector(_Broken):
    """A correct network connector for the test of a server that stops answering: the memory
    store, plus one round trip to a line-echo server (``ping://host:port``) before every call,
    each bounded by ``timeout``; a lost connection is replaced on the next call."""

    capabilities: ClassVar[frozenset[str]] = frozenset({CAPABILITY_NETWORK})

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__("memory://pinging", **options)
        self.address = urlsplit(url)
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        await self._ping()
        await super().open()

    async def close(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None
        await super().close()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        async with asyncio.timeout(self.timeout):
            return await reader.readline()

    async def _ping(self) -> None:
        async with self._lock:
            try:
                if self._stream is None:
                    async with asyncio.timeout(self.timeout):
                        self._stream = await asyncio.open_connection(
                            self.address.hostname, self.address.port
                        )
                reader, writer = self._stream
                writer.write(b"ping\n")
                if await self._answer(reader) != b"ping\n":
                    raise ConnectionResetError("connection lost")
            except (OSError, TimeoutError) as exc:
                if self._stream is not None:
                    self._stream[1].close()
                self._stream = None
                raise StorageUnavailable(f"ping: {exc!r}") from exc

    async def get(self, name: str) -> Snapshot | None:
        self._open_store()
        await self._ping()
        return await super().get(name)

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        self._open_store()
        await self._ping()
        return await super().get_many(names)

    async def head(self, name: str) -> int | None:
        self._open_store()
        await self._ping()
        return await super().head(name)

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        self._open_store()
        await self._ping()
        return await super().write(ops)

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        self._open_store()
        await self._ping()
        async for snapshot in super().scan(prefix):
            yield snapshot


class UnboundedAfterOpenConnector(PingingConnector):
    """Bounds connecting, but waits for answers without a timeout once open."""

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        return await reader.readline()


class DriverlessConnector(_Broken):
    """Imports a driver that is not installed in ``open()``, as the contract allows."""

    async def open(self) -> None:
        from connectors._common import import_driver

        import_driver("recordgate_test_no_such_driver", "nosuch")
        await super().open()


class PatternGetConnector(_Broken):
    """Reads with a glob match (Redis ``SCAN MATCH``, an unescaped pattern): ``a*`` finds ``ab``."""

    async def get(self, name: str) -> Snapshot | None:
        import fnmatch

        async for snapshot in MemoryConnector.scan(self, ""):
            if fnmatch.fnmatchcase(snapshot.name, name):
                return snapshot
        return None


# -- fencing ---------------------------------------------------------------------------------
# The memory connector keeps fences per name in ``store.fences``, beside the items, and checks
# them in ``_apply`` under the store's lock; each of these changes one thing about that.


def _unfenced(op: Op) -> Op:
    return dataclasses.replace(op, fence=None)


def _as(op: Op, result: WriteResult) -> WriteResult:
    return WriteResult(op, result.outcome, result.current, result.fence)


class IgnoredFencesConnector(_Broken):
    """Declares the ``fenced`` capability but drops every fence (version rules alone)."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        results = await super().write([_unfenced(op) for op in ops])
        return [_as(op, r) for op, r in zip(ops, results, strict=True)]


class FloatFencesConnector(_Broken):
    """Fences compared as doubles (Lua numbers, JavaScript): 2^53 + 1 is 2^53."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        rounded = [
            op if op.fence is None else dataclasses.replace(op, fence=int(float(op.fence)))
            for op in ops
        ]
        results = await super().write(rounded)
        return [
            WriteResult(op, r.outcome, r.current, None if r.fence is None else int(float(r.fence)))
            for op, r in zip(ops, results, strict=True)
        ]


class FenceDroppedOnDeleteConnector(_Broken):
    """Keeps the fence in the record: a delete removes both (no tombstone)."""

    @staticmethod
    def _apply(store: Any, op: Op, text: str | None, now: Any) -> WriteResult:
        result = MemoryConnector._apply(store, op, text, now)
        if isinstance(op, Delete) and result.ok:
            store.fences.pop(op.name, None)
        return result


class ConflictRaisesFenceConnector(_Broken):
    """Raises the stored fence before the version check, so a conflict raises it too."""

    @staticmethod
    def _apply(store: Any, op: Op, text: str | None, now: Any) -> WriteResult:
        result = MemoryConnector._apply(store, op, text, now)
        if result.outcome is Outcome.CONFLICT and op.fence is not None:
            store.fences[op.name] = max(op.fence, store.fences.get(op.name, op.fence))
        return result


class IdempotentBeforeFenceConnector(_Broken):
    """Settles a retry of what is stored (same version, equal data) as applied before it
    looks at the fence."""

    @staticmethod
    def _apply(store: Any, op: Op, text: str | None, now: Any) -> WriteResult:
        stored = store.items.get(op.name)
        if (
            isinstance(op, Put)
            and stored is not None
            and stored.version == op.version
            and json.loads(stored.text) == op.data
        ):
            if op.fence is not None:
                store.fences[op.name] = max(op.fence, store.fences.get(op.name, op.fence))
            return WriteResult(op, Outcome.APPLIED)
        return MemoryConnector._apply(store, op, text, now)


class FenceOnlyWhereFencedConnector(_Broken):
    """Records a fence only where the name had one (or nothing was stored): a record stored
    unfenced (by a single server) never gets one, deleted or written over with a fence."""

    @staticmethod
    def _apply(store: Any, op: Op, text: str | None, now: Any) -> WriteResult:
        bare = op.name in store.items and op.name not in store.fences
        result = MemoryConnector._apply(store, op, text, now)
        if bare:
            store.fences.pop(op.name, None)
        return result


class SharedFencesConnector(_Broken):
    """Fences kept per name as a case-insensitive, PAD SPACE collation compares it: two names
    share one fence."""

    @staticmethod
    def _apply(store: Any, op: Op, text: str | None, now: Any) -> WriteResult:
        folded = op.name.rstrip(" ").casefold()
        if folded in store.fences:
            store.fences[op.name] = store.fences[folded]
        result = MemoryConnector._apply(store, op, text, now)
        if op.name in store.fences:
            store.fences[folded] = store.fences[op.name]
        return result


class RacyFencesConnector(_Broken):
    """Reads the stored fence, then writes: two steps, so a lower fence that passed the check
    can land after a higher one was applied."""

    async def write(self, ops: Sequence[Op]) -> list[WriteResult]:
        async def each(op: Op) -> WriteResult:
            store = self._open_store()
            kept = store.fences.get(op.name)
            await asyncio.sleep(0.01)  # a round trip between the check and the write
            if op.fence is not None and kept is not None and op.fence < kept:
                stored = await self._stored(op.name)
                return WriteResult(op, Outcome.FENCED, stored, kept)
            [result] = await MemoryConnector.write(self, [_unfenced(op)])
            if result.ok and op.fence is not None:
                store.fences[op.name] = op.fence
            return _as(op, result)

        return await self._one_by_one(ops, each)


class TombstonePagesConnector(_Broken):
    """Pages over every stored name, tombstones included (``limit`` before the live filter),
    drops the tombstones, and takes a short page for the last one."""

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        store = self._open_store()
        every = sorted(n for n in {*store.items, *store.fences} if n.startswith(prefix))
        for start in range(0, len(every), self.page_size):
            page = [await self._stored(n) for n in every[start : start + self.page_size]]
            live = [s for s in page if s is not None]
            for snapshot in live:
                yield snapshot
            if len(live) < self.page_size:
                return
