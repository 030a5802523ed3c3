"""Which asyncio event loop ``recordgate start`` runs on (``server.event_loop``).

``asyncio`` (the default) is the standard loop, always there and always tested. ``auto`` runs
on uvloop when it is importable (``pip install 'recordgate[uvloop]'``), else on the standard
loop; ``uvloop`` insists on it: startup fails, naming the extra, if it is missing. uvloop is
imported lazily, only when asked for.

uvloop is not the default because of what happens at the file-descriptor limit, which
``server.max_connections`` alone does not keep the server from: a refused socket keeps its
descriptor until the client reads its 503 (up to ``REFUSAL_TIMEOUT``), so a burst of refused
clients that do not read reaches the limit. libuv then accepts and closes the connections
waiting in the backlog (its EMFILE trick): those clients see the socket close unanswered,
where the standard loop leaves them waiting and answers each 503 as descriptors free up
(``tests/faults/test_limits.py::test_past_the_fd_limit_no_waiting_client_is_closed_unanswered``,
an expected failure on uvloop). Below that limit both behave the same (the connection
layer's tests run on both in CI)."""

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
