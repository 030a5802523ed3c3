"""The raw reader: the stored hashes through redis-py on a connection of its own, with plain
commands (``HGETALL``, ``SCAN MATCH``), so the conformance suite sees what ``redis-cli`` shows."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime
from typing import Any

from connectors.base import StorageError
from connectors.redis.errors import guard
from connectors.redis.layout import Layout

__all__ = ["RedisRawReader", "glob_escape"]

_GLOB_SPECIAL = re.compile(rb"([\\*?\[\]])")


def glob_escape(text: bytes) -> bytes:
    """``text`` matched literally by a Redis glob pattern (``SCAN MATCH``, ``KEYS``)."""
    return _GLOB_SPECIAL.sub(rb"\\\1", text)


class RedisRawReader:
    def __init__(self, url: str, prefix: str, timeout: float) -> None:
        self._url = url
        self._layout = Layout(prefix)
        self._timeout = timeout
        self._client: Any = None

    def _connection(self) -> Any:
        if self._client is None:
            from redis.asyncio import Redis

            self._client = Redis.from_url(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
        return self._client

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        async with guard("raw read", self._timeout):
            fields = await self._connection().hgetall(self._layout.record(name))
        if not fields:
            return None
        item = {key.decode(): value.decode() for key, value in fields.items()}
        return {
            **item,
            "version": int(item["version"]),
            "data": json.loads(item["data"]),
            "updated_at": datetime.fromisoformat(item["updated_at"]),
        }

    async def count_raw(self, prefix: str = "") -> int:
        """Record hashes whose name starts with ``prefix`` (by their keys, not the indexes)."""
        pattern = glob_escape(self._layout.record(prefix)) + b"*"
        keys: set[bytes] = set()  # SCAN may return a key twice
        cursor: int | None = None
        while cursor != 0:
            async with guard("raw count", self._timeout):
                cursor, found = await self._connection().scan(
                    cursor or 0, match=pattern, count=1000
                )
            keys.update(found)
        return len(keys)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(StorageError):  # bounded, and never failing
                async with guard("raw reader close", self._timeout):
                    await client.aclose()
