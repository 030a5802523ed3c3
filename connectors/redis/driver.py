"""The lazily imported driver: redis-py's asyncio API, or one clear error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from gateway.exceptions import ConfigError

__all__ = ["redis_asyncio"]


def redis_asyncio() -> ModuleType:
    try:
        return importlib.import_module("redis.asyncio")
    except ImportError as exc:
        raise ConfigError(
            "storage type 'redis' needs the redis-py driver: pip install 'recordgate[redis]'"
        ) from exc
