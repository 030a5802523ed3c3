"""The ``rethinkdb`` driver, imported on first use, set to the asyncio loop type."""

from __future__ import annotations

import functools
from typing import Any

from gateway.exceptions import ConfigError

__all__ = ["reql"]


@functools.cache
def reql() -> Any:
    """The driver's ``r`` (a ``RethinkDB()`` instance using asyncio); ``ConfigError`` naming the
    extra to install if the driver is absent."""
    try:
        from rethinkdb import RethinkDB
    except ImportError as exc:
        raise ConfigError(
            "storage connector 'rethinkdb' needs the rethinkdb driver: "
            "pip install 'recordgate[rethinkdb]'"
        ) from exc
    r = RethinkDB()
    r.set_loop_type("asyncio")
    return r
