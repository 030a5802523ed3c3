"""``SQLConnector``: records in one SQL table through SQLAlchemy's async engine.

URLs: ``sqlite+aiosqlite:///path.db`` (embedded default),
``postgresql+asyncpg://user@host:5432/db`` or ``mysql+asyncmy://user@host:3306/db`` (MariaDB, or
MySQL 8.0.17+). Options (strings accepted): ``table`` (default ``records``), ``schema`` (a
PostgreSQL schema, or a MariaDB/MySQL database, for the table; created if missing), ``timeout``
(seconds per call, default 5), ``page_size`` (scan page, default 500), ``pool_size``,
``synchronous`` (SQLite: ``normal``, the default, or ``full``).

Writes are one atomic conditional upsert per row
(``INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE cur.version < excluded.version``, or its
``ON DUPLICATE KEY UPDATE`` form, see ``statements.py``; the write paths of SQLite and of
MariaDB/MySQL, each on a connection of its own, are ``sqlite.py`` and ``mysql.py``);
rows not known to be written are read back in the same transaction to tell an idempotent retry
from a conflict. A batch is one transaction; a name may appear only once per batch (PostgreSQL
refuses a batch that repeats one with ``StorageRejected``).

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed write survives the process
being killed (SIGKILL), but may be lost if the operating system crashes or power fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from connectors._common import dump_json, option_float, option_int, prefix_upper_bound
from connectors.base import (
    CAPABILITY_NETWORK,
    CAPABILITY_RAW,
    Delete,
    Put,
    RawReader,
    Snapshot,
    StorageUnavailable,
    WriteResult,
    collection_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Delete as SADelete
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from connectors.sql.mysql import MySQLWriter
    from connectors.sql.sqlite import SQLiteWriter
    from connectors.sql.statements import Upsert

__all__ = ["SQLConnector"]

_CHUNK = 500  # names per IN (...) list; far below every backend's bind-parameter limit


class SQLConnector:
    """Records in a SQL table; see the module docstring for URLs, options and guarantees."""

    name: ClassVar[str] = "sql"
    # "network" applies to server URLs; for SQLite the suite finds no host to make unreachable.
    capabilities: ClassVar[frozenset[str]] = frozenset({CAPABILITY_RAW, CAPABILITY_NETWORK})
    namespace_option: ClassVar[str] = "table"
    """The option that isolates one store from another; the conformance suite varies it."""

    def __init__(
        self,
        url: str,
        *,
        table: str = "records",
        schema: str | None = None,
        timeout: float | str = 5.0,
        page_size: int | str = 500,
        pool_size: int | str = 5,
        synchronous: str = "normal",
    ) -> None:
        from connectors.sql.schema import check_identifier

        self.url = url
        self.table_name = check_identifier(table, "table")
        self.schema = None if schema in (None, "") else check_identifier(str(schema), "schema")
        self.timeout = option_float(timeout, "timeout")
        self.page_size = option_int(page_size, "page_size")
        self.pool_size = option_int(pool_size, "pool_size")
        from connectors.sql.engine import SQLITE_SYNCHRONOUS

        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"option 'synchronous' must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
        self.synchronous = synchronous
        self._engine: AsyncEngine | None = None
        self._table: Table | None = None
        self._upsert: Upsert | None = None
        self._sqlite: SQLiteWriter | None = None  # the SQLite write path, on SQLite
        self._mysql: MySQLWriter | None = None  # the MariaDB/MySQL write path, on those
        self._delete: SADelete | None = None
        self._serialize: Callable[[str], str] = str

    @classmethod
    def unreachable_url(cls, url: str) -> str | None:
        """``url`` aimed where no server is (for the conformance suite's error test): a socket
        path that does not exist for a socket URL, else a local port nobody listens on."""
        import socket

        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            return None
        # MariaDB/MySQL drivers take a socket as `unix_socket`; asyncpg as a `host` directory.
        for key in ("unix_socket", "host"):
            if key in parsed.query:
                missing = parsed.update_query_dict({key: "/nonexistent/recordgate.sock"})
                return missing.render_as_string(hide_password=False)
        with socket.socket() as sock:  # the kernel hands out a free port; closing frees it
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return parsed.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        from connectors.sql.engine import build_engine, serialize
        from connectors.sql.errors import guard
        from connectors.sql.schema import MYSQL_FAMILY, build_table
        from connectors.sql.statements import build_delete, build_upsert

        if self._engine is not None:
            return
        async with guard(f"open {self._safe_url()}", self.timeout):
            engine = build_engine(
                self.url,
                timeout=self.timeout,
                pool_size=self.pool_size,
                synchronous=self.synchronous,
            )
            sqlite: SQLiteWriter | None = None
            mysql: MySQLWriter | None = None
            try:
                async with engine.begin() as conn:
                    # Built once connected: column types depend on the server (MariaDB or MySQL).
                    table = build_table(self.table_name, self.schema, conn.dialect)
                    if self.schema and conn.dialect.name != "sqlite":
                        from sqlalchemy.schema import CreateSchema

                        # A PostgreSQL schema; a database on MariaDB/MySQL.
                        await conn.execute(CreateSchema(self.schema, if_not_exists=True))
                    await conn.run_sync(table.metadata.create_all, checkfirst=True)
                if engine.dialect.name == "sqlite":
                    from connectors.sql.sqlite import SQLiteWriter

                    target = engine.dialect.identifier_preparer.format_table(table)
                    sqlite = SQLiteWriter(target)
                    await sqlite.open(engine)
                elif engine.dialect.name in MYSQL_FAMILY:
                    from connectors.sql.mysql import MySQLWriter

                    target = engine.dialect.identifier_preparer.format_table(table)
                    mysql = MySQLWriter(target)
                    await mysql.open(engine)
            except BaseException:
                if mysql is not None:
                    await mysql.close()
                await engine.dispose()
                raise
        self._engine = engine
        self._table = table
        self._sqlite = sqlite
        self._mysql = mysql
        if sqlite is None:
            self._upsert = build_upsert(engine, table)
        self._delete = build_delete(table)
        self._serialize = serialize(engine.dialect.name)

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        sqlite, self._sqlite = self._sqlite, None
        mysql, self._mysql = self._mysql, None
        if sqlite is not None:
            await sqlite.close()
        if mysql is not None:
            await mysql.close()
        if engine is not None:
            await engine.dispose()

    async def __aenter__(self) -> SQLConnector:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def drop(self) -> None:
        """Drop the table (tests and the conformance suite clean up with it)."""
        from connectors.sql.errors import guard

        engine, table = self._parts()
        async with guard("drop table", self.timeout), engine.begin() as conn:
            await conn.run_sync(table.metadata.drop_all, checkfirst=True)

    @property
    def engine(self) -> AsyncEngine:
        """The open engine (diagnostics and tests); ``StorageUnavailable`` before ``open``."""
        return self._parts()[0]

    # -- reads -----------------------------------------------------------------------------

    async def get(self, name: str) -> Snapshot | None:
        found = await self.get_many([name])
        return found.get(name)

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        from connectors.sql.errors import guard

        engine, _ = self._parts()
        wanted = list(dict.fromkeys(names))
        async with guard("get", self.timeout), engine.connect() as conn:
            return await self._select(conn, wanted)

    async def head(self, name: str) -> int | None:
        from sqlalchemy import select

        from connectors.sql.errors import guard

        engine, table = self._parts()
        async with guard("head", self.timeout), engine.connect() as conn:
            result = await conn.execute(select(table.c.version).where(table.c.name == name))
            version = result.scalar_one_or_none()
        return None if version is None else int(version)

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        from sqlalchemy import select

        from connectors.sql.errors import guard

        engine, table = self._parts()
        upper = prefix_upper_bound(prefix)
        after: str | None = None
        while True:
            # A range, not LIKE: '%' and '_' in a prefix stay literal, and the index is used.
            query = select(table.c.name, table.c.version, table.c.data).where(
                table.c.name >= prefix
            )
            if upper is not None:
                query = query.where(table.c.name < upper)
            if after is not None:
                query = query.where(table.c.name > after)
            query = query.order_by(table.c.name).limit(self.page_size)
            async with guard("scan", self.timeout), engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for name, version, data in rows:
                yield Snapshot(name, int(version), data)
            if len(rows) < self.page_size:
                return
            after = rows[-1][0]

    # -- writes ----------------------------------------------------------------------------

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        from connectors.sql.errors import guard
        from connectors.sql.outcomes import outcomes

        engine, _ = self._parts()
        if not ops:
            return []
        now = datetime.now(UTC)
        if self._sqlite is not None:
            async with guard(f"write of {len(ops)} operations", self.timeout):
                return await self._sqlite.write(ops, now)
        if self._mysql is not None:
            assert self._upsert is not None
            async with guard(f"write of {len(ops)} operations", self.timeout):
                return await self._mysql.write(ops, now, self._upsert)
        # In name order: rows are locked in the order they are written, so concurrent batches
        # sharing names (two gateways, a retry) lock them in one order and cannot deadlock.
        by_name = sorted(ops, key=lambda op: op.name)
        puts = [op for op in by_name if isinstance(op, Put)]
        deletes = [op for op in by_name if isinstance(op, Delete)]
        # Serialise up front: non-JSON data is rejected before the database is touched, and the
        # engine's serializer passes these strings through unchanged.
        texts = {op.name: dump_json(op.data) for op in puts}
        serialize = self._serialize
        async with guard(f"write of {len(ops)} operations", self.timeout), engine.begin() as conn:
            applied: set[str] | None = None  # None: every put written
            unresolved: list[str] = []
            if puts:
                assert self._upsert is not None
                rows = [
                    (op.name, collection_of(op.name), op.version, serialize(texts[op.name]), now)
                    for op in puts
                ]
                written = await self._upsert(conn, rows)
                if written is None or len(written) < len(puts):
                    # Some rows were refused; which ones, the read-back tells.
                    applied = written or set()
                    unresolved = [op.name for op in puts if op.name not in applied]
            if deletes:
                await conn.execute(
                    self._delete,  # type: ignore[arg-type]
                    [{"b_name": op.name, "b_version": op.version} for op in deletes],
                )
                unresolved += [op.name for op in deletes]
            stored = await self._select(conn, unresolved) if unresolved else {}
        return outcomes(ops, texts, applied, stored)

    # -- raw layout ------------------------------------------------------------------------

    def raw_reader(self) -> RawReader:
        from connectors.sql.raw import raw_reader_for

        return raw_reader_for(self.url, self.table_name, self.schema, self.timeout)

    # -- helpers ---------------------------------------------------------------------------

    def _parts(self) -> tuple[AsyncEngine, Table]:
        if self._engine is None or self._table is None:
            raise StorageUnavailable("sql connector is not open")
        return self._engine, self._table

    async def _select(self, conn: AsyncConnection, names: list[str]) -> dict[str, Snapshot]:
        from sqlalchemy import select

        _, table = self._parts()
        found: dict[str, Snapshot] = {}
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            query = select(table.c.name, table.c.version, table.c.data).where(
                table.c.name.in_(chunk)
            )
            for name, version, data in await conn.execute(query):
                found[name] = Snapshot(name, int(version), data)
        return found

    def _safe_url(self) -> str:
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "<unparsable url>"
