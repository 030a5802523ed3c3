"""The whole conformance suite passes for every bundled connector, against real databases."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.conformance.runner import run_suite
from tests.servers import require_mariadb, require_mariadb_socket, require_postgres

SUITE = "conformance/"


def _assert_passed(run_args: tuple[str, ...], output: str, returncode: int) -> None:
    assert returncode == 0, f"suite failed for {run_args}:\n{output[-6000:]}"


def test_memory() -> None:
    run = run_suite(SUITE, "--connector", "memory")
    _assert_passed(("memory",), run.output, run.returncode)
    assert run.count("passed") > 60
    assert run.failed_tests == []


def test_sql_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'conformance.db'}"
    run = run_suite(SUITE, "--connector", "sql", "--connector-url", url)
    _assert_passed(("sqlite",), run.output, run.returncode)
    assert run.count("passed") > 60
    assert run.count("skipped") == 1  # only the unreachable-server test: SQLite has no server


def test_sql_postgresql() -> None:
    url = require_postgres()
    table = f"rg_suite_{uuid.uuid4().hex[:10]}"
    try:
        run = run_suite(
            SUITE, "--connector", "sql", "--connector-url", url, "--connector-option",
            f"table={table}",
        )  # fmt: skip
    finally:
        asyncio.run(_drop_table(url, table))
    _assert_passed(("postgresql",), run.output, run.returncode)
    assert run.count("passed") > 60
    assert run.count("skipped") == 0


async def _drop_table(url: str, table: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        await conn.close()


def test_sql_mariadb() -> None:
    url = require_mariadb()
    table = f"rg_suite_{uuid.uuid4().hex[:10]}"
    try:
        run = run_suite(
            SUITE, "--connector", "sql", "--connector-url", url, "--connector-option",
            f"table={table}",
        )  # fmt: skip
    finally:
        asyncio.run(_drop_mariadb_table(url, table))
    _assert_passed(("mariadb",), run.output, run.returncode)
    assert run.count("passed") > 60
    assert run.count("skipped") == 0  # the unreachable-server test runs too


def test_sql_mariadb_unix_socket() -> None:
    # Through the socket, the unreachable-server test needs a socket path nobody serves.
    url = require_mariadb_socket()
    table = f"rg_suite_{uuid.uuid4().hex[:10]}"
    try:
        run = run_suite(
            SUITE, "--connector", "sql", "--connector-url", url, "--connector-option",
            f"table={table}",
        )  # fmt: skip
    finally:
        asyncio.run(_drop_mariadb_table(url, table))
    _assert_passed(("mariadb socket",), run.output, run.returncode)
    assert run.count("passed") > 60
    assert run.count("skipped") == 0


async def _drop_mariadb_table(url: str, table: str) -> None:
    from connectors.sql import SQLConnector

    async with SQLConnector(url, table=table) as connector:
        await connector.drop()


@pytest.mark.parametrize("spec", ["memory", "connectors.memory:MemoryConnector"])
def test_connector_spec_forms(spec: str) -> None:
    run = run_suite(SUITE + "test_versioning.py", f"--connector={spec}")
    _assert_passed((spec,), run.output, run.returncode)


def test_unknown_connector_is_a_usage_error() -> None:
    run = run_suite(SUITE + "test_versioning.py", "--connector", "no-such-connector")
    assert run.returncode != 0
    assert "no storage connector named 'no-such-connector'" in run.output
