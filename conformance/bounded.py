"""Every call the suite makes on a connector, bounded in time.

A connector that hangs (a driver waiting forever on a silent server, a scan that never ends)
must fail its test with a message naming the call and the rule, not stall the whole run; and
this must hold without pytest-timeout, for authors running the suite from their own repository.
The call runs as a task the suite only waits for: even a connector that swallows cancellation
cannot keep the test waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, TypeVar

from connectors.base import Connector, Delete, Put, RawReader, Snapshot, WriteResult

__all__ = ["BoundedConnector", "BoundedRawReader", "CallTimedOut", "bounded", "describe"]

T = TypeVar("T")

_HUNG = "rule: no call outlives the connector's timeout"


class CallTimedOut(AssertionError):
    """A call on the connector did not return within the suite's bound (a test failure)."""


def describe(what: str, *args: object) -> str:
    shown = ", ".join(_short(arg) for arg in args)
    return f"{what}({shown})"


def _short(value: object) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 3:
        return f"[{len(value)} items]"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


async def bounded(call: Awaitable[T], what: str, limit: float, rule: str = _HUNG) -> T:
    """The result of ``call``, or ``CallTimedOut`` naming ``what`` and ``rule`` after ``limit``
    seconds. Exceptions of the call pass through unchanged."""
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    # Give a well-behaved connector a moment to clean up; never wait on one that does not.
    await asyncio.wait({task}, timeout=1.0)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
    raise CallTimedOut(f"{rule}: {what} did not return within {limit:g}s")


class BoundedRawReader:
    """A raw reader whose calls are bounded like the connector's."""

    def __init__(self, inner: RawReader, limit: float) -> None:
        self.inner = inner
        self._limit = limit

    async def read_raw(self, name: str) -> dict[str, Any] | None:
        call = self.inner.read_raw(name)
        return await bounded(call, describe("raw_reader.read_raw", name), self._limit)

    async def count_raw(self, prefix: str = "") -> int:
        call = self.inner.count_raw(prefix)
        return await bounded(call, describe("raw_reader.count_raw", prefix), self._limit)

    async def close(self) -> None:
        await bounded(self.inner.close(), "raw_reader.close()", self._limit)


class BoundedConnector:
    """Wraps a connector; each call (and each step of a scan) is bounded by ``limit`` seconds.

    ``inner`` is the connector itself. Attributes other than the contract's pass through.
    """

    def __init__(self, inner: Connector, limit: float) -> None:
        self.inner = inner
        self.limit = limit

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    async def _call(self, call: Awaitable[T], what: str) -> T:
        return await bounded(call, what, self.limit)

    async def open(self) -> None:
        await self._call(self.inner.open(), "open()")

    async def close(self) -> None:
        await self._call(self.inner.close(), "close()")

    async def drop(self) -> None:
        await self._call(self.inner.drop(), "drop()")  # type: ignore[attr-defined]

    async def __aenter__(self) -> BoundedConnector:
        await self._call(self.inner.__aenter__(), "__aenter__()")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._call(self.inner.__aexit__(*exc_info), "__aexit__()")

    async def get(self, name: str) -> Snapshot | None:
        return await self._call(self.inner.get(name), describe("get", name))

    async def get_many(self, names: Iterable[str]) -> dict[str, Snapshot]:
        shown = names if isinstance(names, list | tuple) else "<iterable>"
        return await self._call(self.inner.get_many(names), describe("get_many", shown))

    async def head(self, name: str) -> int | None:
        return await self._call(self.inner.head(name), describe("head", name))

    async def write(self, ops: Sequence[Put | Delete]) -> list[WriteResult]:
        return await self._call(self.inner.write(ops), describe("write", list(ops)))

    async def scan(self, prefix: str = "") -> AsyncIterator[Snapshot]:
        # Each step runs in the caller's task (a generator may hold a cancel scope across its
        # yields), bounded by asyncio.timeout.
        iterator = aiter(self.inner.scan(prefix))
        what = describe("scan", prefix)
        step = 0
        try:
            while True:
                step += 1
                try:
                    async with asyncio.timeout(self.limit) as scope:
                        snapshot = await anext(iterator)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    if not scope.expired():
                        raise
                    raise CallTimedOut(
                        f"{_HUNG}: step {step} of {what} did not return within {self.limit:g}s"
                    ) from exc
                yield snapshot
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                async with asyncio.timeout(self.limit):
                    await close()

    def raw_reader(self) -> BoundedRawReader:
        return BoundedRawReader(self.inner.raw_reader(), self.limit)  # type: ignore[attr-defined]
