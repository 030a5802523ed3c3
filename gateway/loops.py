"""Which asyncio event loop ``recordgate start`` runs on (``server.event_loop``).

``asyncio`` (the default) is the standard loop, always there and always tested. ``auto`` runs
on uvloop when it is importable (``pip install 'recordgate[uvloop]'``), else on the standard
loop; ``uvloop`` insists on it: startup fails, naming the extra, if it is missing. uvloop is
imported lazily, only when asked for.

uvloop is not the default because of what happens at the file-descriptor limit: libuv accepts
and closes the connections waiting in the backlog (its EMFILE trick), so those clients see the
socket close unanswered, where the standard loop leaves them waiting and answers each 503
(``server.max_connections``) as slots free up (``tests/faults/test_limits.py``). Below that
limit both behave the same (the connection layer's tests run on both in CI)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from .exceptions import ConfigError

__all__ = ["EVENT_LOOPS", "loop_factory"]

EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The loop's name and a factory for ``asyncio.Runner`` (None: the standard loop)."""
    if choice == "asyncio":
        return "asyncio", None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "server.event_loop is uvloop but uvloop is not installed: "
                "pip install 'recordgate[uvloop]'"
            ) from None
        return "asyncio", None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return "uvloop", factory
