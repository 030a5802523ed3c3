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

Fencing (capability ``"fenced"``): fences live in ``<table>_fences`` (name, fence), written in
the batch's transaction after a lock on the fence rows (``fences.py``); the records table holds
live records only. Batches without a fenced operation never touch the fence table.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed write survives the process
being killed (SIGKILL), but may be lost if the operating system crashes or power fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from connectors._common import (
    dump_json,
    import_driver,
    option_float,
    option_int,
    prefix_upper_bound,
)
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
    collection_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Delete as SADelete
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from connectors.sql.fences import PostgresFences
    from connectors.sql.mysql import MySQLWriter
    from connectors.sql.sqlite import SQLiteWriter
    from connectors.sql.statements import Upsert

__all__ = ["SQLConnector"]

_CHUNK = 500  # names per IN (...) list; far below every backend's bind-parameter limit

_DRIVER_EXTRAS = {"asyncpg": "postgresql", "asyncmy": "mariadb", "aiosqlite": "sqlite"}
"""The extra that installs each supported driver (aiosqlite is always installed)."""


def _import_sql_driver(url: str) -> None:
    """Import the URL's driver now, so that a missing one is a ``DriverMissing`` naming its extra
    when the connector is configured, not a traceback from deep inside ``open()``. A URL that
    does not parse is a ``ValueError`` (a configuration error)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"not a SQLAlchemy URL: {exc}") from None
    driver = parsed.get_driver_name()
    extra = _DRIVER_EXTRAS.get(driver)
    if extra is not None:
        import_driver(driver, extra, needed_for=f"storage URL {parsed.drivername}://")


class SQLConnector:
    """Records in a SQL table; see the module docstring for URLs, options and guarantees."""

    name: ClassVar[str] = "sql"
    # "network" applies to server URLs; for SQLite the suite finds no host to make unreachable.
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {CAPABILITY_RAW, CAPABILITY_NETWORK, CAPABILITY_FENCED}
    )
    namespace_option: ClassVar[str] = "table"
    """The option that isolates one store from another; the conformance suite varies it."""

    cannot_hold: frozenset[str]
    """What the URL's database cannot hold (``connectors.base.cannot_hold``): ``{"nul"}`` on
    PostgreSQL."""

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
        from connectors.sql.schema import check_identifier, check_table_name

        _import_sql_driver(url)
        self.url = url
        self.table_name = check_table_name(table)
        self.schema = None if schema in (None, "") else check_identifier(str(schema), "schema")
        self.timeout = option_float(timeout, "timeout")
        self.page_size = option_int(page_size, "page_size")
        self.pool_size = option_int(pool_size, "pool_size")
        from sqlalchemy.engine import make_url

        from connectors.sql.engine import SQLITE_SYNCHRONOUS, cannot_hold

        self.cannot_hold = cannot_hold(make_url(url).get_backend_name())

        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"option 'synchronous' must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
        self.synchronous = synchronous
        self._engine: AsyncEngine | None = None
        self._table: Table | None = None
        self._upsert: Upsert | None = None
        self._sqlite: SQLiteWriter | None = None  # the SQLite write path, on SQLite
        self._mysql: MySQLWriter | None = None  # the MariaDB/MySQL write path, on those
        self._delete: SADelete | None = None
        self._fences: PostgresFences | None = None  # the fence table's statements (PostgreSQL)
        self._serialize: Callable[[str], str] = str

    @classmethod
    def url_for(cls, url: str, host: str, port: int) -> str | None:
        """``url`` aimed at TCP ``host:port`` (the conformance suite's network tests); ``None``
        for SQLite. A socket in the URL (``unix_socket``, or asyncpg's ``host`` directory) is
        dropped for the TCP address."""
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            return None
        query = {k: v for k, v in parsed.query.items() if k not in ("unix_socket", "host")}
        aimed = parsed.set(host=host, port=port, query=query)
        return aimed.render_as_string(hide_password=False)

    @classmethod
    def server_address(cls, url: str) -> tuple[str, int] | str | None:
        """Where the server of ``url`` listens: ``(host, port)``, a socket path, or ``None``."""
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            return None
        default_port = 5432 if backend == "postgresql" else 3306
        socket_path = parsed.query.get("unix_socket")
        if isinstance(socket_path, str):
            return socket_path
        directory = parsed.query.get("host")  # asyncpg: a directory holding the socket
        if isinstance(directory, str) and directory.startswith("/"):
            return f"{directory}/.s.PGSQL.{parsed.port or default_port}"
        return parsed.host or "localhost", parsed.port or default_port

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        from connectors.sql.engine import build_engine, serialize
        from connectors.sql.errors import guard
        from connectors.sql.schema import MYSQL_FAMILY, build_table, fence_table
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

                    quote = engine.dialect.identifier_preparer.format_table
                    sqlite = SQLiteWriter(quote(table), quote(fence_table(table)))
                    await sqlite.open(engine)
                elif engine.dialect.name in MYSQL_FAMILY:
                    from connectors.sql.mysql import MySQLWriter

                    quote = engine.dialect.identifier_preparer.format_table
                    mysql = MySQLWriter(quote(table), quote(fence_table(table)))
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
        if engine.dialect.name == "postgresql":
            from connectors.sql.fences import PostgresFences

            quote = engine.dialect.identifier_preparer.format_table
            self._fences = PostgresFences(quote(fence_table(table)))
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
        from connectors.sql.fences import fenced_names, is_fenced, refusals, settlement
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
        # Serialise up front: non-JSON data is rejected before the database is touched, and the
        # engine's serializer passes these strings through unchanged.
        texts = {op.name: dump_json(op.data) for op in by_name if isinstance(op, Put)}
        async with guard(f"write of {len(ops)} operations", self.timeout), engine.begin() as conn:
            if self._fences is None or not is_fenced(ops):
                applied, stored = await self._write_rows(conn, by_name, texts, now, [])
                return outcomes(ops, texts, applied, stored)
            # Fence rows first (locked until the commit), then the records; see fences.py.
            kept = await self._fences.lock(conn, fenced_names(ops))
            refused = refusals(by_name, kept)
            todo = [op for op in by_name if op.name not in refused] if refused else by_name
            applied, stored = await self._write_rows(conn, todo, texts, now, list(refused))
            results = outcomes(ops, texts, applied, stored, refused)
            await self._fences.settle(conn, *settlement(results, kept))
            return results

    async def _write_rows(
        self,
        conn: AsyncConnection,
        by_name: list[Put | Delete],
        texts: dict[str, str],
        now: datetime,
        unresolved: list[str],
    ) -> tuple[set[str] | None, dict[str, Snapshot]]:
        """The conditional upsert and delete of ``by_name`` (PostgreSQL), and the read-back of
        the names not known written (and of ``unresolved``)."""
        puts = [op for op in by_name if isinstance(op, Put)]
        deletes = [op for op in by_name if isinstance(op, Delete)]
        serialize = self._serialize
        applied: set[str] | None = None  # None: every put written
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
                unresolved += [op.name for op in puts if op.name not in applied]
        if deletes:
            await conn.execute(
                self._delete,  # type: ignore[arg-type]
                [{"b_name": op.name, "b_version": op.version} for op in deletes],
            )
            unresolved += [op.name for op in deletes]
        stored = await self._select(conn, unresolved) if unresolved else {}
        return applied, stored

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
