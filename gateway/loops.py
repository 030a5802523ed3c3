"""Which asyncio event loop ``recordgate start`` runs on (``server.event_loop``).

``asyncio`` (the default) is the standard loop, always there and always tested. ``auto`` runs
on uvloop when it is importable (``pip install 'recordgate[uvloop]'``), else on the standard
loop; ``uvloop`` insists on it: startup fails, naming the extra, if it is missing. uvloop is
imported lazily, only when asked for.

At the file-descriptor limit libuv accepts and closes the connections waiting in the
backlog unanswered (its EMFILE trick), where the standard loop leaves them waiting and answers
each 503 as descriptors free up. ``server.max_connections`` stays below the limit and the
server bounds the refused sockets it holds while their clients read the 503
(``refusals_held_max`` in ``server.py``), so the process stays off the limit on both loops
(``tests/faults/test_limits.py::test_past_the_fd_limit_no_waiting_client_is_closed_unanswered``).
uvloop is still not the default: ``auto`` as the default also needs the suite's
``recordgate start`` processes to keep covering the standard loop, which is not done yet.
Below the limit both behave the same (the connection layer's tests run on both in CI)."""

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
