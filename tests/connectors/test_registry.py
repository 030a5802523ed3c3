"""Connector lookup by name and by ``module:Class``; drivers stay unimported until used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from connectors.base import Connector
from connectors.memory import MemoryConnector
from connectors.registry import (
    create_connector,
    known_connectors,
    load_connector_class,
)
from connectors.sql import SQLConnector
from gateway.exceptions import ConfigError, ConnectorNotFound


def test_bundled_names() -> None:
    assert {"memory", "sql"} <= set(known_connectors())
    assert load_connector_class("memory") is MemoryConnector
    assert load_connector_class("sql") is SQLConnector


@pytest.mark.parametrize(
    "spec", ["connectors.memory:MemoryConnector", "connectors.memory.connector:MemoryConnector"]
)
def test_module_class_spec(spec: str) -> None:
    assert load_connector_class(spec) is MemoryConnector


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ConnectorNotFound) as info:
        load_connector_class("cassandra")
    message = str(info.value)
    assert "'cassandra'" in message and "memory" in message and "sql" in message
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    "spec",
    [
        "no_such_module:Thing",
        "connectors.memory:NoSuchClass",
        "connectors.base:collection_of",
        ":X",
    ],
)
def test_bad_specs(spec: str) -> None:
    with pytest.raises(ConnectorNotFound):
        load_connector_class(spec)


async def test_create_connector() -> None:
    connector = create_connector("memory", "memory://registry-test", timeout="1.5")
    assert isinstance(connector, MemoryConnector)
    assert isinstance(connector, Connector)
    assert connector.timeout == 1.5
    async with connector:
        assert await connector.get("nothing") is None


def _modules_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


DRIVERS = {"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "motor", "redis"}


def test_registry_and_memory_import_no_driver() -> None:
    loaded = _modules_after(
        """
        import asyncio
        import connectors, connectors.registry
        from connectors.registry import create_connector, load_connector_class
        c = create_connector("memory", "memory://x")
        asyncio.run(c.open())
        load_connector_class("sql")  # the class itself is cheap; its driver loads on use
        """
    )
    assert not {m.partition(".")[0] for m in loaded} & DRIVERS


def test_sqlite_connector_does_not_import_asyncpg(tmp_path: object) -> None:
    loaded = _modules_after(
        f"""
        import asyncio
        from connectors.registry import create_connector
        async def main():
            async with create_connector("sql", "sqlite+aiosqlite:///{tmp_path}/x.db") as c:
                await c.get("x")
        asyncio.run(main())
        """
    )
    assert "aiosqlite" in loaded and "sqlalchemy" in loaded
    assert "asyncpg" not in loaded
