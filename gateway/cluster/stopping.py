"""Stopping a node's background tasks at shutdown within a bound.

A task blocked in the Redis driver may not end when cancelled: a cancellation the driver
swallows leaves it reading on (seen with redis-py 8.1: the bus's receiver, reading its
resubscribed connection, outlived its own read timeout after a cancel). Awaiting such a task
held SIGTERM up until a supervisor's SIGKILL. ``stop`` cancels, waits at most ``grace``,
cancels the stragglers again (a second cancellation is delivered anew) and waits once more;
what still runs is logged and left behind, and shutdown goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

__all__ = ["stop"]

log = logging.getLogger(__name__)


async def stop(
    tasks: Iterable[asyncio.Task[None]],
    *,
    what: str,
    grace: float = 1.0,
    unblock: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Cancel ``tasks`` and wait for them, at most about ``2 * grace`` seconds in all; before
    cancelling the stragglers again, ``unblock`` (e.g. closing their connection) is awaited
    (at most ``grace``). Exceptions the tasks end with are logged, never raised."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    for attempt in range(2):
        if not pending:
            break
        _, pending = await asyncio.wait(pending, timeout=grace)
        if pending and attempt == 0:
            log.warning(
                "shutdown: %s did not stop within %g s of being cancelled (blocked in the "
                "Redis driver); cancelling again",
                what,
                grace,
            )
            if unblock is not None:
                try:
                    async with asyncio.timeout(grace):
                        await unblock()
                except Exception as exc:  # closing a broken connection may fail too
                    log.debug("shutdown: unblocking %s failed (%s)", what, exc)
            for task in pending:
                task.cancel()
    if pending:
        log.error(
            "shutdown: %s still did not stop; leaving %d task(s) behind",
            what,
            len(pending),
        )
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("shutdown: %s ended with %r", what, task.exception())
