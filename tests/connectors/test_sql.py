"""SQL connector specifics on real SQLite and PostgreSQL: pragmas, column types, the data-team
queries, lock timeouts and crash durability."""

from __future__ import annotations

import asyncio
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

from connectors.base import Put, StorageTimeout, StorageUnavailable
from connectors.sql import DATA_TEAM_QUERIES, SQLConnector
from tests.servers import require_postgres

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


def test_sqlite_committed_write_survives_sigkill(sqlite_path: Path) -> None:
    # The durability promise of WAL + synchronous=NORMAL: a killed process loses nothing
    # committed (an OS crash might; see the module docstring of connectors.sql.connector).
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from connectors.base import Put
        from connectors.sql import SQLConnector
        async def main():
            c = SQLConnector("sqlite+aiosqlite:///{sqlite_path}")
            await c.open()
            [r] = await c.write([Put("crash/1", 7, {{"survives": True}})])
            assert r.ok
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
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
