"""``MongoConnector``: records as documents of one MongoDB collection, through PyMongo's native
async API (``pymongo.AsyncMongoClient``).

URL ``mongodb://[user:password@]host[:port][,host...]/[database][?options]`` (or
``mongodb+srv://``). Options (strings accepted): ``database`` (default: the URL's, else
``recordgate``), ``collection`` (default ``records``), ``timeout`` (seconds per call, default 5;
also the driver's server selection, connect and operation deadline), ``write_concern``
(``majority``, the default, a number of members, or a tag set name), ``journal`` (default true),
``page_size`` (documents per scan page, default 500).

Every write is acknowledged by the write concern ``{w: write_concern, j: journal}``: by default
``{w: "majority", j: true}``, so a write ``write`` reports as applied is in the journal of a
majority of the replica set and survives a crash of the server or a failover. The layout and the
write are described in ``documents.py`` and ``writes.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from connectors._common import import_driver, prefix_upper_bound
from connectors.base import (
    CAPABILITY_FENCED,
    CAPABILITY_NETWORK,
    CAPABILITY_RAW,
    Delete,
    Put,
    RawReader,
    Snapshot,
    StorageUnavailable,
    WriteResult,
)
from connectors.mongodb.documents import (
    LIVE,
    PROJECTION,
    Encoded,
    encode_put,
    encode_tombstone,
    snapshot_of,
)
from connectors.mongodb.settings import DEFAULT_COLLECTION_NAME, Settings, parse_settings

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.collection import AsyncCollection

__all__ = ["COLLECTION_INDEX", "MongoConnector"]

_CHUNK = 1000  # names per $in query

COLLECTION_INDEX = [("collection", 1)]
"""The one secondary index: data teams filter on the record collection. (``_id``, the record
name, has MongoDB's own unique index, which serves point reads, conditional writes and scans.)"""


class MongoConnector:
    """Records in a MongoDB collection; see the module docstring for URL, options, guarantees."""

    name: ClassVar[str] = "mongodb"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {CAPABILITY_RAW, CAPABILITY_NETWORK, CAPABILITY_FENCED}
    )
    namespace_option: ClassVar[str] = "collection"
    """The option that isolates one store from another; the conformance suite varies it."""

    def __init__(
        self,
        url: str,
        *,
        database: str | None = None,
        collection: str = DEFAULT_COLLECTION_NAME,
        timeout: float | str = 5.0,
        write_concern: str | int = "majority",
        journal: bool | str = True,
        page_size: int | str = 500,
    ) -> None:
        # Here, not at module import: a missing driver is a one-line configuration error
        # (DriverMissing names the extra) before anything starts.
        import_driver("pymongo", "mongodb")
        self.settings: Settings = parse_settings(
            url,
            database=database,
            collection=collection,
            timeout=timeout,
            write_concern=write_concern,
            journal=journal,
            page_size=page_size,
        )
        self.timeout = self.settings.timeout
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._collection: AsyncCollection[dict[str, Any]] | None = None
        self._int64: type[int] = int

    @classmethod
    def url_for(cls, url: str, host: str, port: int) -> str:
        """``url`` aimed at the one server ``host:port`` (the conformance suite's network tests
        put refused ports, silent listeners and proxies there): the same credentials, database
        and options, as a direct connection (a replica set's members would otherwise be found
        through it and reached around it), a ``mongodb+srv`` URL as a plain one."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
        dropped = {"replicaset", "directconnection", "srvservicename", "srvmaxhosts"}
        query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() not in dropped]
        query.append(("directConnection", "true"))
        return urlunsplit(parts._replace(scheme="mongodb", netloc=netloc, query=urlencode(query)))

    @classmethod
    def server_address(cls, url: str) -> tuple[str, int] | None:
        """The first host of ``url`` (default port 27017); ``None`` for ``mongodb+srv``, whose
        hosts only DNS knows."""
        parts = urlsplit(url)
        if parts.scheme != "mongodb":
            return None
        first = parts.netloc.rpartition("@")[2].split(",")[0]
        if first.startswith("["):  # [IPv6]:port
            host, _, rest = first[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = first.partition(":")
        return host, int(port) if port else 27017

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and create the collection's index; idempotent, and safe when several
        servers open the same collection at once (creating an existing index is a no-op)."""
        if self._collection is not None:
            return
        from connectors.mongodb.client import connect
        from connectors.mongodb.errors import guard

        settings = self.settings
        async with guard(f"open of {settings.database}.{settings.collection}", self.timeout):
            client, collection = await connect(settings)
            try:
                await collection.create_index(COLLECTION_INDEX)
            except BaseException:
                await client.close()
                raise
        from bson import Int64

        self._client, self._collection, self._int64 = client, collection, Int64

    async def close(self) -> None:
        """Idempotent; bounded by ``timeout`` like every call (closing also ends sessions on
        the server, which may not answer)."""
        import asyncio
        import contextlib

        client, self._client, self._collection = self._client, None, None
        if client is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await client.close()

    async def __aenter__(self) -> MongoConnector:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def drop(self) -> None:
        """Drop the collection (tests and the conformance suite clean up with it)."""
        from connectors.mongodb.errors import guard

        collection = self._parts()
        async with guard("drop", self.timeout):
            await collection.drop()

    @property
    def collection(self) -> AsyncCollection[dict[str, Any]]:
        """The open collection (diagnostics and tests); ``StorageUnavailable`` before ``open``."""
        return self._parts()

    # -- reads -----------------------------------------------------------------------------

    async def get(self, name: str) -> Snapshot | None:
        from connectors.mongodb.errors import guard

        collection = self._parts()
        async with guard("get", self.timeout):
            document = await collection.find_one({"_id": name, **LIVE}, PROJECTION)
        return None if document is None else snapshot_of(document)

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        from connectors.mongodb.errors import guard

        collection = self._parts()
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        found: dict[str, Snapshot] = {}
        async with guard("get_many", self.timeout):
            # In chunks: a query is one BSON document of at most 16 MB, and names can be long.
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                query = {"_id": {"$in": chunk}, **LIVE}
                async for document in collection.find(query, PROJECTION):
                    snapshot = snapshot_of(document)
                    found[snapshot.name] = snapshot
        return found

    async def head(self, name: str) -> int | None:
        from connectors.mongodb.errors import guard

        collection = self._parts()
        async with guard("head", self.timeout):
            document = await collection.find_one({"_id": name, **LIVE}, {"_id": 0, "version": 1})
        return None if document is None else int(document["version"])

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        """Pages of ``page_size`` in ``_id`` order (MongoDB compares strings by their UTF-8
        bytes, which is code-point order), each page one bounded query after the last name."""
        from connectors.mongodb.errors import guard

        collection = self._parts()
        upper = prefix_upper_bound(prefix)
        size = self.settings.page_size
        after: str | None = None
        while True:
            bounds: dict[str, str] = {"$gte": prefix} if after is None else {"$gt": after}
            if upper is not None:
                bounds["$lt"] = upper
            async with guard("scan", self.timeout):
                query = {"_id": bounds, **LIVE}
                cursor = collection.find(query, PROJECTION).sort("_id", 1).limit(size)
                page = await cursor.to_list()
            for document in page:
                yield snapshot_of(document)
            if len(page) < size:
                return
            after = page[-1]["_id"]

    # -- writes ----------------------------------------------------------------------------

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        from connectors.mongodb.errors import guard
        from connectors.mongodb.writes import Batch

        collection = self._parts()
        if not ops:
            return []
        now = datetime.now(UTC)
        int64 = self._int64
        # Encoded up front: data that is not JSON (or a bad fence) is refused before anything
        # is written.
        encoded: dict[int, Encoded] = {}
        tombstones: dict[int, dict[str, Any]] = {}
        for index, op in enumerate(ops):
            if not isinstance(op, Delete):
                encoded[index] = encode_put(op.name, op.version, op.data, now, int64, op.fence)
            elif op.fence is not None:
                tombstones[index] = encode_tombstone(op.name, op.fence, int64)
        async with guard(f"write of {len(ops)} operations", self.timeout):
            return await Batch(ops, encoded, tombstones).run(collection)

    # -- raw layout ------------------------------------------------------------------------

    def raw_reader(self) -> RawReader:
        from connectors.mongodb.raw import MongoRawReader

        return MongoRawReader(self.settings)

    # -- helpers ---------------------------------------------------------------------------

    def _parts(self) -> AsyncCollection[dict[str, Any]]:
        if self._collection is None:
            raise StorageUnavailable("mongodb connector is not open")
        return self._collection
