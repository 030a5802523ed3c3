"""SQL connector specifics on real SQLite, PostgreSQL and MariaDB: pragmas and session settings,
column types, the data-team queries, lock timeouts, error mapping and crash durability."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from connectors.base import (
    Delete,
    Outcome,
    Put,
    Snapshot,
    StorageRejected,
    StorageTimeout,
    StorageUnavailable,
)
from connectors.sql import DATA_TEAM_QUERIES, SQLConnector
from tests.servers import require_mariadb, require_postgres

USERS = [
    Put("user/alice", 1, {"age": 31, "city": "Lyon"}),
    Put("user/bob", 1, {"age": 25}),
    Put("user/carol", 2, {"age": 47, "tags": ["admin"]}),
    Put("user/dave", 1, {"age": 30}),
    Put("pet/rex", 1, {"age": 99}),  # another collection: must not match
]
OLDER_THAN_30 = ["user/alice", "user/carol"]


# -- SQLite -----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "records.db"


@pytest.fixture
async def sqlite_connector(sqlite_path: Path) -> AsyncIterator[SQLConnector]:
    async with SQLConnector(f"sqlite+aiosqlite:///{sqlite_path}") as connector:
        yield connector


def _sqlite_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(query).fetchall()


async def test_sqlite_wal_and_synchronous_normal(
    sqlite_connector: SQLConnector, sqlite_path: Path
) -> None:
    async with sqlite_connector.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
    assert _sqlite_rows(sqlite_path, "PRAGMA journal_mode") == [("wal",)]  # stored in the file


async def test_sqlite_synchronous_full_on_request(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/full.db"
    async with SQLConnector(url, synchronous="full") as connector:
        async with connector.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL
        await connector.write(USERS)  # the writer's own connection carries the pragma too
        assert await connector.head(USERS[0].name) == USERS[0].version


async def test_sqlite_data_team_query(sqlite_connector: SQLConnector, sqlite_path: Path) -> None:
    await sqlite_connector.write(USERS)
    rows = _sqlite_rows(sqlite_path, DATA_TEAM_QUERIES["sqlite"])
    assert [name for (name,) in rows] == OLDER_THAN_30


async def test_sqlite_schema(sqlite_connector: SQLConnector, sqlite_path: Path) -> None:
    columns = {row[1]: row[2] for row in _sqlite_rows(sqlite_path, "PRAGMA table_info(records)")}
    assert set(columns) == {"name", "collection", "version", "data", "updated_at"}
    assert columns["version"] == "BIGINT" and columns["data"] == "JSON"
    indexes = _sqlite_rows(sqlite_path, "PRAGMA index_list(records)")
    assert any(row[1] == "ix_records_collection" for row in indexes)


async def test_sqlite_table_option(sqlite_path: Path) -> None:
    async with SQLConnector(f"sqlite+aiosqlite:///{sqlite_path}", table="snapshots") as c:
        await c.write([Put("a/b", 1, {})])
    assert _sqlite_rows(sqlite_path, "SELECT name, collection FROM snapshots") == [("a/b", "a")]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:///x.db", None),
        (
            "mysql+asyncmy://root@localhost/test?unix_socket=/run/mysqld/mysqld.sock",
            "mysql+asyncmy://root@127.0.0.1:4321/test",
        ),
        (
            "postgresql+asyncpg://postgres@/test?host=/var/run/postgresql",
            "postgresql+asyncpg://postgres@127.0.0.1:4321/test",
        ),
        (
            "mysql+asyncmy://u:pw@db.example:3306/x?charset=utf8mb4",
            "mysql+asyncmy://u:pw@127.0.0.1:4321/x?charset=utf8mb4",
        ),
    ],
)
def test_url_for_an_address(url: str, expected: str | None) -> None:
    from sqlalchemy.engine import make_url

    aimed = SQLConnector.url_for(url, "127.0.0.1", 4321)
    if expected is None:
        assert aimed is None
    else:
        assert aimed is not None and make_url(aimed) == make_url(expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:///x.db", None),
        ("mysql+asyncmy://root@localhost/test?unix_socket=/run/m.sock", "/run/m.sock"),
        ("postgresql+asyncpg://postgres@/test?host=/var/run/postgresql",
         "/var/run/postgresql/.s.PGSQL.5432"),
        ("postgresql+asyncpg://postgres@db.example/test", ("db.example", 5432)),
        ("mysql+asyncmy://u:pw@db.example:3307/x", ("db.example", 3307)),
    ],
)  # fmt: skip
def test_server_address(url: str, expected: object) -> None:
    assert SQLConnector.server_address(url) == expected


@pytest.mark.parametrize("bad", ["records; DROP TABLE x", "1abc", "", "a-b"])
def test_table_name_must_be_identifier(bad: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        SQLConnector("sqlite+aiosqlite:///x.db", table=bad)


async def test_sqlite_unopenable_path_is_unavailable(tmp_path: Path) -> None:
    connector = SQLConnector(f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db", timeout=2)
    with pytest.raises(StorageUnavailable):
        await connector.open()


async def test_sqlite_locked_database_times_out(
    sqlite_connector: SQLConnector, sqlite_path: Path
) -> None:
    short = SQLConnector(f"sqlite+aiosqlite:///{sqlite_path}", timeout=1)
    async with short:
        with closing(sqlite3.connect(sqlite_path, isolation_level=None)) as blocker:
            blocker.execute("BEGIN IMMEDIATE")  # hold the write lock
            started = time.monotonic()
            with pytest.raises(StorageTimeout):
                await short.write([Put("x/1", 1, {})])
            assert time.monotonic() - started < 4
            blocker.execute("ROLLBACK")
        [result] = await short.write([Put("x/1", 1, {})])  # usable again once the lock is gone
        assert result.ok


def _sigkilled_after(path: Path, writes: str) -> None:
    """Runs ``writes`` (statements using ``c``, an open SQLConnector on the SQLite file
    ``path``, and ``Put``/``Delete``) in a child process that SIGKILLs itself once they are
    done; fails unless it died of that."""
    body = textwrap.indent(textwrap.dedent(writes).strip(), "    ")
    script = (
        "import asyncio, os, signal\n"
        "from connectors.base import Delete, Put\n"
        "from connectors.sql import SQLConnector\n"
        "async def main():\n"
        f"    c = SQLConnector({f'sqlite+aiosqlite:///{path}'!r})\n"
        "    await c.open()\n"
        f"{body}\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_sqlite_committed_write_survives_sigkill(sqlite_path: Path) -> None:
    # The durability promise of WAL + synchronous=NORMAL: a killed process loses nothing
    # committed (an OS crash might; see the module docstring of connectors.sql.connector).
    _sigkilled_after(
        sqlite_path,
        """
        [r] = await c.write([Put("crash/1", 7, {"survives": True})])
        assert r.ok
        """,
    )
    rows = _sqlite_rows(sqlite_path, "SELECT version, data FROM records WHERE name = 'crash/1'")
    assert rows == [(7, '{"survives":true}')]


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
async def pg_schema() -> AsyncIterator[tuple[str, str]]:
    """A private schema, so the default table name ``records`` (used verbatim by the data-team
    query) does not collide with other tests; dropped afterwards."""
    url = require_postgres()
    schema = f"rg_test_{uuid.uuid4().hex[:10]}"
    yield url, schema
    import asyncpg

    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_fetch(url: str, schema: str, query: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(_dsn(url), server_settings={"search_path": schema})
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def test_postgres_data_team_query(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    async with SQLConnector(url, schema=schema) as connector:
        await connector.write(USERS)
    rows = await _pg_fetch(url, schema, DATA_TEAM_QUERIES["postgresql"])
    assert [row["name"] for row in rows] == OLDER_THAN_30


async def test_postgres_column_types_and_index(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    async with SQLConnector(url, schema=schema):
        pass
    columns = await _pg_fetch(
        url,
        schema,
        "SELECT column_name, data_type, collation_name FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = 'records'",
        schema,
    )
    types = {row["column_name"]: row["data_type"] for row in columns}
    assert types == {
        "name": "text",
        "collection": "text",
        "version": "bigint",
        "data": "jsonb",
        "updated_at": "timestamp with time zone",
    }
    collations = {row["column_name"]: row["collation_name"] for row in columns}
    assert collations["name"] == "C"  # code-point order, like Python's sorted()
    indexes = await _pg_fetch(
        url, schema, "SELECT indexdef FROM pg_indexes WHERE schemaname = $1", schema
    )
    assert any("(collection)" in row["indexdef"] for row in indexes)


async def test_postgres_locked_row_times_out(pg_schema: tuple[str, str]) -> None:
    import asyncpg

    url, schema = pg_schema
    async with SQLConnector(url, schema=schema, timeout=1) as connector:
        await connector.write([Put("lock/1", 1, {})])
        blocker = await asyncpg.connect(_dsn(url))
        try:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute(
                f"SELECT 1 FROM {schema}.records WHERE name = 'lock/1' FOR UPDATE"
            )
            started = time.monotonic()
            with pytest.raises(StorageTimeout):
                await connector.write([Put("lock/1", 2, {})])
            assert time.monotonic() - started < 4
            await tx.rollback()
        finally:
            await blocker.close()
        [result] = await connector.write([Put("lock/1", 2, {"after": "lock"})])
        assert result.ok


async def test_postgres_dead_port_fails_within_timeout() -> None:
    require_postgres()
    with closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connector = SQLConnector(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test", timeout=1)
    started = time.monotonic()
    with pytest.raises((StorageUnavailable, StorageTimeout)):
        await asyncio.wait_for(connector.open(), timeout=5)
    assert time.monotonic() - started < 3


async def test_postgres_missing_database_is_unavailable() -> None:
    url = require_postgres().rsplit("/", 1)[0] + "/no_such_database_rg"
    with pytest.raises(StorageUnavailable):
        await SQLConnector(url, timeout=2).open()


# -- both servers -----------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
async def test_batches_in_opposite_orders_do_not_deadlock(server: str) -> None:
    # Two gateways flushing the same names, listed in opposite orders. Rows are written (and
    # locked) in name order whatever the batch order, so neither waits for the other in a cycle;
    # unordered, some of these writes fail as deadlocks.
    url = require_postgres() if server == "postgresql" else require_mariadb()
    table = f"rg_order_{uuid.uuid4().hex[:8]}"
    names = [f"d/{i:03d}" for i in range(300)]
    async with SQLConnector(url, table=table) as a, SQLConnector(url, table=table) as b:
        try:
            for version in range(1, 51):
                await asyncio.gather(
                    a.write([Put(n, version, {"by": "a"}) for n in names]),
                    b.write([Put(n, version, {"by": "b"}) for n in reversed(names)]),
                )
        finally:
            await a.drop()


# -- MariaDB ----------------------------------------------------------------------------------


@pytest.fixture
async def maria_db() -> AsyncIterator[tuple[str, str]]:
    """A private database (the connector's ``schema`` option creates it), so the default table
    name ``records`` (used verbatim by the data-team query) does not collide; dropped after."""
    url = require_mariadb()
    database = f"rg_test_{uuid.uuid4().hex[:10]}"
    yield url, database
    await _maria_fetch(url, None, f"DROP DATABASE IF EXISTS {database}")


async def _maria_fetch(url: str, database: str | None, query: str, *args: Any) -> list[Any]:
    import asyncmy
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn = await asyncmy.connect(
        host=parsed.host,
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=database,
        charset="utf8mb4",
        autocommit=True,
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(query, args)
            return list(await cursor.fetchall())
    finally:
        await conn.ensure_closed()


async def test_mariadb_data_team_query(maria_db: tuple[str, str]) -> None:
    url, database = maria_db
    async with SQLConnector(url, schema=database) as connector:
        await connector.write(USERS)
    rows = await _maria_fetch(url, database, DATA_TEAM_QUERIES["mariadb"])
    assert [name for (name,) in rows] == OLDER_THAN_30


async def test_mariadb_column_types_and_index(maria_db: tuple[str, str]) -> None:
    url, database = maria_db
    async with SQLConnector(url, schema=database):
        pass
    columns = await _maria_fetch(
        url,
        None,
        "SELECT column_name, column_type, collation_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'records'",
        database,
    )
    assert {name: (kind, collation) for name, kind, collation in columns} == {
        # Binary and NO PAD: code-point order, and 'a' and 'a ' are different names.
        "name": ("varchar(768)", "utf8mb4_nopad_bin"),
        "collection": ("varchar(768)", "utf8mb4_nopad_bin"),
        "version": ("bigint(20)", None),
        "data": ("longtext", "utf8mb4_bin"),  # MariaDB's JSON, checked by json_valid
        "updated_at": ("datetime(6)", None),
    }
    [(_, ddl)] = await _maria_fetch(url, database, "SHOW CREATE TABLE records")
    assert "CHECK (json_valid(`data`))" in ddl and "ENGINE=InnoDB" in ddl
    indexes = await _maria_fetch(
        url,
        None,
        "SELECT index_name, column_name FROM information_schema.statistics "
        "WHERE table_schema = %s AND table_name = 'records'",
        database,
    )
    assert sorted(indexes) == [("PRIMARY", "name"), ("ix_records_collection", "collection")]


async def test_mariadb_session_settings(maria_db: tuple[str, str]) -> None:
    url, database = maria_db
    async with (
        SQLConnector(url, schema=database, timeout=3) as connector,
        connector.engine.connect() as conn,
    ):
        settings = await conn.exec_driver_sql(
            "SELECT @@tx_isolation, @@sql_mode, @@innodb_lock_wait_timeout, "
            "@@lock_wait_timeout, @@max_statement_time"
        )
        row: Any = settings.one()
        isolation, sql_mode, *waits = row
    assert isolation == "READ-COMMITTED"
    assert "STRICT_ALL_TABLES" in sql_mode.split(",")
    assert waits == [2, 2, 2.4]  # below the call's 3 s: the server gives up first


async def test_mariadb_unchanged_rows_count_zero(maria_db: tuple[str, str]) -> None:
    # The upsert's count relies on the server's own affected rows (SQLAlchemy asks for found
    # rows by default, where a row left alone would count 1).
    url, database = maria_db
    async with SQLConnector(url, schema=database) as connector:
        await connector.write([Put("n/1", 1, {})])
        async with connector.engine.begin() as conn:
            result = await conn.exec_driver_sql(
                f"INSERT INTO {database}.records (name, collection, version, data, updated_at) "
                "VALUES ('n/1', 'n', 1, '{}', NOW()) ON DUPLICATE KEY UPDATE version = version"
            )
            assert result.rowcount == 0


async def test_mariadb_names_differing_in_trailing_spaces(maria_db: tuple[str, str]) -> None:
    url, database = maria_db
    async with SQLConnector(url, schema=database) as connector:
        results = await connector.write([Put("a", 1, {"n": 0}), Put("a ", 1, {"n": 1})])
        assert all(r.ok for r in results)
        assert [s async for s in connector.scan("a")] == [
            Snapshot("a", 1, {"n": 0}),
            Snapshot("a ", 1, {"n": 1}),
        ]


async def test_mariadb_name_length_limit(maria_db: tuple[str, str]) -> None:
    url, database = maria_db
    longest = "\U0001f642" * 768  # 3072 bytes of UTF-8
    async with SQLConnector(url, schema=database) as connector:
        [result] = await connector.write([Put(longest, 1, {})])
        assert result.ok and await connector.head(longest) == 1
        # Refused, never truncated: truncation would make different long names one record.
        with pytest.raises(StorageRejected, match="too long"):
            await connector.write([Put("x" * 769, 1, {})])
        assert await connector.head("x" * 768) is None


async def test_mariadb_batch_over_several_statements(maria_db: tuple[str, str]) -> None:
    # About 1.5 million characters: sent as two multi-row statements, each one's RETURNING rows
    # counted, within one transaction.
    url, database = maria_db
    names = [f"big/{i:02d}" for i in range(30)]
    async with SQLConnector(url, schema=database) as connector:
        await connector.write([Put(n, 2, {"old": True}) for n in names[::3]])
        ops = [Put(n, 1, {"i": i, "pad": "é" * 50_000}) for i, n in enumerate(names)]
        results = await connector.write(ops)
        assert [r.ok for r in results] == [i % 3 != 0 for i in range(30)]
        assert results[3].current == Snapshot("big/03", 2, {"old": True})
        stored = await connector.get_many(names)
        assert all(stored[n].data == ops[i].data for i, n in enumerate(names) if i % 3)


async def test_mariadb_oversized_record_is_rejected(maria_db: tuple[str, str]) -> None:
    # Over max_allowed_packet (16 MiB by default) the server would drop the connection, which
    # looks like an outage; refusing the record lets the flusher fail it and go on.
    url, database = maria_db
    async with SQLConnector(url, schema=database) as connector:
        with pytest.raises(StorageRejected, match="max_allowed_packet"):
            await connector.write([Put("huge/1", 1, {"s": "x" * 17_000_000})])
        [result] = await connector.write([Put("huge/2", 1, {"s": "x" * 1_000_000})])
        assert result.ok and await connector.head("huge/1") is None


async def test_mariadb_counted_upsert_without_returning(maria_db: tuple[str, str]) -> None:
    """MySQL has no INSERT ... RETURNING: its upsert decides by the affected-rows count (1
    inserted, 2 updated, 0 left alone) and leaves ambiguous batches to the read-back. The same
    statement runs on MariaDB, so it is checked here."""
    from connectors.sql.statements import _mysql_upsert

    url, database = maria_db
    async with SQLConnector(url, schema=database) as connector:
        target = connector.engine.dialect.identifier_preparer.format_table(connector._parts()[1])
        connector._upsert = _mysql_upsert(target, returning=False)
        await connector.write([Put("c/stale", 5, {"s": 5}), Put("c/same", 2, {"r": 2})])
        await connector.write([Put("c/newer", 9, {"n": 9}), Put("c/old", 1, {"o": 1})])
        # Single rows: the count alone decides (1 inserted, 2 updated, 0 read back).
        assert (await connector.write([Put("c/one", 1, {})]))[0].ok
        assert (await connector.write([Put("c/one", 2, {})]))[0].ok
        [stale] = await connector.write([Put("c/one", 2, {"x": 1})])
        assert stale.current == Snapshot("c/one", 2, {})
        # All updated: twice the batch, no read-back needed.
        updated = await connector.write([Put("c/one", 3, {}), Put("c/old", 2, {"o": 2})])
        assert all(r.ok for r in updated)
        # One inserted, one updated, one left alone counts 3 for 3 rows: read back.
        ops: list[Put | Delete] = [
            Put("c/new", 1, {"fresh": True}),
            Put("c/stale", 4, {"s": 4}),
            Put("c/same", 2, {"r": 2}),
            Delete("c/newer", 3),
            Put("c/old", 3, {"o": 3}),
        ]
        results = await connector.write(ops)
        assert [r.outcome for r in results] == [
            Outcome.APPLIED,
            Outcome.CONFLICT,
            Outcome.APPLIED,
            Outcome.CONFLICT,
            Outcome.APPLIED,
        ]
        assert results[1].current == Snapshot("c/stale", 5, {"s": 5})
        assert await connector.get("c/old") == Snapshot("c/old", 3, {"o": 3})


async def test_mariadb_locked_row_times_out(maria_db: tuple[str, str]) -> None:
    import asyncmy
    from sqlalchemy.engine import make_url

    url, database = maria_db
    async with SQLConnector(url, schema=database, timeout=2) as connector:
        await connector.write([Put("lock/1", 1, {})])
        parsed = make_url(url)
        blocker = await asyncmy.connect(
            host=parsed.host, port=parsed.port or 3306, user=parsed.username, database=database
        )
        try:
            async with blocker.cursor() as cursor:
                await cursor.execute("SELECT 1 FROM records WHERE name = 'lock/1' FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(StorageTimeout, match="Lock wait timeout"):
                await connector.write([Put("lock/1", 2, {})])
            assert time.monotonic() - started < 4
            await blocker.rollback()
        finally:
            await blocker.ensure_closed()
        [result] = await connector.write([Put("lock/1", 2, {"after": "lock"})])
        assert result.ok


async def test_mariadb_connection_cut_and_restored(maria_db: tuple[str, str]) -> None:
    from sqlalchemy.engine import make_url

    from tests.proxy import TcpProxy

    url, database = maria_db
    parsed = make_url(url)
    async with (
        TcpProxy(parsed.host or "127.0.0.1", parsed.port or 3306) as proxy,
        SQLConnector(proxy.url_for(url), schema=database, timeout=1) as connector,
    ):
        await connector.write([Put("cut/1", 1, {})])
        await proxy.cut()
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await connector.write([Put("cut/1", 2, {})])
        with pytest.raises(StorageUnavailable):
            await connector.get("cut/1")
        assert time.monotonic() - started < 3
        await proxy.restore()
        [result] = await connector.write([Put("cut/1", 2, {"back": True})])
        assert result.ok and await connector.head("cut/1") == 2


async def test_mariadb_write_connection_dropped_while_idle_is_replaced(
    maria_db: tuple[str, str],
) -> None:
    # Every open connection is dropped between two writes (a server restart, an idle
    # timeout): the next write must not fail, though the writer's kept connection is dead.
    from sqlalchemy.engine import make_url

    from tests.proxy import TcpProxy

    url, database = maria_db
    parsed = make_url(url)
    async with (
        TcpProxy(parsed.host or "127.0.0.1", parsed.port or 3306) as proxy,
        SQLConnector(proxy.url_for(url), schema=database, timeout=2) as connector,
    ):
        await connector.write([Put("idle/1", 1, {})])
        await proxy.cut()
        await proxy.restore()
        [result] = await connector.write([Put("idle/1", 2, {"after": "drop"})])
        assert result.ok
        assert await connector.get("idle/1") == Snapshot("idle/1", 2, {"after": "drop"})


async def test_mariadb_cancelled_batch_is_all_or_nothing_and_writing_goes_on(
    maria_db: tuple[str, str],
) -> None:
    url, database = maria_db
    batch = [Put(f"cancel/{i:05}", 1, {"i": i, "pad": "x" * 200}) for i in range(5000)]
    async with SQLConnector(url, schema=database, timeout=5) as connector:
        await connector.write([Put("cancel-warm", 1, {})])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connector.write(batch), 0.005)
        [result] = await connector.write([Put("cancel-after", 1, {"ok": True})])
        assert result.ok
        await asyncio.sleep(0.5)  # the server notices the dropped connection and rolls back
        [(stored,)] = await _maria_fetch(
            url, database, "SELECT COUNT(*) FROM records WHERE name LIKE 'cancel/%%'"
        )
        assert stored in (0, len(batch))  # one transaction: never a part of the batch


async def test_mariadb_dead_port_fails_within_timeout() -> None:
    require_mariadb()
    with closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connector = SQLConnector(f"mysql+asyncmy://root@127.0.0.1:{port}/test", timeout=1)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        await asyncio.wait_for(connector.open(), timeout=5)
    assert time.monotonic() - started < 3


async def test_mariadb_missing_database_is_unavailable() -> None:
    url = require_mariadb().rsplit("/", 1)[0] + "/no_such_database_rg"
    with pytest.raises(StorageUnavailable, match="Unknown database"):
        await SQLConnector(url, timeout=2).open()


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1213, StorageTimeout),  # deadlock
        (1205, StorageTimeout),  # lock wait timeout
        (1969, StorageTimeout),  # max_statement_time
        (1045, StorageUnavailable),  # access denied
        (2013, StorageUnavailable),  # lost connection
        (1406, StorageRejected),  # data too long (a DataError)
    ],
)
def test_mysql_error_numbers_are_translated(number: int, expected: type[Exception]) -> None:
    from asyncmy import errors
    from sqlalchemy import exc

    from connectors.sql.errors import translate

    driver_error = (errors.DataError if number == 1406 else errors.OperationalError)(number, "x")
    wrapper = exc.DBAPIError if number == 1406 else exc.OperationalError
    error = translate(wrapper("stmt", None, driver_error), "write")
    assert type(error) is expected


# -- fencing: the fence table beside the records table ----------------------------------------


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
async def fenced_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[SQLConnector, Any]]:
    """A connector on a private table of each backend, and ``raw(query)``: rows as tuples
    through the backend's own driver, as a data team would read them."""
    table = f"rg_fence_{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        path = tmp_path / "fences.db"
        url = f"sqlite+aiosqlite:///{path}"

        async def raw(query: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in _sqlite_rows(path, query)]

    elif request.param == "postgresql":
        url = require_postgres()

        async def raw(query: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in await _pg_fetch(url, "public", query)]

    else:
        url = require_mariadb()
        database = make_url(url).database

        async def raw(query: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in await _maria_fetch(url, database, query)]

    async with SQLConnector(url, table=table, timeout=2) as connector:
        try:
            yield connector, raw
        finally:
            await connector.drop()


async def test_fence_table_holds_fences_and_tombstones_records_only_live_rows(
    fenced_store: tuple[SQLConnector, Any],
) -> None:
    connector, raw = fenced_store
    table = connector.table_name
    await connector.write(
        [Put("f/live", 1, {}, fence=3), Put("f/gone", 1, {}, fence=3), Put("f/plain", 5, {})]
    )
    await connector.write([Delete("f/gone", 1, fence=4), Delete("f/never", 1, fence=2**63 - 1)])
    # Neither a conflict on a name without a fence nor a refused op leaves a row behind.
    [conflict] = await connector.write([Put("f/plain", 4, {}, fence=9)])
    assert conflict.outcome is Outcome.CONFLICT
    [fenced] = await connector.write([Put("f/gone", 9, {}, fence=1)])
    assert fenced.outcome is Outcome.FENCED and fenced.fence == 4
    assert await raw(f"SELECT name FROM {table} ORDER BY name") == [("f/live",), ("f/plain",)]
    assert await raw(f"SELECT name, fence FROM {table}_fences ORDER BY name") == [
        ("f/gone", 4),
        ("f/live", 3),
        ("f/never", 2**63 - 1),
    ]
    await connector.drop()
    with pytest.raises(Exception, match=f"{table}_fences"):
        await raw(f"SELECT name FROM {table}_fences")
    await connector.close()
    await connector.open()  # recreates both tables, for the fixture's drop


def test_table_name_leaves_room_for_the_fence_table() -> None:
    SQLConnector("sqlite+aiosqlite:///x.db", table="t" * 56)
    with pytest.raises(ValueError, match="fence table"):
        SQLConnector("sqlite+aiosqlite:///x.db", table="t" * 57)


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
async def test_fenced_write_waits_for_the_fence_row_lock(server: str) -> None:
    # A fenced write cannot finish while another transaction holds the name's fence row (it
    # fails as a timeout), an unfenced write of the name is not held up by it.
    import asyncmy
    import asyncpg

    url = require_postgres() if server == "postgresql" else require_mariadb()
    table = f"rg_flock_{uuid.uuid4().hex[:8]}"
    lock = f"SELECT fence FROM {table}_fences WHERE name = 'lock/f' FOR UPDATE"
    async with SQLConnector(url, table=table, timeout=2) as connector:
        try:
            await connector.write([Put("lock/f", 1, {}, fence=1)])
            parsed = make_url(url)
            if server == "postgresql":
                blocker: Any = await asyncpg.connect(_dsn(url))
                tx = blocker.transaction()
                await tx.start()
                assert await blocker.fetchval(lock) == 1
            else:
                blocker = await asyncmy.connect(
                    host=parsed.host,
                    port=parsed.port or 3306,
                    user=parsed.username,
                    database=parsed.database,
                )
                async with blocker.cursor() as cursor:
                    await cursor.execute(lock)
            try:
                started = time.monotonic()
                with pytest.raises(StorageTimeout):
                    await connector.write([Put("lock/f", 2, {}, fence=2)])
                assert time.monotonic() - started < 5
                [result] = await connector.write([Put("lock/f", 3, {"unfenced": 1})])
                assert result.ok
            finally:
                if server == "postgresql":
                    await tx.rollback()
                    await blocker.close()
                else:
                    await blocker.rollback()
                    await blocker.ensure_closed()
            [result] = await connector.write([Put("lock/f", 4, {}, fence=2)])
            assert result.ok
            [result] = await connector.write([Put("lock/f", 5, {}, fence=1)])
            assert result.outcome is Outcome.FENCED and result.fence == 2
        finally:
            await connector.drop()


def test_sqlite_fence_survives_sigkill(sqlite_path: Path) -> None:
    _sigkilled_after(
        sqlite_path,
        """
        [r] = await c.write([Put("crash/f", 5, {}, fence=5)])
        [d] = await c.write([Delete("crash/f", 5, fence=6)])
        assert r.ok and d.ok
        """,
    )

    async def stale_put() -> None:
        async with SQLConnector(f"sqlite+aiosqlite:///{sqlite_path}") as connector:
            [result] = await connector.write([Put("crash/f", 9, {"stale": 1}, fence=5)])
            assert result.outcome is Outcome.FENCED and result.fence == 6
            assert await connector.get("crash/f") is None

    asyncio.run(stale_put())


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
async def test_a_transaction_its_client_left_open_releases_its_locks(server: str) -> None:
    # A writer stalls inside its transaction (a frozen network path, a paused process) holding
    # a fence row's lock: the server ends that transaction once idle for the connector's
    # timeout, so other writers of the name go on (they waited forever before).
    url = require_postgres() if server == "postgresql" else require_mariadb()
    table = f"rg_idle_{uuid.uuid4().hex[:8]}"
    lock = f"SELECT fence FROM {table}_fences WHERE name = 'idle/f' FOR UPDATE"
    async with (
        SQLConnector(url, table=table, timeout=2) as stalled,
        SQLConnector(url, table=table, timeout=2) as other,
    ):
        await stalled.write([Put("idle/f", 1, {}, fence=1)])
        conn = await stalled.engine.connect()
        try:
            await conn.begin()
            await conn.execute(text(lock))
            started = time.monotonic()
            result = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(20):
                    while result is None:
                        with contextlib.suppress(StorageTimeout):
                            [result] = await other.write([Put("idle/f", 2, {"v": 2}, fence=2)])
            assert result is not None, "the stalled transaction still holds the fence row"
            assert result.ok and time.monotonic() - started < 10
        finally:
            with contextlib.suppress(Exception):  # the server closed it (or we do now)
                await conn.invalidate()
            await other.drop()
