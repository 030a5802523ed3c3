"""``RethinkDBConnector``: records in one RethinkDB table through the official driver (asyncio).

URL ``rethinkdb://[user[:password]@]host[:port][/database]`` (port 28015, database
``recordgate`` and user ``admin`` by default). Options (strings accepted): ``table`` (default
``records``), ``timeout`` (seconds per call, default 5), ``durability`` (``hard``, the default:
a write is acknowledged once on disk; ``soft``: once in memory), ``page_size`` (scan page,
default 500).

Layout: ``layout.py``; writes: ``writes.py``; schema: ``schema.py``; the connection: ``session.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors._common import dump_json, option_float, option_int, prefix_upper_bound
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
from connectors.rethinkdb.driver import reql
from connectors.rethinkdb.errors import guard
from connectors.rethinkdb.layout import TOMBSTONE, is_record, live, record_id, snapshot_of
from connectors.rethinkdb.schema import check_name
from connectors.rethinkdb.session import Session
from connectors.rethinkdb.url import parse_url

__all__ = ["DURABILITIES", "RethinkDBConnector"]

log = logging.getLogger(__name__)

DURABILITIES = ("hard", "soft")
# What reads fetch: the exact fields, and the mark of a tombstone (which reads skip).
_FIELDS = ("name", "version_key", "data_json", TOMBSTONE)


class RethinkDBConnector:
    """Records in a RethinkDB table; see the module docstring for the URL and options."""

    name: ClassVar[str] = "rethinkdb"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {CAPABILITY_RAW, CAPABILITY_NETWORK, CAPABILITY_FENCED}
    )
    namespace_option: ClassVar[str] = "table"

    def __init__(
        self,
        url: str,
        *,
        table: str = "records",
        timeout: float | str = 5.0,
        durability: str = "hard",
        page_size: int | str = 500,
    ) -> None:
        self.address = parse_url(url)
        check_name(self.address.database, "database")
        self.table_name = check_name(table, "table")
        self.timeout = option_float(timeout, "timeout")
        if not self.timeout > 0:
            raise ValueError("option 'timeout' must be positive")
        if durability not in DURABILITIES:
            raise ValueError(f"option 'durability' must be one of {', '.join(DURABILITIES)}")
        self.durability = durability
        self.page_size = option_int(page_size, "page_size")
        if self.page_size < 1:
            raise ValueError("option 'page_size' must be at least 1")
        reql()  # the driver is imported here: a missing one is a one-line ConfigError
        self._session: Session | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        from connectors.rethinkdb.schema import ensure_schema

        if self._session is not None:
            return
        session = Session(self.address, self.timeout)
        try:
            # Several queries, each bounded by the session; the whole by the timeout too.
            async with guard(f"open {self.address.safe}", self.timeout):
                await ensure_schema(
                    session, self.address.database, self.table_name, self.durability
                )
        except BaseException:
            await session.close()
            raise
        if self.durability != "hard":
            log.warning(
                "rethinkdb storage %s: durability 'soft': writes are acknowledged before they "
                "reach the disk and may be lost if the server stops",
                self.address.safe,
            )
        self._session = session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> RethinkDBConnector:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def drop(self) -> None:
        """Drop the table (tests and the conformance suite clean up with it)."""
        r = reql()
        await self._parts().run(
            r.db(self.address.database).table_drop(self.table_name), "drop table"
        )

    @property
    def table(self) -> Any:
        """The ReQL table term (``r.db(database).table(table)``)."""
        return reql().db(self.address.database).table(self.table_name)

    # -- reads -----------------------------------------------------------------------------

    async def get(self, name: str) -> Snapshot | None:
        found = await self.get_many([name])
        return found.get(name)

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        r = reql()
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        ids = dump_json([record_id(name) for name in wanted])
        docs = await self._parts().run(
            self.table.get_all(r.args(r.json(ids))).pluck(*_FIELDS).coerce_to("array"), "get"
        )
        found = (snapshot_of(doc) for doc in docs if is_record(doc))
        return {snapshot.name: snapshot for snapshot in found}

    async def head(self, name: str) -> int | None:
        docs = await self._parts().run(
            self.table.get_all(record_id(name)).pluck("version_key", TOMBSTONE).coerce_to("array"),
            "head",
        )
        return int(docs[0]["version_key"]) if docs and is_record(docs[0]) else None

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        r = reql()
        session = self._parts()
        upper = prefix_upper_bound(prefix)
        lower: str = prefix
        left = "closed"
        while True:
            # A range of the name index: in code-point order, and '%' and '_' mean themselves.
            page = await session.run(
                self.table.between(
                    lower, r.maxval if upper is None else upper, index="name", left_bound=left
                )
                .order_by(index="name")
                .filter(live)
                .limit(self.page_size)
                .pluck(*_FIELDS)
                .coerce_to("array"),
                "scan",
            )
            for doc in page:
                yield snapshot_of(doc)
            if len(page) < self.page_size:
                return
            lower, left = page[-1]["name"], "open"

    # -- writes ----------------------------------------------------------------------------

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        from connectors.rethinkdb.writes import write_batch

        session = self._parts()
        if not ops:
            return []
        # Lost races take further rounds, each a query bounded by the session: the whole write
        # is bounded by the timeout too.
        async with guard(f"write of {len(ops)} operations", self.timeout):
            return await write_batch(session, self.table, ops, datetime.now(UTC), self.durability)

    # -- raw layout ------------------------------------------------------------------------

    def raw_reader(self) -> RawReader:
        from connectors.rethinkdb.raw import RethinkDBRawReader

        return RethinkDBRawReader(self.address, self.table_name, self.timeout)

    def _parts(self) -> Session:
        if self._session is None:
            raise StorageUnavailable("rethinkdb connector is not open")
        return self._session
