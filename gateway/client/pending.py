"""Futures waiting for the server's answer, each findable by every key an answer may carry.

A request registers one future under all the keys that can settle it (an ack by correlation id,
a denial by name, ...). Settling any key settles the future and forgets its other keys, so a
late second answer finds nothing and is ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

__all__ = ["Pending"]


class Pending:
    def __init__(self) -> None:
        self._by_key: dict[Hashable, list[asyncio.Future[Any]]] = {}
        self._keys: dict[asyncio.Future[Any], tuple[Hashable, ...]] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, *keys: Hashable) -> asyncio.Future[Any]:
        """A new future, settled by the first of ``keys`` to be resolved or rejected."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._keys[future] = keys
        for key in keys:
            self._by_key.setdefault(key, []).append(future)
        return future

    def discard(self, future: asyncio.Future[Any]) -> None:
        """Forget ``future`` under all its keys (after a timeout, or once it is settled)."""
        for key in self._keys.pop(future, ()):
            waiting = self._by_key.get(key)
            if waiting is None:
                continue
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                del self._by_key[key]

    def _take(self, key: Hashable) -> list[asyncio.Future[Any]]:
        futures = list(self._by_key.get(key, ()))
        for future in futures:
            self.discard(future)
        return futures

    def resolve(self, key: Hashable, value: Any = None) -> bool:
        """Settle every future waiting on ``key`` with ``value``; False if none was waiting."""
        futures = self._take(key)
        for future in futures:
            if not future.done():
                future.set_result(value)
        return bool(futures)

    def reject(self, key: Hashable, exc: BaseException) -> bool:
        """Fail every future waiting on ``key``; False if none was waiting."""
        futures = self._take(key)
        for future in futures:
            if not future.done():
                future.set_exception(exc)
        return bool(futures)

    def reject_all(self, exc: BaseException) -> None:
        for future in list(self._keys):
            self.discard(future)
            if not future.done():
                future.set_exception(exc)
