"""Calling user callbacks from the reader without letting them break it.

A callback may be a plain function or return an awaitable; awaitables run as tasks that are
kept referenced until done. Exceptions are logged, never propagated into the connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["invoke", "outcome", "spawn"]

log = logging.getLogger(__name__)
_tasks: set[asyncio.Task[Any]] = set()


def _done(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("callback task failed", exc_info=task.exception())


def spawn(awaitable: Awaitable[Any]) -> asyncio.Task[Any]:
    """Run ``awaitable`` as a task that is referenced until done and logs its failure."""
    task = asyncio.ensure_future(awaitable)
    _tasks.add(task)
    task.add_done_callback(_done)
    return task


def invoke(callback: Callable[..., Any], *args: Any) -> None:
    """Call ``callback(*args)``; run an awaitable result in the background."""
    try:
        result = callback(*args)
    except Exception:
        log.exception("callback %r failed", callback)
        return
    if inspect.isawaitable(result):
        spawn(result)


async def outcome(callback: Callable[..., Any], *args: Any) -> Any:
    """The result of ``callback(*args)``, awaited if it is awaitable; exceptions propagate."""
    result = callback(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
