"""Which asyncio event loop ``recordgate start`` runs on (``server.event_loop``).

``auto`` (the default) runs on uvloop when it is importable, else on the standard loop. uvloop
is a dependency wherever it has wheels (CPython, not Windows); elsewhere the standard loop is
the fallback (``pip install 'recordgate[uvloop]'`` where it builds). ``asyncio`` is the standard
loop; ``uvloop`` insists on it: startup fails, naming the extra, if it is missing. uvloop is
imported lazily, only when asked for. ``recordgate start`` logs the loop it runs on and
``/metrics`` shows it (``recordgate_event_loop_info``, read from the running loop).

At the file-descriptor limit libuv accepts and closes the connections waiting in the
backlog unanswered (its EMFILE trick), where the standard loop leaves them waiting and answers
each 503 as descriptors free up. ``server.max_connections`` stays below the limit and the
server bounds the refused sockets it holds while their clients read the 503
(``refusals_held_max`` in ``server.py``), so the process stays off the limit on both loops
(``tests/faults/test_limits.py::test_past_the_fd_limit_no_waiting_client_is_closed_unanswered``).
Both loops stay tested (``.ci/run``): the suite's server processes run on the default (uvloop)
and again pinned to the standard loop (``tests/event_loop.py``); the in-process tests run on the
standard loop, and those of ``tests/gateway`` again on uvloop."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from .exceptions import ConfigError

__all__ = ["EVENT_LOOPS", "loop_factory", "running_loop_name"]

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


def running_loop_name() -> str:
    """The running loop's implementation: the top-level package of its class (``asyncio`` for
    the standard loop, ``uvloop`` for uvloop's)."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]
