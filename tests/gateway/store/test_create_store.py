"""Choosing the store from the configuration: the storage, cache and write_behind sections."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connectors.memory import MemoryConnector
from connectors.sql import SQLConnector
from gateway.config import Config, config_from_dict, load_config
from gateway.exceptions import ConfigError, ConnectorNotFound
from gateway.store import CachedStore, MemoryStore, Record, create_store

from .conftest import rec


def test_storage_options_sit_beside_type_and_url() -> None:
    config = config_from_dict(
        {"storage": {"type": "sql", "url": "sqlite+aiosqlite:///x.db", "table": "t", "timeout": 2}}
    )
    assert config.storage.type == "sql"
    assert config.storage.url == "sqlite+aiosqlite:///x.db"
    assert config.storage.options == {"table": "t", "timeout": 2}


def test_write_behind_and_cache_sections_are_read(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "cache: {max_records: 10}\n"
        "write_behind:\n"
        "  interval: 2\n  batch_size: 50\n  coalesce: false\n  max_pending: 7\n"
        "  retry_initial: 0.5\n  retry_max: 4\n  conflict_policy: merge\n"
        "  shutdown_timeout: 3\n"
    )
    config = load_config(path)
    assert config.cache.max_records == 10
    wb = config.write_behind
    assert (wb.interval, wb.batch_size, wb.coalesce, wb.max_pending) == (2.0, 50, False, 7)
    assert (wb.retry_initial, wb.retry_max, wb.conflict_policy) == (0.5, 4.0, "merge")
    assert wb.shutdown_timeout == 3.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"write_behind": {"conflict_policy": "last-wins"}}, "conflict_policy"),
        ({"write_behind": {"interval": 0}}, "interval"),
        ({"write_behind": {"batch_size": 0}}, "batch_size"),
        ({"write_behind": {"max_pending": -1}}, "max_pending"),
        ({"write_behind": {"retry_initial": 2, "retry_max": 1}}, "retry_max"),
        ({"write_behind": {"coalesce": "yes"}}, "coalesce"),
        ({"write_behind": {"flush_every": 1}}, "flush_every"),
        ({"cache": {"max_records": 0}}, "max_records"),
        ({"cache": {"size": 3}}, "size"),
        ({"storage": {"type": 3}}, "storage.type"),
    ],
)
def test_bad_settings_are_refused_by_name(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_memory_type_keeps_records_in_the_process() -> None:
    assert isinstance(create_store(config_from_dict({"storage": {"type": "memory"}})), MemoryStore)


def test_a_named_connector_is_wrapped_in_the_cache(memory_url: str) -> None:
    store = create_store(
        config_from_dict(
            {
                "storage": {"type": "memory", "url": memory_url},
                "write_behind": {"conflict_policy": "merge"},
                "cache": {"max_records": 5},
            }
        )
    )
    assert isinstance(store, CachedStore)
    assert isinstance(store.connector, MemoryConnector)
    assert store.config.conflict_policy == "merge"
    assert store.cache_config.max_records == 5


def test_an_unknown_connector_is_a_config_error() -> None:
    with pytest.raises(ConnectorNotFound):
        create_store(config_from_dict({"storage": {"type": "nosuchdb", "url": "x://"}}))


def test_the_embedded_default_is_an_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "data"
    store = create_store(config_from_dict({"storage": {"data_dir": str(data_dir)}}))
    assert isinstance(store, CachedStore)
    assert isinstance(store.connector, SQLConnector)
    assert store.connector.url == f"sqlite+aiosqlite:///{data_dir / 'records.db'}"
    assert data_dir.is_dir()
    assert Config().storage.type == "sql"


async def test_the_embedded_default_reads_back_after_a_restart(tmp_path: Path) -> None:
    config = config_from_dict({"storage": {"data_dir": str(tmp_path)}})
    async with create_store(config) as store:  # type: ignore[attr-defined]
        store.put(rec("user/1", 1, {"name": "ann"}))
    assert (tmp_path / "records.db").is_file()
    async with create_store(config) as store:  # type: ignore[attr-defined]
        assert await store.load("user/1") == Record("user/1", 1, {"name": "ann"})


def test_no_driver_is_imported_until_its_connector_is_chosen() -> None:
    script = (
        "import sys\n"
        "from gateway.config import config_from_dict\n"
        "from gateway.store import create_store\n"
        "create_store(config_from_dict({'storage': {'type': 'memory'}}))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'asyncpg', "
        "'aiosqlite'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
