"""The record store the record handler talks to: a cache in front of storage.

``base`` states the interface; ``cached`` is the cache with its write-behind flusher over a
storage connector; ``memory`` is the store with no storage behind it; ``merge`` is the three-way
JSON merge of the ``merge`` conflict policy.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config, StorageConfig
from .base import Record, RecordStore, StoreStats
from .cached import CachedStore
from .memory import MemoryStore

__all__ = [
    "CachedStore",
    "MemoryStore",
    "Record",
    "RecordStore",
    "StoreStats",
    "create_store",
    "storage_url",
]


def create_store(config: Config) -> RecordStore:
    """The store the configuration asks for; nothing is opened or imported beyond the class.

    ``storage.type: memory`` keeps records in the process (no write-behind: the memory is the
    storage). Any other type is a connector found through ``connectors.registry``, wrapped in a
    :class:`CachedStore` with the ``cache`` and ``write_behind`` settings.
    """
    storage = config.storage
    if storage.type == "memory" and not storage.url:
        return MemoryStore()
    from connectors.registry import create_connector  # only now: drivers load with their connector

    connector = create_connector(storage.type, storage_url(storage), **storage.options)
    return CachedStore(
        connector,
        cache=config.cache,
        write_behind=config.write_behind,
        max_concurrent_loads=config.limits.max_concurrent_loads,
    )


def storage_url(storage: StorageConfig) -> str:
    """``storage.url``, or for ``sql`` without one the embedded SQLite file in ``data_dir``
    (the directory is created here, so a fresh install persists with no config at all)."""
    if storage.url or storage.type != "sql":
        return storage.url
    data_dir = Path(storage.data_dir).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{(data_dir / 'records.db').resolve()}"
